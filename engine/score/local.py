"""The local backend of ``vfrisk score``: worker processes prepare, this process runs the
model, a writer thread commits.

Worker processes (:func:`engine.prepare.prepare_many`, a bounded window of series in
flight) load and prepare series; this process gathers them into batches of
``batch_size``, runs the network on the device, and hands each batch's outcomes to the
:class:`~engine.score.pipeline.BatchWriter`. Only the main thread pulls jobs from the
database and only the writer thread writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.anatomy import PreprocessingSettings
from engine.config import Config
from engine.prepare import PreparedSeries, PrepareFailure, SeriesJob, prepare_many
from engine.score.model import score_prepared
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
    """Score ``entries``; yield each series' outcome once its batch is queued for writing."""
    import torch

    if ctx.model.device == "cpu":
        # The workers fill the other cores; the model gets what is left, at least one.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - max(0, request.workers - 1)))
    in_flight: dict[str, SeriesJob] = {}

    def jobs() -> Iterator[SeriesJob]:
        for job in iter_jobs(ctx.store, entries):
            in_flight[job.series_uid] = job
            yield job

    window = request.batch_size + request.workers * int(config["score"]["queue_per_worker"])
    source = prepare_many(
        jobs(), dict(config["loading"]), PreprocessingSettings.from_config(config),
        workers=request.workers, masks_dir=request.masks_dir, qa_dir=qa_dir, window=window,
    )  # fmt: skip
    writer = BatchWriter(ctx)
    ready: list[PreparedSeries] = []
    failed: list[Outcome] = []
    try:
        for item in source:
            if isinstance(item, PrepareFailure):
                failed.append(Outcome(in_flight[item.series_uid], failure=item))
            else:
                ready.append(item)
            if len(ready) + len(failed) >= request.batch_size:
                yield from _flush(ctx, writer, in_flight, ready, failed, request.batch_size)
        if ready or failed:
            yield from _flush(ctx, writer, in_flight, ready, failed, request.batch_size)
    finally:
        source.close()  # stops the worker pool before the writer drains
        writer.close()


def _flush(
    ctx: _RunContext,
    writer: BatchWriter,
    in_flight: dict[str, SeriesJob],
    ready: list[PreparedSeries],
    failed: list[Outcome],
    batch_size: int,
) -> Iterator[Outcome]:
    FAULTS.hit("before_batch", writer.batches + 1)
    outcomes = failed + model_outcomes(ctx, in_flight, ready, batch_size)
    writer.put(outcomes)
    for o in outcomes:
        in_flight.pop(o.job.series_uid, None)
    ready.clear()
    failed.clear()
    yield from outcomes
