"""Benchmark: ``segment`` vs ``load_volume`` (read + decode) on the same full-size series.

One full-size synthetic patient per site (512 x 512, T10 to below the sacrum; soft-kernel
axial series) is generated; each is read with ``load_volume`` and segmented with
``engine.anatomy.segment``, best of 3, one process (the anatomy stage is single-threaded
numpy/scipy). Goal: segment / load <= 0.5.

Usage: python bench/anatomy_speed.py [--sites dev,ext_a,ext_b] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engine.anatomy.segment import segment
from engine.load import load_volume
from engine.synth.cohort import SynthRequest, synthesize


def _best_of(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from anatomy_accuracy import soft_series_files

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="dev,ext_a,ext_b")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sites = args.sites.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        cohort = Path(tmp) / "cohort"
        synthesize(
            SynthRequest(
                out=cohort, patients=len(sites), sites=args.sites, seed=args.seed,
                resolution="full", workers=2,
            )
        )  # fmt: skip
        for patient, site, files in soft_series_files(cohort):
            volume = load_volume(files)
            t_load = _best_of(3, lambda files=files: load_volume(files))
            t_seg = _best_of(3, lambda volume=volume: segment(volume))
            nz, ny, nx = volume.grid.shape_zyx
            print(
                f"{site} {patient}: {nx}x{ny}x{nz} ({volume.grid.spacing_zyx[0]:g} mm), "
                f"load_volume {t_load:.3f} s, segment {t_seg:.3f} s, "
                f"ratio {t_seg / t_load:.2f}"
            )


if __name__ == "__main__":
    main()
