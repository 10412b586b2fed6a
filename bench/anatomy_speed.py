"""Benchmark: the anatomy stage against reading and decoding the same full-size series.

One full-size synthetic patient per site (512 x 512, T10 to below the sacrum; soft-kernel
axial series) is generated (or ``--cohort`` names an existing ``vfrisk synth`` folder).
Everything runs in this one process, pinned to one CPU core with one torch thread, as a
``vfrisk score`` worker runs it. Per series, best of ``--repeat``:

* ``load``: ``engine.load.load_volume`` (vfrisk's reader: read + decode + HU);
* ``pydicom``: ``pydicom.dcmread(f).pixel_array`` for every file (the decode floor of
  ``bench/score_throughput.py``);
* ``segment``: ``engine.anatomy.segment`` (column, bodies, levels, muscles);
* ``inputs``: ``build_inputs`` (the model's patches);
* ``biomarkers``: ``engine.prepare.crop_to_anatomy`` + aorta + ``measure_biomarkers`` +
  ``qa_flags``, as ``engine.prepare.prepare_volume`` runs them;
* ``qa_png``: the QA picture.

It prints each time and the ratios ``segment / load`` (issue 4's goal: <= 0.5) and
``(segment + inputs + biomarkers) / load``, and the same against the pydicom floor.
``--clock cpu`` times with the process's CPU time instead of the wall clock: on a shared
machine the wall clock also counts the turns other processes take on the pinned core
(CPU time leaves out waits for the disk too, so it flatters ``load`` a little).

``--device`` says where ``segment``'s muscle network runs (``auto``: CUDA when present,
as ``segment`` defaults, resolved as ``vfrisk score --device`` resolves it; the rest of the
anatomy runs on the pinned CPU core either way).

Usage: python bench/anatomy_speed.py [--sites dev,ext_a,ext_b] [--seed 0] [--repeat 3]
       [--cohort DIR] [--core N] [--clock wall|cpu] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _best_of(n: int, fn: Callable[[], object], clock: Callable[[], float]) -> float:
    times = []
    for _ in range(n):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def _pin(core: int | None) -> str:
    """Pin this process to one core (and torch to one thread); returns a description."""
    import torch

    torch.set_num_threads(1)
    if core is None or not hasattr(os, "sched_setaffinity"):
        return "one torch thread (not pinned)"
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}, one torch thread"


def measure(
    cohort: Path, repeat: int, core: int | None, clock: str = "wall", device: str = "cpu"
) -> None:
    """Time each stage on every patient's soft-kernel series of ``cohort`` and print."""
    import pydicom

    sys.path.insert(0, str(Path(__file__).parent))
    from anatomy_accuracy import soft_series_files

    from engine.anatomy import PreprocessingSettings, build_inputs, qa_flags, qa_png
    from engine.anatomy.aorta import aorta_hu
    from engine.anatomy.biomarkers import measure_biomarkers
    from engine.anatomy.segment import segment
    from engine.config import load_config
    from engine.load import load_volume
    from engine.prepare import crop_to_anatomy

    print(
        f"anatomy speed: {_pin(core)}; muscle network on {device}; best of {repeat}, {clock} "
        "clock; SYNTHETIC phantoms (weights trained on them, not for clinical use)"
    )
    settings = PreprocessingSettings.from_config(load_config(None))
    tick = _CLOCKS[clock]
    png = Path(tempfile.mkdtemp()) / "qa.png"
    for patient, site, files in soft_series_files(cohort):
        volume = load_volume(files)
        seg = segment(volume, device)  # warm: the muscle network is loaded once per process

        def biomarkers(volume=volume, seg=seg) -> None:  # noqa: ANN001
            hu, cut = crop_to_anatomy(volume.hu, seg)
            measure_biomarkers(hu, cut, "bench", aorta_hu=aorta_hu(hu, cut))
            qa_flags(cut)

        hu, cut = crop_to_anatomy(volume.hu, seg)
        t = {
            "load": _best_of(repeat, lambda files=files: load_volume(files), tick),
            "pydicom": _best_of(
                repeat, lambda files=files: [pydicom.dcmread(f).pixel_array for f in files], tick
            ),
            "segment": _best_of(repeat, lambda volume=volume: segment(volume, device), tick),
            "inputs": _best_of(
                repeat, lambda v=volume, s=seg: build_inputs(v.hu, s, "bench", settings), tick
            ),
            "biomarkers": _best_of(repeat, biomarkers, tick),
            "qa_png": _best_of(repeat, lambda hu=hu, cut=cut: qa_png(hu, cut, png), tick),
        }
        anatomy = t["segment"] + t["inputs"] + t["biomarkers"]
        nz, ny, nx = volume.grid.shape_zyx
        print(
            f"{site} {patient}: {nx}x{ny}x{nz} ({volume.grid.spacing_zyx[0]:g} mm); "
            + ", ".join(f"{k} {v:.3f} s" for k, v in t.items())
        )
        print(
            f"  segment / load {t['segment'] / t['load']:.2f} (goal <= 0.5), "
            f"segment+inputs+biomarkers / load {anatomy / t['load']:.2f}; "
            f"vs pydicom: {t['segment'] / t['pydicom']:.2f}, {anatomy / t['pydicom']:.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="dev,ext_a,ext_b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cohort", type=Path, help="an existing `vfrisk synth` folder")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: none)")
    parser.add_argument("--clock", choices=sorted(_CLOCKS), default="wall")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args()
    from engine.errors import VfriskError
    from engine.score.model import resolve_device

    try:
        device = resolve_device(args.device)
    except VfriskError as err:
        parser.error(str(err))
    core = None if args.core < 0 else args.core
    if args.cohort is not None:
        if not (args.cohort / "manifest.json").is_file():
            parser.error(f"--cohort {args.cohort}: not a `vfrisk synth` folder (no manifest.json)")
        measure(args.cohort, args.repeat, core, args.clock, device)
        return
    from engine.synth.cohort import SynthRequest, synthesize

    sites = args.sites.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        cohort = Path(tmp) / "cohort"
        synthesize(
            SynthRequest(
                out=cohort, patients=len(sites), sites=args.sites, seed=args.seed,
                resolution="full", workers=1,
            )
        )  # fmt: skip
        measure(cohort, args.repeat, core, args.clock, device)


if __name__ == "__main__":
    main()
