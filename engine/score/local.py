"""The local backend of ``vfrisk score``: worker processes prepare, this process runs the
model, a writer thread commits.

Worker processes (:class:`engine.prepare.PreparePool`, a bounded window of series in
flight) load and prepare series; this process gathers them into batches of
``batch_size`` (smaller at the end, once fewer series than workers are left to prepare,
so that the network runs beside the last ones), runs the network on the device, and
hands each batch's outcomes to the :class:`~engine.score.pipeline.BatchWriter`. Only the
main thread pulls jobs from the database and only the writer thread writes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine import logs
from engine.anatomy import PreprocessingSettings
from engine.config import Config
from engine.prepare import PreparedSeries, PrepareFailure, SeriesJob, prepare_many
from engine.score.model import anatomy_device, score_prepared
from engine.score.pipeline import (
    FAULTS,
    BatchWriter,
    Outcome,
    ScoreRequest,
    _RunContext,
    iter_jobs,
)
from engine.store.score_tables import ManifestEntry

__all__ = ["run_local"]


def model_outcomes(
    ctx: _RunContext,
    jobs: dict[str, SeriesJob],
    prepared: Sequence[PreparedSeries],
    batch_size: int,
) -> list[Outcome]:
    """Run the model on ``prepared`` and pair each result with its job."""
    results = score_prepared(ctx.model, prepared, batch_size=batch_size)
    out = []
    for p, r in zip(prepared, results, strict=True):
        if isinstance(r, PrepareFailure):
            out.append(Outcome(jobs[p.series_uid], prepared=p, failure=r))
        else:
            out.append(Outcome(jobs[p.series_uid], prepared=p, prediction=r))
    return out


def run_local(
    ctx: _RunContext,
    entries: Sequence[ManifestEntry],
    request: ScoreRequest,
    config: Config,
    qa_dir: Path | None,
) -> Iterator[Outcome]:
    """Score ``entries``; yield each series' outcome once its batch is queued for writing.

    The workers (``ctx.pool``, started before the model was loaded) get their first
    series before the network moves to ``ctx.device``, so CUDA's initialisation overlaps
    their work.
    """
    import torch

    if ctx.device == "cpu":
        # The workers fill the other cores; the model gets what is left, at least one.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - max(0, request.workers - 1)))
    in_flight: dict[str, SeriesJob] = {}  # pulled from the database, not yet flushed
    pulled_all = False

    def jobs() -> Iterator[SeriesJob]:
        nonlocal pulled_all
        for job in iter_jobs(ctx.store, entries):
            in_flight[job.series_uid] = job
            yield job
        pulled_all = True

    if ctx.pool is not None:
        window = request.batch_size + ctx.pool.workers * int(config["score"]["queue_per_worker"])
        source = ctx.pool.prepare(jobs(), window)
    else:  # one worker: series are prepared here, in order
        source = prepare_many(
            jobs(), dict(config["loading"]), PreprocessingSettings.from_config(config),
            masks_dir=request.masks_dir, qa_dir=qa_dir, anatomy_device=anatomy_device(config),
        )  # fmt: skip
    ctx.model = ctx.model.to(ctx.device)
    if ctx.device.startswith("cuda"):
        ctx.model.warm_up(PreprocessingSettings.from_config(config))
    writer = BatchWriter(ctx)
    ready: list[PreparedSeries] = []
    failed: list[Outcome] = []
    timing = _Timing(time.perf_counter())
    try:
        for n, item in enumerate(source):
            if n == 0:  # the fixed cost a run pays before its first series is ready
                logs.event(
                    "score.first_prepared", seconds=round(time.perf_counter() - ctx.started, 3)
                )
            if isinstance(item, PrepareFailure):
                failed.append(Outcome(in_flight[item.series_uid], failure=item))
            else:
                ready.append(item)
                timing.prepared(item)
            preparing = len(in_flight) - len(ready) - len(failed)
            # a full batch; or, at the end, a worker left idle: the model runs beside the
            # last series instead of after them
            if len(ready) + len(failed) >= request.batch_size or (
                pulled_all and preparing < request.workers
            ):
                yield from _flush(ctx, writer, in_flight, ready, failed, request.batch_size, timing)
        if ready or failed:
            yield from _flush(ctx, writer, in_flight, ready, failed, request.batch_size, timing)
    finally:
        source.close()
        if ctx.pool is not None:
            ctx.pool.close()  # stops the workers before the writer drains
        writer.close()
        timing.log(request.workers, writer.commit_seconds)


class _Timing:
    """Where a run's time went, logged as ``score.pipeline`` (``bench/score_throughput.py``
    prints it): the workers' seconds per series and stage, and this process's seconds in
    the model and waiting for the writer (a full queue: the database is the bottleneck)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.series = 0
        self.stages: dict[str, float] = {}
        self.model = 0.0
        self.writer_wait = 0.0
        self.peak_rss_mb = 0.0

    def prepared(self, item: PreparedSeries) -> None:
        self.series += 1
        self.peak_rss_mb = max(self.peak_rss_mb, item.peak_rss_mb)
        for stage, seconds in item.seconds.items():
            self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def log(self, workers: int, commit_seconds: float) -> None:
        wall = time.perf_counter() - self.started
        per_series = {k: round(v / max(1, self.series), 4) for k, v in self.stages.items()}
        logs.event(
            "score.pipeline", series=self.series, workers=workers, seconds=round(wall, 3),
            worker_seconds_per_series=per_series,
            # share of the workers' time spent preparing: near 1 = they are the bottleneck
            # (above 1 in a short run: they began before this stage's clock started)
            worker_busy=round(sum(self.stages.values()) / max(wall * workers, 1e-9), 3),
            model_seconds=round(self.model, 3), writer_wait_seconds=round(self.writer_wait, 3),
            commit_seconds=round(commit_seconds, 3),
            worker_peak_rss_mb=round(self.peak_rss_mb, 1),
        )  # fmt: skip


def _flush(
    ctx: _RunContext,
    writer: BatchWriter,
    in_flight: dict[str, SeriesJob],
    ready: list[PreparedSeries],
    failed: list[Outcome],
    batch_size: int,
    timing: _Timing,
) -> Iterator[Outcome]:
    FAULTS.hit("before_batch", writer.batches + 1)
    t0 = time.perf_counter()
    outcomes = failed + model_outcomes(ctx, in_flight, ready, batch_size)
    t1 = time.perf_counter()
    writer.put(outcomes)
    timing.model += t1 - t0
    timing.writer_wait += time.perf_counter() - t1
    for o in outcomes:
        in_flight.pop(o.job.series_uid, None)
    ready.clear()
    failed.clear()
    yield from outcomes
