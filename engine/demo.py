"""``vfrisk demo``: the whole pipeline on an embedded default, for a first run.

Stages so far, in ``DIR`` (default ``./vfrisk-demo``):

1. generate the SYNTHETIC demo cohort (low resolution, the three shipped sites) into
   ``DIR/cohort`` unless its ``manifest.json`` already exists;
2. index its archive into ``DIR/vfrisk.duckdb`` (incremental: a re-run reads nothing new);
3. import ``DIR/cohort/clinical.csv`` and link it to the indexed scans (a re-run finds
   every row unchanged);
4. score the selected series (``vfrisk score``: predictions, biomarkers, QA pictures in
   ``DIR/vfrisk.duckdb.qa/``) with the configured or shipped model; a re-run scores
   nothing new. Without a trained model (``models/weights/fracture_net.pt``) this step
   says so and the demo goes on;
5. print the Markdown evaluation report (``vfrisk report``): the model against FRAX when
   the scans were scored, else the cohort and FRAX alone.

6. serve the dashboard on the demo database (``vfrisk dashboard``) until Ctrl-C, unless
   ``--no-dashboard``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import Config

if TYPE_CHECKING:
    from engine.store import Store

__all__ = ["run_demo"]


def run_demo(
    folder: Path,
    *,
    patients: int,
    workers: int,
    config: Config,
    progress: Callable[[int, int], None] | None = None,
    dashboard: bool = True,
    config_file: Path | None = None,
) -> int:
    """Run the demo in ``folder``; return the exit status.

    Parameters
    ----------
    folder : Path
        Working folder: ``cohort/`` and ``vfrisk.duckdb`` go there.
    patients : int
        Cohort size when the cohort must be generated.
    workers : int
        Processes for generation and indexing.
    config : Config
        The merged configuration (``[synth]`` sites and seed, ``[eligibility]`` rules).
    progress : callable, optional
        Progress callback ``(done, total)`` of the generation.
    dashboard : bool
        End by serving ``vfrisk dashboard`` on the demo database (until Ctrl-C); False
        prints the command instead.
    config_file : Path, optional
        The user's configuration file, handed to the dashboard server.
    """
    from engine.index import IndexRequest, index_archive, rules_from_config
    from engine.store import Store
    from engine.summaries import describe_index, describe_synth
    from engine.synth.cohort import SynthRequest, synthesize

    cohort = folder / "cohort"
    manifest = cohort / "manifest.json"
    if manifest.exists():
        made = json.loads(manifest.read_text())["summary"]
        print(
            f"Using the SYNTHETIC demo cohort in {cohort}: {made['patients']} patients, "
            f"{made['series']} series, {made['files']} files (delete the folder to regenerate)."
        )
    else:
        request = SynthRequest(
            out=cohort,
            patients=patients,
            sites=config["synth"]["sites"],
            seed=config["synth"]["seed"],
            resolution="low",
            workers=workers,
        )
        print(describe_synth(synthesize(request, progress=progress), request))

    store = Store(folder / "vfrisk.duckdb", lock_timeout_s=config["storage"]["lock_timeout_s"])
    summary = index_archive(
        store,
        IndexRequest(archive=cohort / "archive", workers=workers, progress=False),
        rules_from_config(config),
        config_hash=config.hash(),
    )
    print(describe_index(summary))

    from engine.clinical import ImportRequest, import_clinical, settings_from_config
    from engine.summaries import describe_clinical

    imported = import_clinical(
        store,
        ImportRequest(file=cohort / "clinical.csv"),
        settings_from_config(config),
        config_hash=config.hash(),
    )
    print(describe_clinical(imported))

    _score(folder, store, workers=workers, config=config)

    from engine.report import build_report
    from engine.report import settings_from_config as report_settings
    from engine.report.document import build_document
    from engine.report.render import to_markdown

    report = build_report(store, report_settings(config), config_hash=config.hash())
    print(to_markdown(build_document(report)))

    if not dashboard:
        print(f"Open the dashboard with: vfrisk dashboard --db {store.path}")
        return 0
    from dashboard.launch import serve
    from dashboard.settings import settings_from_config as dashboard_settings

    settings = dashboard_settings(config)
    print(
        f"Starting the dashboard on http://{settings.host}:{settings.port} "
        "(SYNTHETIC demo cohort; Ctrl-C stops it)."
    )
    return serve(store.path, settings.host, settings.port, settings, config_file)


def _score(folder: Path, store: Store, *, workers: int, config: Config) -> None:
    """Score the demo's selected series with the configured (or shipped) model."""
    from engine.errors import VfriskError
    from engine.score import ScoreRequest, describe_score, score_archive

    model = Path(config["score"]["model"]) if config["score"]["model"] else None
    request = ScoreRequest(
        db=store.path, model_path=model, device=config["score"]["device"], workers=workers,
        batch_size=config["score"]["batch_size"], qa_png=config["score"]["qa_png"],
        progress=True,
    )  # fmt: skip
    try:
        print(describe_score(score_archive(request, config)))
    except VfriskError as exc:
        if exc.code != "model_missing":
            raise
        print(f"Scoring skipped: {exc.message}")
