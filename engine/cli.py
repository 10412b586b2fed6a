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
    train.add_argument("--patients", type=_positive_int, default=36, metavar="N")
    train.add_argument("--epochs", type=_positive_int, default=8, metavar="E")
    train.add_argument("--seed", type=int, default=7, metavar="S")
    train.add_argument("--width", type=_positive_int, default=16, metavar="C")

    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on a small synthetic cohort",
        description="Generate the demo cohort when missing and run every stage on it.",
    )
    demo.add_argument("--dir", type=Path, help="working folder (default from config)")
    demo.add_argument("--patients", type=_positive_int, metavar="N")
    demo.add_argument("--workers", type=_positive_int, default=_default_workers(), metavar="N")
    return parser


def _log_path(args: argparse.Namespace, config: Config, beside: Path) -> Path:
    if args.log_file:
        return Path(args.log_file)
    if config["logging"]["file"]:
        return Path(config["logging"]["file"])
    return beside / "vfrisk.log.jsonl"


def _progress(label: str):  # noqa: ANN202 - returns a progress callback
    from tqdm import tqdm

    bar: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=label, unit="patient", file=sys.stderr)
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

    req = TrainRequest(
        out=args.out, patients=args.patients, epochs=args.epochs, seed=args.seed,
        width=args.width,
    )  # fmt: skip
    # the log stays out of the weights folder, whose files ship with the package
    beside = Path(tempfile.gettempdir())
    logs.configure(_log_path(args, config, beside), "train-anatomy", config["logging"]["level"])
    summary = train_muscles(req, log=lambda line: print(line, flush=True))
    dice = ", ".join(f"{k} {v:.3f}" for k, v in summary.val_dice.items())
    print(f"Muscle network written to {summary.weights} (card {summary.card}).")
    print(f"  validation Dice: {dice}; {summary.seconds:.0f} s")
    return 0


def _cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from engine import logs
    from engine.demo import run_demo

    folder = args.dir or Path(config["demo"]["dir"])
    logs.configure(_log_path(args, config, folder), "demo", config["logging"]["level"])
    return run_demo(
        folder,
        patients=args.patients or config["demo"]["patients"],
        workers=args.workers,
        config=config,
        progress=_progress("synth"),
    )


_COMMANDS = {
    "synth": _cmd_synth,
    "index": _cmd_index,
    "import-clinical": _cmd_import_clinical,
    "report": _cmd_report,
    "train-anatomy": _cmd_train_anatomy,
    "demo": _cmd_demo,
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
