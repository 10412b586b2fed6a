"""Benchmark: files/s of ``vfrisk index`` vs a plain single-process header-only pydicom loop.

On a generated low-resolution archive (a few thousand files), timed in this order after
one warm-up pass that reads every file once (so both sides find them in the page cache),
``--repeat`` times (medians are reported: the machine may be busy with other work):

1. baseline: ``pydicom.dcmread(path, stop_before_pixels=True)`` over every file found by
   ``os.walk``, one process: the floor a pydicom-based header reader cannot beat in one
   process;
2. ``vfrisk index ARCHIVE --db NEW.duckdb --workers N`` as a subprocess (fresh database);
   reported both as the time the command itself reports in its log (walk, parallel
   headers, grouping, database writes) and as subprocess wall time, which adds interpreter start
   and imports (a fixed ~0.5 s that a larger archive amortizes);
3. the same command again on the unchanged archive (incremental: reads nothing), which
   shows that fixed cost.

The goal is a ratio >= 1.5x (index files/s over baseline files/s) with 2 workers. Absolute
numbers depend on the machine; the ratios from one run are what to compare. Nothing here
asserts a timing (tests never do).

Usage: python bench/index_speed.py [--patients 30] [--workers 2] [--archive DIR] [--seed 0]
       [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    """(subprocess wall s, the command's own s from its log, printed summary)."""
    log = db.with_suffix(".log.jsonl")
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "--log-file",
        str(log),
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
    # the printed summary rounds to 0.1 s; the log's index.finished event has ms
    events = [json.loads(line) for line in log.read_text().splitlines()]
    own = [e["seconds"] for e in events if e.get("event") == "index.finished"][-1]
    return wall, float(own), out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians shown")
    parser.add_argument("--archive", type=Path, help="index this archive instead")
    args = parser.parse_args()
    base, own, wall, own2, wall2 = [], [], [], [], []
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
        for i in range(max(1, args.repeat)):
            db = Path(tmp) / f"bench{i}.duckdb"
            base.append(_baseline(files))
            w, r, summary = _index(archive, db, args.workers)
            wall.append(w)
            own.append(r)
            w, r, _ = _index(archive, db, args.workers)
            wall2.append(w)
            own2.append(r)
    n = len(files)
    med = statistics.median
    b, o, w = med(base), med(own), med(wall)
    print(f"archive: {n} files ({archive if args.archive else 'generated, low resolution'})")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"pydicom {pydicom.__version__}; medians of {len(base)} runs"
    )
    print(f"baseline dcmread(stop_before_pixels) loop, 1 process: {b:7.2f} s {n / b:8.0f} files/s")
    print(
        f"vfrisk index --workers {args.workers}, command's own time:  {o:7.2f} s "
        f"{n / o:8.0f} files/s  ratio {b / o:4.2f}x"
    )
    print(
        f"vfrisk index --workers {args.workers}, subprocess wall:      {w:7.2f} s "
        f"{n / w:8.0f} files/s  ratio {b / w:4.2f}x (incl. interpreter start)"
    )
    print(
        f"unchanged re-run: command's own time {med(own2):.2f} s, subprocess wall "
        f"{med(wall2):.2f} s (start-up and imports: {med(wall2) - med(own2):.2f} s)"
    )
    print(
        "all runs (s): baseline "
        + " ".join(f"{x:.2f}" for x in base)
        + " | own "
        + " ".join(f"{x:.2f}" for x in own)
        + " | wall "
        + " ".join(f"{x:.2f}" for x in wall)
    )
    print(summary.rstrip())


if __name__ == "__main__":
    main()
