"""Throughput of `vfrisk score` against the floor a reader imposes: decoding the DICOM.

Generates a SYNTHETIC archive (``--resolution full``: 512 x 512 CTs), indexes it, then,
with the same number of worker processes:

1. decode floor: pydicom reads and decodes every file of every selected series
   (``pixel_array``), one series per task -> scans/s; the files are read once before
   (page cache), and the floor is timed before and after each scoring run and the faster
   of the two kept, so a cold cache or a busy moment does not flatter the ratio;
2. ``vfrisk score`` (a subprocess, fresh database copy, the shipped weights
   ``models/weights/fracture_net.pt``: the default model with its intensity branch) on
   the first ``--patients`` series -> scans/s, the ratio score / decode (goal >= 0.5 on
   2 cores, >= 0.8 on a 16-core GPU machine), the peak RSS of its largest process and,
   from its log, the seconds from its launch to the model being loaded and to the first
   prepared series (the fixed cost);
3. both again on ``--memory-patients`` series: peak memory should stay flat in archive
   size, and the marginal rate of each, (m - n) / (t_m - t_n), is the steady-state
   throughput with the fixed costs (interpreter and worker start, model load, CUDA
   initialisation) taken out, which is what a large archive sees;
4. where the time goes: the mean seconds per stage of ``engine.prepare.prepare_job``
   (load, anatomy, inputs, biomarkers, qa) on a few series in this process.

Usage: ``python bench/score_throughput.py [--patients 20] [--memory-patients 80]
[--resolution full|low] [--workers N] [--device auto|cpu|cuda] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _decode(paths: list[str]) -> int:
    import pydicom

    n = 0
    for p in paths:
        n += pydicom.dcmread(p).pixel_array.size
    return n


def _read_all(series: list[list[str]]) -> None:
    """Read every file once: the timings that follow start from the page cache."""
    for paths in series:
        for p in paths:
            Path(p).read_bytes()


def decode_floor(series: list[list[str]], workers: int) -> float:
    """Seconds to read and decode every file, ``workers`` processes."""
    t0 = time.perf_counter()
    if workers <= 1:
        for paths in series:
            _decode(paths)
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            list(pool.imap_unordered(_decode, series, chunksize=1))
    return time.perf_counter() - t0


def _events(log: Path) -> dict[str, dict]:
    """The first record of each event in a command's JSON log."""
    out: dict[str, dict] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        out.setdefault(record["event"], record)
    return out


def _pipeline(record: dict) -> str:
    """The ``score.pipeline`` record in words: is it the workers, the model or the writer?"""
    stages = record["worker_seconds_per_series"]
    where = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    return (
        f"workers {sum(stages.values()):.2f} s per series ({where}), busy "
        f"{record['worker_busy']:.0%} of {record['workers']} x {record['seconds']:.1f} s; "
        f"main process: model {record['model_seconds']:.1f} s, waiting for the writer "
        f"{record['writer_wait_seconds']:.1f} s; writer commits {record['commit_seconds']:.1f} s"
    )


def score_run(db: Path, model: Path, workers: int, device: str, batch: int) -> tuple[float, float]:
    """Seconds of one `vfrisk score` subprocess and the peak RSS (MB) of its largest process.

    Also prints the fixed cost: seconds from the launch to the model loaded and the
    manifest read (``score.start``) and to the first prepared series in the main process
    (``score.first_prepared``); and where the scoring stage's time went
    (``score.pipeline``).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    log = db.with_suffix(".log")
    launched, t0 = time.time(), time.perf_counter()
    cmd = [
        sys.executable, "-m", "engine.cli", "--log-file", str(log), "score",
        "--db", str(db), "--model", str(model), "--workers", str(workers), "--device", device,
        "--batch-size", str(batch), "--no-progress",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print("   ", out.stdout.strip().splitlines()[0])
    events = _events(log)
    marks = ", ".join(
        f"{name} {dt.datetime.fromisoformat(events[key]['ts']).timestamp() - launched:.1f} s"
        for name, key in (("model loaded", "score.start"), ("first series", "score.first_prepared"))
        if key in events
    )
    print(f"    from launch: {marks}")
    # the main process (and spawned workers); ru_maxrss is KB on Linux, bytes on macOS
    peak_mb = max(peak, before) / (2**20 if sys.platform == "darwin" else 1024)
    if "score.pipeline" in events:
        print(f"    {_pipeline(events['score.pipeline'])}")
        # workers forked by the fork server are not our children: they report their own
        peak_mb = max(peak_mb, events["score.pipeline"].get("worker_peak_rss_mb", 0.0))
    return seconds, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--memory-patients", type=int, default=80)
    parser.add_argument("--resolution", choices=("full", "low"), default="full")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()

    import torch

    from engine.config import load_config
    from engine.index import IndexRequest, index_archive, rules_from_config
    from engine.prepare import jobs_for, prepare_job
    from engine.store import Store
    from engine.synth.cohort import SynthRequest, synthesize

    work = args.out or Path(tempfile.mkdtemp(prefix="vfrisk-score-bench-"))
    cohort = work / "cohort"
    n_max = max(args.patients, args.memory_patients)
    config = load_config()
    t0 = time.perf_counter()
    if not (cohort / "manifest.json").exists():
        request = SynthRequest(
            out=cohort, patients=n_max, sites="dev:0.6,ext_a:0.2,ext_b:0.2", seed=2027,
            resolution=args.resolution, workers=args.workers,
        )  # fmt: skip
        synthesize(request)
    template = work / "template.duckdb"
    if not template.exists():
        index_archive(Store(template), IndexRequest(archive=cohort / "archive",
                      workers=args.workers, progress=False), rules_from_config(config),
                      config_hash=config.hash())  # fmt: skip
    print(f"archive: {n_max} SYNTHETIC patients, {args.resolution} resolution, ready in "
          f"{time.perf_counter() - t0:.0f} s; workers {args.workers}")  # fmt: skip
    model = Path(__file__).resolve().parents[1] / "models" / "weights" / "fracture_net.pt"

    store = Store(template)
    uids = list(store.query("SELECT series_uid FROM series WHERE selected ORDER BY series_uid")
                ["series_uid"])  # fmt: skip
    with store.read() as con:
        jobs = jobs_for(con, uids)

    def db_with(n: int) -> Path:
        db = work / f"db{n}" / "vfrisk.duckdb"
        shutil.rmtree(db.parent, ignore_errors=True)
        db.parent.mkdir()
        shutil.copy(template, db)
        with Store(db).write() as con:  # only the first n series are due
            con.execute("UPDATE series SET selected = false WHERE series_uid NOT IN "
                        "(SELECT unnest(?::VARCHAR[]))", [uids[:n]])  # fmt: skip
        return db

    n = min(args.patients, len(uids))
    m = min(args.memory_patients, len(uids))
    _read_all([list(j.paths) for j in jobs[: max(n, m)]])

    def floor_around(k: int, run: Callable[[], tuple[float, float]]) -> tuple[float, ...]:
        """(decode floor seconds: the faster of before and after, score seconds, peak)."""
        series = [list(j.paths) for j in jobs[:k]]
        before = decode_floor(series, args.workers)
        score, peak = run()
        after = decode_floor(series, args.workers)
        print(f"decode floor (pydicom dcmread + pixel_array, {k} series): "
              f"{k / before:.2f} scans/s before, {k / after:.2f} after scoring")  # fmt: skip
        return min(before, after), score, peak

    floor_s, score_s, peak = floor_around(
        n, lambda: score_run(db_with(n), model, args.workers, args.device, args.batch_size)
    )
    print(f"vfrisk score ({n} series): {n / score_s:.2f} scans/s, peak RSS {peak:.0f} MB")
    print(f"ratio score / decode: {floor_s / score_s:.2f} (goal >= 0.5 on 2 cores, >= 0.8 on 16)")
    if m > n:
        floor_m, score_m, peak_m = floor_around(
            m, lambda: score_run(db_with(m), model, args.workers, args.device, args.batch_size)
        )
        print(
            f"vfrisk score ({m} series): {m / score_m:.2f} scans/s, peak RSS {peak_m:.0f} MB "
            f"({peak_m / peak:.2f}x the {n}-series run); ratio {floor_m / score_m:.2f}"
        )
        steady_floor = (m - n) / (floor_m - floor_s)
        steady_score = (m - n) / (score_m - score_s)
        print(
            f"steady state (series {n + 1}-{m}): decode {steady_floor:.2f} scans/s, "
            f"score {steady_score:.2f} scans/s, ratio {steady_score / steady_floor:.2f}"
        )

    from engine.anatomy import PreprocessingSettings

    settings = PreprocessingSettings.from_config(config)
    torch.set_num_threads(1)
    totals: dict[str, float] = {}
    sample = jobs[: min(5, len(jobs))]
    for job in sample:
        result = prepare_job(job, dict(config["loading"]), settings, qa_dir=work / "qa")
        for k, v in getattr(result, "seconds", {}).items():
            totals[k] = totals.get(k, 0.0) + v / len(sample)
    where = ", ".join(f"{k} {v:.2f} s" for k, v in totals.items())
    print(
        f"per series, one core ({len(sample)} series): {where}; total {sum(totals.values()):.2f} s"
    )


if __name__ == "__main__":
    main()
