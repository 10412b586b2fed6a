"""Benchmark: files/s of ``vfrisk index`` vs a plain single-process header-only pydicom loop.

On a generated low-resolution archive (a few thousand files), timed in this order after
one warm-up pass that reads every file once (so both sides find them in the page cache):

1. baseline: ``pydicom.dcmread(path, stop_before_pixels=True)`` over every file found by
   ``os.walk``, one process: the floor a header reader cannot beat in one process;
2. ``vfrisk index ARCHIVE --db NEW.duckdb --workers N`` as a subprocess (fresh database);
   reported both as wall time (interpreter start and imports included) and as the time
   the command itself reports (walk, parallel headers, grouping, database writes);
3. the same command again on the unchanged archive (incremental: reads nothing).

The goal is a ratio >= 1.5x (index files/s over baseline files/s) with 2 workers. Absolute
numbers depend on the machine; the ratios from one run are what to compare.

Usage: python bench/index_speed.py [--patients 30] [--workers 2] [--archive DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parents[1]


def _files(archive: Path) -> list[str]:
    return [os.path.join(d, f) for d, _, names in os.walk(archive) for f in names]


def _baseline(files: list[str]) -> float:
    start = time.perf_counter()
    for path in files:
        try:
            pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001, S112 - the baseline only times reading
            continue
    return time.perf_counter() - start


def _index(archive: Path, db: Path, workers: int) -> tuple[float, float, str]:
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "index",
        str(archive),
        "--db",
        str(db),
        "--workers",
        str(workers),
        "--no-progress",
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    reported = float(re.search(r" in ([\d.]+) s", out.stdout).group(1))  # type: ignore[union-attr]
    return wall, reported, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--archive", type=Path, help="index this archive instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vfrisk-bench-") as tmp:
        archive = args.archive
        if archive is None:
            from engine.synth.cohort import SynthRequest, synthesize

            out = Path(tmp) / "cohort"
            synthesize(
                SynthRequest(
                    out,
                    patients=args.patients,
                    sites="dev,ext_a,ext_b",
                    seed=args.seed,
                    resolution="low",
                    workers=2,
                )
            )
            archive = out / "archive"
        files = _files(archive)
        for path in files:  # warm-up: page cache
            Path(path).read_bytes()
        base = _baseline(files)
        wall, reported, summary = _index(archive, Path(tmp) / "bench.duckdb", args.workers)
        wall2, reported2, _ = _index(archive, Path(tmp) / "bench.duckdb", args.workers)
    n = len(files)
    print(f"archive: {n} files ({archive if args.archive else 'generated, low resolution'})")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"pydicom {pydicom.__version__}"
    )
    print(
        f"baseline dcmread(stop_before_pixels) loop, 1 process: {base:7.2f} s "
        f"{n / base:8.0f} files/s"
    )
    print(
        f"vfrisk index --workers {args.workers}, command's own time:  {reported:7.2f} s "
        f"{n / reported:8.0f} files/s  ratio {base / reported:4.2f}x"
    )
    print(
        f"vfrisk index --workers {args.workers}, subprocess wall:      {wall:7.2f} s "
        f"{n / wall:8.0f} files/s  ratio {base / wall:4.2f}x (incl. interpreter start)"
    )
    print(f"unchanged re-run: command's own time {reported2:.2f} s, subprocess wall {wall2:.2f} s")
    print(summary.rstrip())


if __name__ == "__main__":
    main()
