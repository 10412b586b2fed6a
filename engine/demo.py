"""``vfrisk demo``: the whole pipeline on an embedded default, for a first run.

Stages so far: generate the SYNTHETIC demo cohort (low resolution, the three shipped
sites) unless ``DIR/cohort/manifest.json`` already exists. Indexing, scoring, clinical
import and the dashboard join as their issues land.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from engine.config import Config

__all__ = ["run_demo"]


def run_demo(
    folder: Path,
    *,
    patients: int,
    workers: int,
    config: Config,
    describe: Callable,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Run the demo in ``folder``; return the exit status.

    Parameters
    ----------
    folder : Path
        Working folder; the cohort goes to ``folder / 'cohort'``.
    patients : int
        Cohort size when the cohort must be generated.
    workers : int
        Processes for generation.
    config : Config
        The merged configuration (``[synth]`` gives sites and seed).
    describe : callable
        Formats a ``SynthSummary`` for the terminal.
    progress : callable, optional
        Progress callback ``(done, total)``.
    """
    from engine.synth.cohort import SynthRequest, synthesize

    cohort = folder / "cohort"
    manifest = cohort / "manifest.json"
    if manifest.exists():
        made = json.loads(manifest.read_text())["summary"]
        print(
            f"Using the SYNTHETIC demo cohort in {cohort}: {made['patients']} patients, "
            f"{made['series']} series, {made['files']} files (delete the folder to regenerate)."
        )
        return 0
    request = SynthRequest(
        out=cohort,
        patients=patients,
        sites=config["synth"]["sites"],
        seed=config["synth"]["seed"],
        resolution="low",
        workers=workers,
    )
    summary = synthesize(request, progress=progress)
    print(describe(summary, request))
    return 0
