"""How a checkpoint's scores move with the slice thickness of the same patients.

Not a speed benchmark: the analysis behind ``[train] bone_features`` and
``muscle_features`` (README, "The model" and "Train").
Give one generated cohort and re-renderings of the same patients at other slice
thicknesses (``vfrisk synth`` with the same seed, site and patient count and a
``--profiles`` file that changes only ``slice_thickness_mm``), each with its inputs
cached (``python -m models.card check CHECKPOINT COHORT --cache COHORT.cache`` fills
them). For each rendering it prints

1. the Harrell c-index (5 years, deaths censored), the any-grade detection AUROC and
   their mean ``S`` (the score the shipping rules of README, "Train", use), and the
   c-index of all renderings pooled (pairs across renderings rank one patient's scan on
   one scanner against another patient's on another);
2. against the first rendering, on the patients with the same levels present in both:
   each intensity feature's mean shift in units of its SD in the first rendering, and the
   mean paired shift of the 5-year risk on the cloglog scale, in total, with the images
   alone changed (the first rendering's features) and with the features alone changed.

    python bench/thickness_shift.py --model models/weights/fracture_net.pt \\
        dev400 dev400t5 dev400t1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from engine.anatomy.inputs import ModelInputs, PreprocessingSettings, cache_path, load_inputs
from engine.config import load_config
from engine.evaluation import SurvivalTarget, auroc, harrell_c
from engine.synth.cohort import main_series
from models.checkpoint import load_checkpoint
from models.inference import predict
from models.sampling import feature_names, intensity_features


def load(cohort: Path, settings: PreprocessingSettings) -> dict[str, ModelInputs]:
    """Cached inputs with at least one level, by patient, from ``COHORT.cache``."""
    cache = cohort.with_name(cohort.name + ".cache")
    series = main_series(cohort)
    out = {}
    for uid, pid in zip(series["series_uid"], series["patient_id"], strict=True):
        path = cache_path(cache, uid, settings.version)
        if path.is_file():
            x = load_inputs(path, settings)
            if x.level_present.any():
                out[pid] = x
    if not out:
        raise SystemExit(
            f"no cached inputs of {cohort} in {cache}; fill it with `python -m models.card "
            f"check CHECKPOINT {cohort} --cache {cache}`"
        )
    return out


def same_levels(a: ModelInputs, b: ModelInputs) -> bool:
    return bool(np.array_equal(a.level_present, b.level_present))


def cloglog(risk: np.ndarray) -> np.ndarray:
    r = np.clip(risk, 1e-6, 1 - 1e-6)
    return np.log(-np.log1p(-r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/weights/fracture_net.pt"))
    parser.add_argument("cohorts", type=Path, nargs="+", help="the first is the reference")
    args = parser.parse_args()
    settings = PreprocessingSettings.from_config(load_config())
    ck = load_checkpoint(args.model)
    config = ck.config
    print(f"{args.model} ({ck.model_id})")
    data = {c: load(c, settings) for c in args.cohorts}
    truth = pd.read_csv(args.cohorts[0] / "truth" / "patients.csv").set_index("patient_id")

    def scores(xs: list[ModelInputs], features: np.ndarray | None = None) -> tuple:
        preds = predict(ck.model, xs, features=features)
        return np.array([p.risk[4] for p in preds]), np.array([p.p_fracture for p in preds])

    pooled_risk, pooled_pids, s_values = [], [], []
    for cohort, inputs in data.items():
        pids = list(inputs)
        t = truth.loc[pids]
        risk, p = scores([inputs[q] for q in pids])
        c = harrell_c(SurvivalTarget.from_arrays(t["followup_years"], t["event_type"]), risk)
        a = auroc(t["prevalent_vf"].to_numpy(), p)
        s_values.append((c.estimate + a.estimate) / 2)
        print(
            f"{cohort}: {len(pids)} patients; c-index {c.estimate:.4f}, any-grade AUROC "
            f"{a.estimate:.4f}, S {s_values[-1]:.4f}"
        )
        pooled_risk.append(risk)
        pooled_pids += pids
    t = truth.loc[pooled_pids]
    target = SurvivalTarget.from_arrays(t["followup_years"], t["event_type"])
    pooled = harrell_c(target, np.concatenate(pooled_risk)).estimate
    print(f"mean S {np.mean(s_values):.4f}; c-index pooled over the renderings {pooled:.4f}")

    names = feature_names(config) if config.intensity_features else ()
    base = data[args.cohorts[0]]
    for cohort in args.cohorts[1:]:
        other = data[cohort]
        pids = [q for q in base if q in other and same_levels(base[q], other[q])]
        xb, xo = [base[q] for q in pids], [other[q] for q in pids]
        total = cloglog(scores(xo)[0]) - cloglog(scores(xb)[0])
        line = f"{cohort} against {args.cohorts[0]}, {len(pids)} patients: risk shift "
        line += f"{total.mean():+.3f}"
        if names:
            fb = np.stack([intensity_features(x, config) for x in xb])
            fo = np.stack([intensity_features(x, config) for x in xo])
            present = np.stack([x.level_present for x in xb])
            images = cloglog(scores(xo, fb)[0]) - cloglog(scores(xb, fb)[0])
            features = cloglog(scores(xb, fo)[0]) - cloglog(scores(xb, fb)[0])
            line += f" (images alone {images.mean():+.3f}, features alone {features.mean():+.3f})"
            shift = np.nanmean((fo - fb)[present], axis=0) / np.nanstd(fb[present], axis=0)
            line += "; feature shift / SD: " + ", ".join(
                f"{n} {v:+.2f}" for n, v in zip(names, shift, strict=True)
            )
        print(line)


if __name__ == "__main__":
    main()
