"""``vfrisk experiments``: rerun the study's comparisons on whatever cohort the database holds.

What one call of :func:`run_experiments` does (issue 6, "The study's experiments"):

1. Trains each requested variant of the network through :func:`models.train.train` on the
   development site (``[train]`` settings, the variant's task, input and intensity on
   top): multitask vs single-task detection vs single-task survival, bone+muscle vs
   bone-only, the fixed HU window vs the study's per-patch min-max scaling (which is other
   preprocessing: its own preprocessing version and cache files). Checkpoints go to
   ``OUT/<variant>.pt`` with their model cards; a marker ``OUT/<variant>.done.json``
   written after a successful run records the recipe, so a rerun skips every finished
   variant whose recipe is unchanged (resumable per variant).
2. Scores every linked patient of every site with each variant
   (:func:`models.inference.predict` on the cached inputs; predictions kept in
   ``OUT/<variant>.predictions.csv`` per model id, so a rerun does not score again).
3. Fits the comparators on the development site (:mod:`models.comparators`): FRAX, the
   clinical Cox model, L1 HU cut-offs and continuous, the biomarker Cox model, and the
   image + clinical Cox model, whose image covariate is the reference network's 5-year
   risk. That model is fitted on the development site's validation split (the patients
   the network did not train on, the same seeded split as :func:`models.train.split_indices`)
   when it holds enough fractures, else on the whole development site (noted: there the
   network's risk is in-sample and its weight optimistic).
4. Evaluates everything per site (:mod:`models.experiment_report`), prints and writes
   ``OUT/experiments.md`` and ``OUT/experiments.csv``, and stores the rows in the
   ``evaluation`` table (one run id; each variant's rows under its model id as score
   ``'model'``, comparators under the reference's model id, as ``vfrisk report`` does).

With ``truth`` (the folder of a generated cohort), the generator's oracle risks join the
table and detection is also judged for grade >= 2 fractures: the engine itself never
reads ``truth/``; only this evaluation does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.anatomy.inputs import PreprocessingSettings
from engine.errors import VfriskError
from engine.report.settings import settings_from_config
from models.comparators import IMAGE_COVARIATE, CoxSettings, fit_comparators, image_logit
from models.config import ModelConfig
from models.experiment_report import ScoredModel, evaluate_models, to_markdown

__all__ = [
    "REFERENCE",
    "VARIANTS",
    "ExperimentRequest",
    "ExperimentResult",
    "Variant",
    "run_experiments",
    "variant_preprocessing",
]


@dataclass(frozen=True)
class Variant:
    """One network of the study's comparisons: task, input and patch intensity."""

    task: str
    input_variant: str
    intensity: str
    label: str


#: The study's variants (Kong et al. 2025: single vs multitask, bone vs bone+muscle) and
#: the per-patch min-max scaling of the official code against vfrisk's fixed HU window.
VARIANTS: dict[str, Variant] = {
    "multitask_bone_muscle": Variant(
        "multitask", "bone_muscle", "fixed_window", "Multitask, bone+muscle"
    ),
    "multitask_bone": Variant("multitask", "bone", "fixed_window", "Multitask, bone only"),
    "detection_bone_muscle": Variant(
        "detection", "bone_muscle", "fixed_window", "Detection only, bone+muscle"
    ),
    "survival_bone_muscle": Variant(
        "survival", "bone_muscle", "fixed_window", "Survival only, bone+muscle"
    ),
    "multitask_bone_muscle_minmax": Variant(
        "multitask", "bone_muscle", "study_minmax", "Multitask, bone+muscle, per-patch min-max"
    ),
}
#: Every other model is compared with this one (the study's model).
REFERENCE = "multitask_bone_muscle"


@dataclass(frozen=True)
class ExperimentRequest:
    """What ``vfrisk experiments`` was asked.

    Attributes
    ----------
    db : Path
        DuckDB file after ``vfrisk index`` and ``vfrisk import-clinical``.
    out : Path
        Folder of checkpoints, cards, predictions and the table (created).
    variants : tuple of str
        Keys of :data:`VARIANTS`; the reference is always added.
    epochs : int or None
        Epochs per variant; None = ``[train] epochs`` (or the quick setting).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    quick : bool
        Tiny networks and ``[experiments] quick_*`` settings: a smoke run in minutes.
    workers : int or None
        Processes preparing uncached series; None = ``[train] workers``.
    cache_dir : Path or None
        Cached inputs; None = ``[train] cache_dir`` (default beside the database).
    truth : Path or None
        A generated cohort's folder: oracle risks and Genant grades from ``truth/``.
    run_id : str
        Stamped on the evaluation rows.
    command : str
        The command line, recorded in the cards.
    """

    db: Path
    out: Path
    variants: tuple[str, ...] = tuple(VARIANTS)
    epochs: int | None = None
    device: str = "auto"
    quick: bool = False
    workers: int | None = None
    cache_dir: Path | None = None
    truth: Path | None = None
    run_id: str = "experiments"
    command: str = ""

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise VfriskError(
                "unknown_variant",
                f"unknown variant(s) {', '.join(unknown)}; choose among {', '.join(VARIANTS)}",
            )
        if self.epochs is not None and self.epochs < 1:
            raise VfriskError("bad_argument", f"--epochs must be >= 1, got {self.epochs}")

    @property
    def chosen(self) -> tuple[str, ...]:
        """The variants to run, reference first, in :data:`VARIANTS` order."""
        wanted = {REFERENCE, *self.variants}
        return tuple(v for v in VARIANTS if v in wanted)


@dataclass(frozen=True)
class TrainedVariant:
    """A finished variant: its checkpoint, model id and preprocessing."""

    name: str
    checkpoint: Path
    model_id: str
    settings: PreprocessingSettings
    skipped: bool


@dataclass(frozen=True)
class ExperimentResult:
    """What :func:`run_experiments` made.

    Attributes
    ----------
    rows : pandas.DataFrame
        The long comparison table (``EVALUATION_COLUMNS``), exact counts.
    markdown : str
        The printed report.
    trained, skipped : tuple of str
        Variants trained in this call, and finished ones reused.
    failed : dict of str to str
        Variants that could not be trained, with the reason.
    notes : tuple of str
    files : tuple of Path
    """

    rows: pd.DataFrame
    markdown: str
    trained: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: dict[str, str]
    notes: tuple[str, ...]
    files: tuple[Path, ...]


def variant_preprocessing(base: PreprocessingSettings, intensity: str) -> PreprocessingSettings:
    """``base`` with the variant's patch intensity; other intensity = its own version.

    The version gets ``-<intensity>`` appended, so the cached inputs, biomarkers and
    checkpoints of the two scalings never mix.
    """
    if base.intensity == intensity:
        return base
    return dataclasses.replace(base, intensity=intensity, version=f"{base.version}-{intensity}")


def _train_request(name: str, req: ExperimentRequest, config: Any, settings: PreprocessingSettings):  # noqa: ANN202
    from models.train import TrainRequest

    exp = config["experiments"]
    v = VARIANTS[name]
    quick = (
        {"width": int(exp["quick_width"]), "depth": list(exp["quick_depth"]),
         "epochs": int(exp["quick_epochs"]), "triplets_per_level": 2}
        if req.quick
        else {}
    )  # fmt: skip
    overrides = {
        **quick,
        "variant": v.input_variant,
        "task": v.task,
        "out": str(req.out / f"{name}.pt"),
        "device": req.device,
        "cache_dir": None if req.cache_dir is None else str(req.cache_dir),
        "workers": req.workers,
        "command": req.command,
    }
    if req.epochs is not None:
        overrides["epochs"] = req.epochs
    request = TrainRequest.from_config(config, db=req.db, **overrides)
    return dataclasses.replace(request, preprocessing=settings)


def _fingerprint(request: Any, settings: PreprocessingSettings) -> str:
    recipe = {
        "model": request.model.to_dict(),
        "train": request.hyperparameters(),
        "preprocessing": settings.version,
        "digest": settings.digest(),
        "db": str(Path(request.db).resolve()),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _train_variants(
    req: ExperimentRequest,
    config: Any,
    base: PreprocessingSettings,
    progress: Callable[[int, int], None] | None,
    log: Callable[[str], None],
) -> tuple[list[TrainedVariant], dict[str, str]]:
    from models.train import train

    done: list[TrainedVariant] = []
    failed: dict[str, str] = {}
    names = req.chosen
    if progress is not None:
        progress(0, len(names))
    for i, name in enumerate(names):
        settings = variant_preprocessing(base, VARIANTS[name].intensity)
        request = _train_request(name, req, config, settings)
        marker = req.out / f"{name}.done.json"
        fp = _fingerprint(request, settings)
        previous = json.loads(marker.read_text()) if marker.is_file() else {}
        if previous.get("fingerprint") == fp and request.out.is_file():
            log(f"[{name}] finished earlier (model {previous['model_id']}): skipped")
            done.append(
                TrainedVariant(name, request.out, previous["model_id"], settings, skipped=True)
            )
        else:
            if previous:
                log(f"[{name}] the recipe changed since the last run: training again")
            marker.unlink(missing_ok=True)
            log(f"[{name}] training {VARIANTS[name].label} ...")
            try:
                result = train(request, config, log=lambda line, n=name: log(f"[{n}] {line}"))
            except VfriskError as exc:
                failed[name] = f"[{exc.code}] {exc.message}"
                log(f"[{name}] not trained: {failed[name]}")
            else:
                marker.write_text(
                    json.dumps(
                        {"fingerprint": fp, "model_id": result.model_id,
                         "checkpoint": str(result.checkpoint), "best_epoch": result.best_epoch,
                         "preprocessing_version": settings.version},
                        indent=2,
                    )
                )  # fmt: skip
                done.append(
                    TrainedVariant(name, request.out, result.model_id, settings, skipped=False)
                )
        if progress is not None:
            progress(i + 1, len(names))
    return done, failed


def _predictions(
    variant: TrainedVariant, examples: Sequence[Any], req: ExperimentRequest, log: Callable
) -> pd.DataFrame:
    """``series_uid, model_id, p_fracture, risk_1y..`` of every example.

    Kept in ``OUT/<variant>.predictions.csv``: reused while the model id and every
    series' ``content_hash`` are unchanged.
    """
    import torch

    from models.checkpoint import load_checkpoint
    from models.data import load_examples
    from models.inference import predict

    path = req.out / f"{variant.name}.predictions.csv"
    wanted = {(e.series_uid, e.content_hash) for e in examples}
    if path.is_file():
        cached = pd.read_csv(
            path, dtype={"series_uid": str, "model_id": str, "content_hash": str}
        ).fillna({"content_hash": ""})
        have = set(zip(cached["series_uid"], cached["content_hash"], strict=True))
        if (cached["model_id"] == variant.model_id).all() and wanted <= have:
            return cached.drop(columns="content_hash")
    device = req.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = load_checkpoint(
        variant.checkpoint, preprocessing_version=variant.settings.version, device=device
    )
    log(f"[{variant.name}] scoring {len(examples)} patients ...")
    rows = []
    chunk = 64  # inputs of 64 patients in memory at a time (~150 MB)
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        loaded = load_examples(part, variant.settings, config=ckpt.config)
        preds = predict(ckpt.model, loaded.inputs, device=device, features=loaded.features)
        for e, p in zip(part, preds, strict=True):
            risk = p.risk or (np.nan,) * ckpt.config.max_followup
            rows.append(
                {"series_uid": p.series_uid, "content_hash": e.content_hash,
                 "model_id": variant.model_id,
                 "p_fracture": np.nan if p.p_fracture is None else p.p_fracture,
                 **{f"risk_{t + 1}y": r for t, r in enumerate(risk)}}
            )  # fmt: skip
    out = pd.DataFrame(rows)
    out.to_csv(path, index=False)
    return out.drop(columns="content_hash")


def _truth(frame: pd.DataFrame, truth: Path, levels: Sequence[str]) -> tuple[np.ndarray, list]:
    path = truth / "truth" / "patients.csv"
    if not path.is_file():
        raise VfriskError(
            "bad_argument",
            f"--truth {truth}: {path} does not exist; give the folder `vfrisk synth` wrote",
        )
    t = pd.read_csv(path, dtype={"patient_id": str}).set_index("patient_id")
    t = t.reindex(frame["patient_id"])
    grades = t[[f"grade_{lv}" for lv in levels]].to_numpy(dtype=float)
    known = np.isfinite(grades).any(axis=1)
    worst = np.where(np.isfinite(grades), grades, -1).max(axis=1)
    grade2 = np.where(known, worst >= 2, np.nan)
    oracles = []
    for name in ("oracle_full", "oracle_image", "oracle_bone"):
        cols = [c for c in t.columns if c.startswith(f"{name}_") and c.endswith("y")]
        cols.sort(key=lambda c: int(c.removeprefix(f"{name}_").removesuffix("y")))
        label = f"Generator {name.replace('_', ' ')} (truth)"
        oracles.append(ScoredModel(name, label, "oracle", None, t[cols].to_numpy(dtype=float)))
    return grade2.astype(float), oracles


def run_experiments(
    req: ExperimentRequest,
    config: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> ExperimentResult:
    """Train the variants, score every site, fit the comparators, and write the table.

    Parameters
    ----------
    req : ExperimentRequest
    config : engine.config.Config
        ``[train]``, ``[experiments]``, ``[preprocessing]``, ``[loading]``, ``[report]``
        (interval settings, horizons, minimum cell count) and ``[storage]``.
    progress : callable, optional
        ``progress(done, total)`` over the variants.
    log : callable
        One line per step.

    Returns
    -------
    ExperimentResult
    """
    from engine.report.suppress import suppressed_rows
    from engine.store import Store
    from engine.store.clinical_tables import count_clinical
    from engine.store.experiment_tables import comparator_frame
    from models.data import build_cache

    if not req.db.is_file():
        raise VfriskError(
            "db_not_found",
            f"database {req.db} does not exist; run `vfrisk index` and `vfrisk import-clinical` "
            "first, or pass the right --db",
        )
    store = Store(req.db, lock_timeout_s=config["storage"]["lock_timeout_s"])
    with store.read() as con:
        if count_clinical(con) == 0:
            raise VfriskError(
                "no_clinical_data",
                f"{req.db} holds no clinical table: run `vfrisk import-clinical FILE --db DB`",
            )
    exp = config["experiments"]
    report = settings_from_config(config)
    if req.quick:
        report = dataclasses.replace(report, n_boot=int(exp["quick_n_boot"]))
    req.out.mkdir(parents=True, exist_ok=True)
    base = PreprocessingSettings.from_config(config)

    trained, failed = _train_variants(req, config, base, progress, log)
    notes = [f"{n} not trained: {why}" for n, why in failed.items()]

    # every linked patient of every site, per preprocessing the variants need
    ref_request = _train_request(REFERENCE, req, config, base)
    dev_sites = ref_request.sites
    cache_dir = ref_request.cache_dir or req.db.with_name(f"{req.db.stem}.cache")
    examples: dict[str, list] = {}
    for settings in {
        base.version: base,
        **{t.settings.version: t.settings for t in trained},
    }.values():
        cache = build_cache(store, config, cache_dir, workers=req.workers or 1, settings=settings)
        examples[settings.version] = list(cache.examples)
        notes += [
            f"series {f.series_uid} ({settings.version}) not prepared: {f.stage} [{f.reason_code}]"
            for f in cache.failures
        ]
    with store.read() as con:
        frame = comparator_frame(con, base.version)

    models: list[ScoredModel] = []
    for t in trained:
        pred = _predictions(t, examples[t.settings.version], req, log).drop(columns="model_id")
        joined = frame[["series_uid"]].merge(pred, on="series_uid", how="left")
        risk_cols = [c for c in pred.columns if c.startswith("risk_")]
        v = VARIANTS[t.name]
        risk = joined[risk_cols].to_numpy(dtype=float)
        models.append(
            ScoredModel(
                t.name, v.label, "variant",
                joined["p_fracture"].to_numpy(dtype=float) if v.task != "survival" else None,
                risk if v.task != "detection" else None,
            )
        )  # fmt: skip

    ref = next((m for m in models if m.name == REFERENCE), None)
    cox = CoxSettings.from_config(config, max_followup=ModelConfig().max_followup)
    combined_fit = None
    if ref is not None:
        frame[IMAGE_COVARIATE] = image_logit(ref.survival[:, -1])
        combined_fit, note = _combined_fit_rows(frame, examples[base.version], ref_request, cox)
        notes.append(note)
    comps = fit_comparators(frame, dev_sites=dev_sites, settings=cox, combined_fit=combined_fit)
    notes += comps.notes
    for s in comps.scores:
        models.append(ScoredModel(s.name, s.label, "comparator", s.score, s.score))

    grade2 = None
    if req.truth is not None:
        grade2, oracles = _truth(frame, req.truth, base.levels)
        models += oracles

    table = evaluate_models(
        frame, models, reference=REFERENCE, dev_sites=dev_sites, settings=report, grade2=grade2
    )
    markdown = to_markdown(
        table, frame, models, reference=REFERENCE, dev_sites=dev_sites, settings=report,
        grade2_known=grade2 is not None, notes=notes,
    )  # fmt: skip
    md_path, csv_path = req.out / "experiments.md", req.out / "experiments.csv"
    md_path.write_text(markdown)
    suppressed_rows(table.rows, report.min_cell_count).to_csv(csv_path, index=False)
    _store_rows(store, table.rows, trained, req.run_id)
    return ExperimentResult(
        rows=table.rows,
        markdown=markdown,
        trained=tuple(t.name for t in trained if not t.skipped),
        skipped=tuple(t.name for t in trained if t.skipped),
        failed=failed,
        notes=tuple(notes) + table.notes,
        files=(md_path, csv_path),
    )


def _combined_fit_rows(
    frame: pd.DataFrame, examples: Sequence[Any], request: Any, cox: CoxSettings
) -> tuple[np.ndarray, str]:
    """Rows that fit the image + clinical model, and a note saying which.

    The reference network's validation patients (the seeded split of
    :func:`models.train.split_indices` on the same development patients) when they hold
    ``cox.min_events`` fractures; else the whole development site.
    """
    from models.train import split_indices

    is_dev = frame["site"].isin(list(request.sites)).to_numpy()
    dev = [e for e in examples if e.site in request.sites]
    if request.folds is None and dev:
        _, val = split_indices(
            dev, horizon=request.model.max_followup, seed=request.seed,
            val_fraction=request.val_fraction, folds=None,
        )[0]  # fmt: skip
        val_ids = {dev[i].patient_id for i in val}
        rows = frame["patient_id"].isin(val_ids).to_numpy()
        events = int((frame.loc[rows, "event_type"] == 1).sum())
        if events >= cox.min_events:
            return rows, (
                f"cox_combined: fitted on the {int(rows.sum())} development patients of the "
                "reference network's validation split (out of its training)"
            )
    return is_dev, (
        "cox_combined: fitted on the whole development site, where the network's risk is "
        "in-sample (too few fractures in its validation split, or k folds): the image "
        "term's weight is optimistic"
    )


def _store_rows(
    store: Any, rows: pd.DataFrame, trained: Sequence[TrainedVariant], run_id: str
) -> None:
    """Write the table into ``evaluation`` the way ``vfrisk report`` lays it out.

    Each variant's rows go under its model id with score ``'model'`` (its paired rows
    ``delta_<metric>_vs_<reference>`` = variant - reference). Comparators and oracles go
    under the reference's model id with their own score names, and their paired rows
    become the reference's ``delta_<metric>_vs_<comparator>`` = reference - comparator.
    """
    import datetime as dt

    from engine.store.report_tables import insert_evaluation

    ids = {t.name: t.model_id for t in trained}
    ref_id = ids.get(REFERENCE)
    when = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    batches: dict[str | None, list[pd.DataFrame]] = {}
    for score, g in rows.groupby("score", sort=False):
        if score in ids:
            batches.setdefault(ids[score], []).append(g.assign(score="model"))
            continue
        is_delta = g["metric"].str.startswith("delta_")
        plain, delta = g[~is_delta], g[is_delta].copy()
        if not delta.empty:
            metric = delta["metric"].str.replace(rf"_vs_{REFERENCE}$", "", regex=True)
            delta["metric"] = metric + f"_vs_{score}"
            delta["score"] = "model"
            delta["estimate"] = -delta["estimate"]
            delta["ci_low"], delta["ci_high"] = (
                -g.loc[is_delta, "ci_high"],
                -g.loc[is_delta, "ci_low"],
            )
        batches.setdefault(ref_id, []).extend([plain, delta])
    with store.write() as con:
        for model_id, parts in batches.items():
            frame = pd.concat([p for p in parts if not p.empty], ignore_index=True)
            insert_evaluation(con, frame, run_id=run_id, model_id=model_id, computed_at=when)
