"""How much of the bone and muscle density signal a checkpoint sees (README, "The model").

Not a speed benchmark: the analysis behind ``[train] intensity_features``. On a generated
development cohort (to fit the reference Cox model) and an external one, both prepared
with their inputs cached (``vfrisk train`` fills ``DB.cache``; ``python -m models.card
check ... --cache DIR`` fills the external one), it prints

1. how far the checkpoint's encoder features move when a body's HU changes (150 -> 50 HU),
2. the Harrell c-index (5 years) on the external patients of the checkpoint's 5-year
   risk, of ``-mean bone intensity`` alone and of a Cox model on three branch features
   (bone median, muscle area and median; fitted on the development cohort), with
   ``oracle_image`` for scale, and the correlation of the risk with the bone intensity,
3. for a checkpoint with the intensity branch: each site's HU offset as the spinal canal
   reading estimates it (against the checkpoint's development reference) and as the
   generator's site profiles set it; per-site mean risk and c-index as the model scores
   (calibrated by the canal), without the calibration (the canal reading withheld), and
   with the true offsets removed instead.

    python bench/intensity_signal.py --model models/weights/fracture_net.pt \\
        --dev train --dev-cache train.duckdb.cache --ext ext600 --ext-cache ext600.cache
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import models.sampling as sampling
from engine.anatomy.inputs import ModelInputs, PreprocessingSettings, cache_path, load_inputs
from engine.config import load_config
from engine.evaluation import SurvivalTarget, harrell_c
from engine.synth.cohort import main_series
from engine.synth.profiles import load_profiles
from models.checkpoint import load_checkpoint
from models.config import LEGACY_BONE_FEATURES, LEGACY_MUSCLE_FEATURES, ModelConfig
from models.inference import predict

#: Every feature the branch can read, for the summaries and the reference Cox model.
ALL_FEATURES = ModelConfig(
    intensity_features=True,
    bone_features=LEGACY_BONE_FEATURES,
    muscle_features=LEGACY_MUSCLE_FEATURES,
)
NAMES = list(sampling.feature_names(ALL_FEATURES))
COX_FEATURES = ["bone_median", "muscle_area_cm2", "muscle_median"]


def load_cohort(
    cohort: Path, cache: Path, settings: PreprocessingSettings
) -> tuple[list[ModelInputs], pd.DataFrame]:
    """Cached inputs of each patient's main series (either cache naming) and the truth."""
    series = main_series(cohort)
    inputs, patients = [], []
    for uid, pid in zip(series["series_uid"], series["patient_id"], strict=True):
        path = cache_path(cache, uid, settings.version)
        if not path.is_file():  # vfrisk train's cache: <uid>.<version>.<digest>.<hash>.npz
            hits = sorted(cache.glob(path.name.replace(".npz", ".*.npz")))
            if not hits:
                continue
            path = hits[0]
        inputs.append(load_inputs(path, settings))
        patients.append(pid)
    if not inputs:
        raise SystemExit(
            f"no cached inputs of {cohort}'s series in {cache} (preprocessing "
            f"{settings.version}); fill it with `vfrisk train` (DB.cache) or `python -m "
            f"models.card check CHECKPOINT {cohort} --cache {cache}`"
        )
    truth = pd.read_csv(cohort / "truth" / "patients.csv").set_index("patient_id")
    return inputs, truth.loc[patients]


def level_means(inputs: list[ModelInputs]) -> pd.DataFrame:
    """The branch's features averaged over the present levels, one row per series."""
    rows = []
    for x in inputs:
        f = sampling.intensity_features(x, ALL_FEATURES)
        rows.append(f[x.level_present].mean(axis=0))
    return pd.DataFrame(rows, columns=NAMES)


def c_index(truth: pd.DataFrame, score: np.ndarray) -> float:
    target = SurvivalTarget.from_arrays(truth["followup_years"], truth["event_type"])
    return round(float(harrell_c(target, score, ci="none").estimate), 3)


def encoder_shift(model: torch.nn.Module) -> float:
    """Relative change of the encoder's features, an elliptic body at 150 vs 50 HU."""
    yy, xx = np.mgrid[:64, :112]
    disk = ((yy - 32) / 20) ** 2 + ((xx - 56) / 30) ** 2 < 1
    texture = np.random.default_rng(1).normal(0, 0.02, disk.shape)

    def image(hu: float) -> torch.Tensor:
        a = np.where(disk, (hu + 200) / 1200 + texture, 0).astype(np.float32)
        return torch.from_numpy(np.stack([a] * 3))[None]

    with torch.no_grad():
        ref, low = model.encoder.eval()(image(150.0))[0], model.encoder(image(50.0))[0]
    return float((low - ref).norm() / ref.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/weights/fracture_net.pt"))
    parser.add_argument("--dev", type=Path, required=True, help="development cohort folder")
    parser.add_argument("--dev-cache", type=Path, required=True)
    parser.add_argument("--ext", type=Path, required=True, help="external cohort folder")
    parser.add_argument("--ext-cache", type=Path, required=True)
    args = parser.parse_args()
    from lifelines import CoxPHFitter

    settings = PreprocessingSettings.from_config(load_config())
    ck = load_checkpoint(args.model)
    dev_in, dev = load_cohort(args.dev, args.dev_cache, settings)
    ext_in, ext = load_cohort(args.ext, args.ext_cache, settings)
    print(f"{args.model} ({ck.model_id}); {len(dev_in)} development, {len(ext_in)} external")
    print(f"encoder features, body 150 -> 50 HU: {100 * encoder_shift(ck.model):.2f} % change")
    fd, fe = level_means(dev_in), level_means(ext_in)
    data = fd[COX_FEATURES].copy()
    data["T"] = np.minimum(dev["followup_years"].to_numpy(), 5.0)
    data["E"] = ((dev["event_type"] == 1) & (dev["followup_years"] <= 5)).to_numpy(int)
    cox = CoxPHFitter(penalizer=0.01).fit(data, "T", "E")
    risk = np.array([p.risk[4] for p in predict(ck.model, ext_in)])
    print(
        f"external c-index (5 y): model {c_index(ext, risk)}; -bone mean "
        f"{c_index(ext, -fe['bone_mean'].to_numpy())}; Cox on {', '.join(COX_FEATURES)} "
        f"{c_index(ext, cox.predict_partial_hazard(fe[COX_FEATURES]).to_numpy())}; "
        f"oracle_image {c_index(ext, ext['oracle_image_5y'].to_numpy())}; "
        f"corr(risk, bone mean) {np.corrcoef(risk, fe['bone_mean'])[0, 1]:.3f}"
    )
    if not ck.model.config.intensity_features:
        return
    lo, hi = settings.hu_window
    window = hi - lo
    offsets = {name: p.hu_offset for name, p in load_profiles().items()}
    site_of = {x.series_uid: s for x, s in zip(ext_in, ext["site"], strict=True)}
    reference_hu = ck.model.canal_reference.numpy() * window + lo
    estimated = np.array(
        [np.nanmedian(np.where(x.level_present, x.canal_hu - reference_hu, np.nan)) for x in ext_in]
    )
    for site in sorted(ext["site"].unique()):
        m = (ext["site"] == site).to_numpy()
        print(
            f"{site}: HU offset from the canal {np.nanmean(estimated[m]):+.1f} "
            f"(sd {np.nanstd(estimated[m]):.1f}, {int(np.isnan(estimated[m]).sum())} unread); "
            f"generator {offsets[site]:+.1f}"
        )
    names = sampling.feature_names(ck.config)
    means = [j for j, n in enumerate(names) if n.endswith(("_mean", "_median"))]
    as_read = np.stack([sampling.intensity_features(x, ck.config) for x in ext_in])
    withheld = as_read.copy()
    withheld[..., -1] = np.nan  # no canal reading: the network leaves the features as read
    true_offsets = withheld.copy()
    shift = np.array([offsets[site_of[x.series_uid]] / window for x in ext_in])
    present = np.stack([np.asarray(x.level_present, bool) for x in ext_in])
    true_offsets[..., means] -= np.where(present, shift[:, None], 0.0)[..., None]

    def report(label: str, r: np.ndarray) -> None:
        parts = []
        for site in sorted(ext["site"].unique()):
            m = (ext["site"] == site).to_numpy()
            parts.append(f"{site} mean risk {r[m].mean():.3f} c {c_index(ext[m], r[m])}")
        print(f"{label}: pooled c {c_index(ext, r)}; " + "; ".join(parts))

    report("calibrated by the canal (as scored)", risk)
    for label, features in (
        ("canal reading withheld", withheld),
        ("true site offsets removed", true_offsets),
    ):
        preds = predict(ck.model, ext_in, features=features.astype(np.float32))
        report(label, np.array([p.risk[4] for p in preds]))


if __name__ == "__main__":
    main()
