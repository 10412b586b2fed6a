"""The ``vfrisk`` command line.

Each subcommand is a small function that reads its options, calls the library and prints
a human summary; every run also writes JSON-lines events (``engine.logs``). Bad input ends
with ``vfrisk: error [reason_code] message`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from engine import __version__
from engine.config import Config, load_config
from engine.errors import VfriskError
from engine.summaries import describe_clinical, describe_index, describe_synth

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vfrisk",
        description="Opportunistic vertebral fracture risk from routine CT. "
        "Shipped data and weights are SYNTHETIC and not for clinical use.",
    )
    parser.add_argument("--version", action="version", version=f"vfrisk {__version__}")
    parser.add_argument("--config", help="TOML file overriding engine/default_config.toml")
    parser.add_argument("--log-file", help="JSON-lines event log (default: beside the output)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser(
        "synth",
        help="generate a synthetic multi-site CT cohort (DICOM + clinical table + truth)",
        description="Write a SYNTHETIC scan archive, clinical table and ground truth to OUT.",
    )
    synth.add_argument("out", type=Path, metavar="OUT", help="new (or empty) output folder")
    synth.add_argument("--patients", type=_positive_int, required=True, metavar="N")
    synth.add_argument(
        "--sites",
        metavar="SPEC",
        help="NAME[:WEIGHT],... of site profiles "
        "(default from config: dev:0.6,ext_a:0.2,ext_b:0.2)",
    )
    synth.add_argument("--seed", type=int, metavar="S", help="random seed (default 0)")
    synth.add_argument(
        "--resolution",
        choices=("full", "low"),
        help="full: 512x512 T10-sacrum; low: cropped around the spine",
    )
    synth.add_argument(
        "--tables-only",
        action="store_true",
        help="write the clinical table and truth without images",
    )
    synth.add_argument("--workers", type=_positive_int, default=_default_workers(), metavar="N")
    synth.add_argument(
        "--profiles",
        type=Path,
        metavar="FILE",
        help="site profile TOML (default sample_data/site_profiles.toml)",
    )

    index = sub.add_parser(
        "index",
        help="index a scan archive (DICOM, zip, NIfTI) into the database",
        description="Walk ARCHIVE (any depth, any file names; zip members and NIfTI too), "
        "read headers only, group series, decide which series can be scored and select "
        "one per study. Incremental: a re-run reads only new or changed files.",
    )
    index.add_argument("archive", type=Path, metavar="ARCHIVE", help="folder to index")
    index.add_argument("--db", type=Path, help="DuckDB file (default from config)")
    index.add_argument("--workers", type=_positive_int, default=_default_workers(), metavar="N")
    index.add_argument(
        "--batch-files",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="files per write transaction (a crash loses at most one batch)",
    )
    index.add_argument("--no-progress", action="store_true", help="no progress bar")

    clinical = sub.add_parser(
        "import-clinical",
        help="import the clinical table (CSV or Parquet) and link it to the indexed scans",
        description="Check FILE against the clinical data dictionary, store it by patient_id "
        "(re-import updates; patients absent from FILE are kept unless --replace) and link "
        "each patient to the DICOM PatientID of the indexed scans. Any error refuses the "
        "whole file, with a report naming row, column, value and rule; nothing is written.",
    )
    clinical.add_argument("file", type=Path, metavar="FILE", help="CSV or Parquet file")
    clinical.add_argument("--db", type=Path, help="DuckDB file (default from config)")
    clinical.add_argument(
        "--replace",
        action="store_true",
        help="delete stored patients that are not in FILE (default: keep them)",
    )
    clinical.add_argument(
        "--max-problems",
        type=_positive_int,
        metavar="N",
        help="problems printed when the file is refused (default [clinical] max_problems)",
    )

    report = sub.add_parser(
        "report",
        help="evaluate model predictions and FRAX against outcomes; write the report",
        description="Compute the study's evaluation table (detection AUROC, Harrell and Uno "
        "c-index, td-AUC, calibration, model vs FRAX and L1 HU) per site, pooled and by "
        "subgroup; store it in the `evaluation` table under a new run id; print the "
        "Markdown report and optionally write it to --out (.md, .html, .csv, .json). "
        "Without model predictions the report covers the cohort and FRAX alone.",
    )
    report.add_argument("--db", type=Path, help="DuckDB file (default from config)")
    report.add_argument(
        "--model",
        metavar="ID",
        help="model_id to evaluate (default: the latest model that has predictions)",
    )
    report.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="also write the report: .md, .html (self-contained), .csv (evaluation rows), .json",
    )

    train = sub.add_parser(
        "train-anatomy",
        help="train the built-in muscle network on a generated cohort (CPU, minutes)",
        description="Generate a synthetic cohort with fixed development seeds, train the "
        "psoas/paraspinal U-Net on its ground truth and write the weights (float16) and a "
        "JSON model card beside them. Same command, same weights.",
    )
    train.add_argument(
        "--out",
        type=Path,
        default=Path("engine/anatomy/weights/muscles.pt"),
        metavar="FILE",
        help="weights file (.pt); the card is written beside it as .json",
    )
    # defaults: engine.anatomy.train_muscles.TrainRequest, which the parser does not import
    # (engine.anatomy costs ~0.5 s); the help repeats them, a test holds them equal
    train.add_argument("--patients", type=_positive_int, metavar="N",
                       help="low-resolution patients generated (default 36)")  # fmt: skip
    train.add_argument("--epochs", type=_positive_int, metavar="E",
                       help="passes over the training slices (default 8)")  # fmt: skip
    train.add_argument("--seed", type=int, metavar="S", help="cohort and training seed (default 7)")
    train.add_argument("--width", type=_positive_int, metavar="C",
                       help="channels of the first level (default 8)")  # fmt: skip

    score = sub.add_parser(
        "score",
        help="score the selected series into predictions and biomarkers (resumable)",
        description="Prepare every selected series of the database that this model has not "
        "scored yet (or whose content changed), run the fracture model on batches and write "
        "predictions, biomarkers, QA facts and failures, one batch per transaction. A rerun "
        "scores only what is missing; a bad series fails alone. The shipped weights are "
        "trained on SYNTHETIC data: not for clinical use.",
    )
    score.add_argument("--db", type=Path, help="DuckDB file (default from config)")
    score.add_argument(
        "--model", type=Path, metavar="PATH", help="checkpoint (default [score] model or the "
        "shipped models/weights/fracture_net.pt)",
    )  # fmt: skip
    score.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default [score] device")
    score.add_argument("--workers", type=_positive_int, metavar="N", help="preparing processes")
    score.add_argument("--batch-size", type=_positive_int, metavar="B")
    score.add_argument("--backend", choices=("local", "ray"), default="local")
    score.add_argument(
        "--address", metavar="ADDR", help="Ray cluster address (default [score] ray_address; "
        "empty: start a local Ray)",
    )  # fmt: skip
    score.add_argument("--rescore", action="store_true", help="score every selected series again")
    score.add_argument("--retry-failed", action="store_true", help="retry series that failed")
    score.add_argument("--dry-run", action="store_true", help="list what would be scored")
    score.add_argument(
        "--masks", type=Path, metavar="DIR",
        help="TotalSegmentator masks (DIR/SERIES_UID/...) instead of the built-in segmenter",
    )  # fmt: skip
    score.add_argument("--no-qa", action="store_true", help="draw no QA pictures")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")

    fit = sub.add_parser(
        "train",
        help="train the fracture network on the development site; checkpoint + model card",
        description="Prepare and cache the model inputs of every linked patient, train the "
        "multitask network on the development site (seeded validation split or k folds, "
        "checkpoint chosen on validation c-index, early stopping), evaluate it on every "
        "external site in the database and write the checkpoint with its model card "
        "(NAME.card.json, NAME.card.md). Defaults in [train] of the configuration.",
    )
    fit.add_argument("--db", type=Path, help="DuckDB file (default from config)")
    fit.add_argument("--out", type=Path, metavar="FILE", help="checkpoint (.pt) to write")
    fit.add_argument("--cache", type=Path, metavar="DIR", help="cached inputs (default DB.cache)")
    fit.add_argument("--variant", choices=("bone", "bone_muscle"))
    fit.add_argument("--task", choices=("detection", "survival", "multitask"))
    fit.add_argument("--weighting", choices=("uncertainty", "pcgrad", "fixed"))
    fit.add_argument("--epochs", type=_positive_int, metavar="E")
    fit.add_argument("--batch-size", type=_positive_int, metavar="B")
    fit.add_argument("--seed", type=int, metavar="S")
    fit.add_argument("--folds", type=_positive_int, metavar="K", help="k-fold CV (K >= 2)")
    fit.add_argument("--device", choices=("auto", "cpu", "cuda"))
    fit.add_argument("--workers", type=_positive_int, metavar="N")
    fit.add_argument("--recipe", choices=("default", "convnext_tiny"))
    fit.add_argument(
        "--select", choices=("c_index", "mean"),
        help="validation metric that picks the epoch (mean: of c-index and detection AUROC)",
    )  # fmt: skip
    fit.add_argument(
        "--survival-loss", choices=("likelihood", "bce"),
        help="survival head's loss: the discrete-time likelihood or Mirai's per-year BCE",
    )  # fmt: skip
    fit.add_argument(
        "--cohort", type=Path, metavar="DIR",
        help="the `vfrisk synth` folder, when the archive paths do not lead to its manifest",
    )  # fmt: skip

    experiments = sub.add_parser(
        "experiments",
        help="rerun the study's comparisons: train the variants, fit the comparators, tabulate",
        description="Train the study's network variants on the development site (resumable: "
        "a finished variant is skipped), score every linked patient of every site, fit the "
        "comparators (FRAX, clinical Cox, L1 HU cut-offs, biomarker Cox, image + clinical "
        "Cox) on the development site and print the paper-shaped table per site with 95 %% "
        "CIs and paired p-values; write it to OUT (Markdown, CSV) and the evaluation table. "
        "Everything here is SYNTHETIC: not for clinical use.",
    )
    experiments.add_argument("--db", type=Path, help="DuckDB file (default from config)")
    experiments.add_argument(
        "--out", type=Path, required=True, metavar="DIR",
        help="folder of checkpoints, cards, predictions and the table",
    )  # fmt: skip
    experiments.add_argument(
        "--variants", metavar="NAME,...",
        help="comma-separated variants (default [experiments] variants): "
        "multitask_bone_muscle, multitask_bone, detection_bone_muscle, survival_bone_muscle, "
        "multitask_bone_muscle_minmax",
    )  # fmt: skip
    experiments.add_argument("--epochs", type=_positive_int, metavar="E",
                             help="epochs per variant (default [train] epochs)")  # fmt: skip
    experiments.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    experiments.add_argument("--workers", type=_positive_int, metavar="N",
                             help="processes preparing uncached series")  # fmt: skip
    experiments.add_argument("--cache", type=Path, metavar="DIR",
                             help="cached inputs (default [train] cache_dir)")  # fmt: skip
    experiments.add_argument(
        "--truth", type=Path, metavar="COHORT",
        help="a `vfrisk synth` folder: add the generator's oracle risks and grade >= 2 detection",
    )  # fmt: skip
    experiments.add_argument("--quick", action="store_true",
                             help="tiny networks, one epoch: a smoke run in minutes")  # fmt: skip
    experiments.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on a small synthetic cohort",
        description="Generate the demo cohort when missing and run every stage on it.",
    )
    demo.add_argument("--dir", type=Path, help="working folder (default from config)")
    demo.add_argument("--patients", type=_positive_int, metavar="N")
    demo.add_argument("--workers", type=_positive_int, default=_default_workers(), metavar="N")
    demo.add_argument(
        "--no-dashboard",
        action="store_true",
        help="stop after the report instead of serving the dashboard on the demo database",
    )
    dash = sub.add_parser(
        "dashboard",
        help="open the cohort dashboard (Streamlit) on a database, read-only",
        description="Start the Streamlit dashboard on DB: overview, survival, calibration, "
        "model vs FRAX, follow-up worklist, ad hoc scoring of one scan, data quality. It "
        "reads the database while other commands write to it. Listens on 127.0.0.1 unless "
        "--host names another address, which needs sign-in configured ([dashboard] "
        "auth_secrets).",
    )
    dash.add_argument("--db", type=Path, help="DuckDB file (default from config)")
    dash.add_argument("--host", help="address to listen on (default [dashboard] host: 127.0.0.1)")
    dash.add_argument("--port", type=_positive_int, help="port (default [dashboard] port: 8501)")
    return parser


def _log_path(args: argparse.Namespace, config: Config, beside: Path) -> Path:
    if args.log_file:
        return Path(args.log_file)
    if config["logging"]["file"]:
        return Path(config["logging"]["file"])
    return beside / "vfrisk.log.jsonl"


def _progress(label: str, unit: str = "patient"):  # noqa: ANN202 - returns a progress callback
    from tqdm import tqdm

    bar: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=label, unit=unit, file=sys.stderr)
        bar["bar"].update(done - bar["bar"].n)
        if done == total:
            bar["bar"].close()

    return update


def _cmd_synth(args: argparse.Namespace, config: Config) -> int:
    from engine import logs
    from engine.synth.cohort import SynthRequest, check_request, synthesize

    defaults = config["synth"]
    req = SynthRequest(
        out=args.out,
        patients=args.patients,
        sites=args.sites or defaults["sites"],
        seed=defaults["seed"] if args.seed is None else args.seed,
        resolution=args.resolution or defaults["resolution"],
        tables_only=args.tables_only,
        workers=args.workers,
        profiles_path=args.profiles,
    )
    check_request(req)  # before the log file is created inside OUT
    logs.configure(_log_path(args, config, args.out), "synth", config["logging"]["level"])
    summary = synthesize(req, progress=None if args.tables_only else _progress("synth"))
    print(describe_synth(summary, req))
    return 0


def _cmd_index(args: argparse.Namespace, config: Config) -> int:
    from engine import logs
    from engine.clinical import relink, settings_from_config
    from engine.index import IndexRequest, index_archive, rules_from_config
    from engine.store import Store

    db = args.db or Path(config["storage"]["db"])
    if not args.archive.is_dir():
        raise VfriskError(
            "archive_not_found",
            f"archive folder {args.archive} does not exist or is not a folder; pass the "
            "folder that holds the DICOM files (any depth)",
        )
    log_path = _log_path(args, config, db.absolute().parent)
    run_id = logs.configure(log_path, "index", config["logging"]["level"])
    rules = rules_from_config(config)
    req = IndexRequest(
        archive=args.archive,
        workers=args.workers,
        batch_files=args.batch_files,
        progress=not args.no_progress,
        exclude=(log_path,),
    )
    store = Store(db, lock_timeout_s=config["storage"]["lock_timeout_s"])
    summary = index_archive(store, req, rules, config_hash=config.hash(), run_id=run_id)
    print(describe_index(summary))
    # Scans changed: refresh the clinical link (earliest selected scan per patient).
    links = relink(store, settings_from_config(config), run_id)
    if links is not None:
        print(
            f"  clinical     relinked: {links.linked} patients linked, {links.no_scan} without "
            f"a scan, {links.scans_without_patient} scans without a patient"
        )
    return 0


def _cmd_import_clinical(args: argparse.Namespace, config: Config) -> int:
    import dataclasses

    from engine import logs
    from engine.clinical import ImportRequest, import_clinical, settings_from_config
    from engine.store import Store

    db = args.db or Path(config["storage"]["db"])
    settings = settings_from_config(config)
    if args.max_problems:
        settings = dataclasses.replace(settings, max_problems=args.max_problems)
    run_id = logs.configure(
        _log_path(args, config, db.absolute().parent), "import-clinical",
        config["logging"]["level"],
    )  # fmt: skip
    store = Store(db, lock_timeout_s=config["storage"]["lock_timeout_s"])
    req = ImportRequest(file=args.file, replace=args.replace)
    summary = import_clinical(store, req, settings, config_hash=config.hash(), run_id=run_id)
    print(describe_clinical(summary))
    return 0


def _cmd_report(args: argparse.Namespace, config: Config) -> int:
    from engine import logs
    from engine.report import build_report, check_output, settings_from_config
    from engine.report.document import build_document
    from engine.report.render import to_markdown, write
    from engine.store import Store

    db = args.db or Path(config["storage"]["db"])
    settings = settings_from_config(config)
    if args.out is not None:
        check_output(args.out)  # before any work: a bad extension is refused at once
    store = Store(db, lock_timeout_s=config["storage"]["lock_timeout_s"])
    if not store.path.exists():
        raise VfriskError(
            "db_not_found",
            f"database {db} does not exist; index the scans and import the clinical table "
            "first (`vfrisk index`, `vfrisk import-clinical`), or pass the right --db",
        )
    run_id = logs.configure(
        _log_path(args, config, db.absolute().parent), "report", config["logging"]["level"]
    )
    report = build_report(
        store, settings, model_id=args.model, config_hash=config.hash(), run_id=run_id
    )
    print(to_markdown(build_document(report)))
    if args.out is not None:
        print(f"Report written to {write(report, args.out)}")
    print(f"Evaluation stored in {db} (table evaluation, run {report.run_id}).")
    return 0


def _cmd_train_anatomy(args: argparse.Namespace, config: Config) -> int:
    import tempfile

    from engine import logs
    from engine.anatomy.train_muscles import TrainRequest, train_muscles

    given = {k: getattr(args, k) for k in ("patients", "epochs", "seed", "width")}
    req = TrainRequest(out=args.out, **{k: v for k, v in given.items() if v is not None})
    # the log stays out of the weights folder, whose files ship with the package
    beside = Path(tempfile.gettempdir())
    logs.configure(_log_path(args, config, beside), "train-anatomy", config["logging"]["level"])
    summary = train_muscles(req, log=lambda line: print(line, flush=True))
    dice = ", ".join(f"{k} {v:.3f}" for k, v in summary.val_dice.items())
    print(f"Muscle network written to {summary.weights} (card {summary.card}).")
    print(f"  validation Dice: {dice}; {summary.seconds:.0f} s")
    return 0


def _cmd_score(args: argparse.Namespace, config: Config) -> int:
    from engine import logs
    from engine.score import ScoreRequest, describe_score, score_archive

    db = args.db or Path(config["storage"]["db"])
    cfg = config["score"]
    run_id = logs.configure(
        _log_path(args, config, db.absolute().parent), "score", config["logging"]["level"]
    )
    request = ScoreRequest(
        db=db, model_path=args.model, device=args.device or cfg["device"],
        workers=args.workers or cfg["workers"] or _default_workers(),
        batch_size=args.batch_size or cfg["batch_size"], backend=args.backend,
        rescore=args.rescore, retry_failed=args.retry_failed, dry_run=args.dry_run,
        masks_dir=args.masks, qa_png=cfg["qa_png"] and not args.no_qa,
        progress=not args.no_progress, ray_address=args.address or cfg["ray_address"] or None,
    )  # fmt: skip
    print(describe_score(score_archive(request, config, run_id=run_id)))
    return 0


def _cmd_train(args: argparse.Namespace, config: Config) -> int:
    import shlex

    from engine import logs
    from models.train import TrainRequest, train

    db = args.db or Path(config["storage"]["db"])
    # the command as given (options in a fixed order), recorded in the checkpoint and card
    words = ["vfrisk", *(["--config", args.config] if args.config else []), "train"]
    options = ("db", "out", "cache", "variant", "task", "weighting", "epochs", "batch_size",
               "seed", "folds", "device", "workers", "recipe", "select", "survival_loss",
               "cohort")  # fmt: skip
    for name in options:
        value = getattr(args, name)
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    req = TrainRequest.from_config(
        config, db=db, out=args.out, cache_dir=args.cache, variant=args.variant,
        task=args.task, weighting=args.weighting, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, folds=args.folds, device=args.device,
        workers=args.workers, recipe=args.recipe, select=args.select, cohort=args.cohort,
        survival_loss=args.survival_loss,
        command=shlex.join(words),
    )  # fmt: skip
    logs.configure(
        _log_path(args, config, db.absolute().parent), "train", config["logging"]["level"]
    )
    result = train(req, config, progress=_progress("prepare"), log=lambda s: print(s, flush=True))
    val = result.val_metrics
    c = (val.get("c_index") or {}).get("estimate")
    auc = (val.get("detection_auroc") or {}).get("estimate")
    print(
        f"Checkpoint written to {result.checkpoint} (model id {result.model_id}, epoch "
        f"{result.best_epoch}); card {result.card_json}, {result.card_md}."
    )
    print(f"  internal validation: c-index {c}, detection AUROC {auc}; {result.seconds:.0f} s")
    print("  Trained on SYNTHETIC data when the cohort is synthetic: not for clinical use.")
    return 0


def _cmd_experiments(args: argparse.Namespace, config: Config) -> int:
    import shlex

    from engine import logs
    from models.experiments import ExperimentRequest, run_experiments

    db = args.db or Path(config["storage"]["db"])
    names = args.variants.split(",") if args.variants else config["experiments"]["variants"]
    run_id = logs.configure(
        _log_path(args, config, db.absolute().parent), "experiments", config["logging"]["level"]
    )
    request = ExperimentRequest(
        db=db, out=args.out, variants=tuple(n.strip() for n in names if n.strip()),
        epochs=args.epochs, device=args.device, quick=args.quick, workers=args.workers,
        cache_dir=args.cache, truth=args.truth, run_id=run_id,
        command=shlex.join(["vfrisk", *sys.argv[1:]]),
    )  # fmt: skip
    result = run_experiments(
        request,
        config,
        progress=None if args.no_progress else _progress("variants", unit="variant"),
        log=lambda line: print(line, flush=True),
    )
    print(result.markdown)
    print(
        f"Trained {len(result.trained)}, reused {len(result.skipped)}, failed "
        f"{len(result.failed)} variant(s). Written: {', '.join(map(str, result.files))}; "
        f"rows stored in {db} (table evaluation, run {run_id})."
    )
    return 0


def _cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from engine import logs
    from engine.config import find_config_file
    from engine.demo import run_demo

    folder = args.dir or Path(config["demo"]["dir"])
    logs.configure(_log_path(args, config, folder), "demo", config["logging"]["level"])
    return run_demo(
        folder,
        patients=args.patients or config["demo"]["patients"],
        workers=args.workers,
        config=config,
        progress=_progress("synth"),
        dashboard=not args.no_dashboard,
        config_file=find_config_file(args.config),
    )


def _cmd_dashboard(args: argparse.Namespace, config: Config) -> int:
    from dashboard.launch import serve
    from dashboard.settings import settings_from_config
    from engine import logs
    from engine.config import find_config_file

    db = args.db or Path(config["storage"]["db"])
    settings = settings_from_config(config)
    host = args.host or settings.host
    port = args.port or settings.port
    logs.configure(
        _log_path(args, config, db.absolute().parent), "dashboard", config["logging"]["level"]
    )
    logs.event("dashboard.start", host=host, port=port)
    return serve(db, host, port, settings, find_config_file(args.config))


_COMMANDS = {
    "synth": _cmd_synth,
    "index": _cmd_index,
    "import-clinical": _cmd_import_clinical,
    "report": _cmd_report,
    "train-anatomy": _cmd_train_anatomy,
    "train": _cmd_train,
    "score": _cmd_score,
    "experiments": _cmd_experiments,
    "demo": _cmd_demo,
    "dashboard": _cmd_dashboard,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vfrisk`` console script; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        return _COMMANDS[args.command](args, config)
    except VfriskError as exc:
        from engine import logs

        logs.event("error", level="error", code=exc.code, message=exc.message)
        print(f"vfrisk: error {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vfrisk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
