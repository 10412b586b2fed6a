"""The Ray backend of ``vfrisk score`` (``--backend ray``): the same job on a Ray cluster.

Ray Data over the manifest of due series: a CPU ``map`` stage loads and prepares each
series (:func:`engine.prepare.prepare_job`, one CPU per task), an actor pool runs the
model on batches (one GPU per actor when the run's device is CUDA), and the driver
gathers the outcomes into the same :class:`~engine.score.pipeline.BatchWriter`, so the
tables, the batch transactions and the resumability are those of the local backend.

Multi-node use: every node must see the archive, the checkpoint and the database folder
(for the QA pictures) at the same paths (a shared file system); only the driver opens the
database. Start the cluster (``ray start --head`` on one machine, ``ray start --address
HEAD:6379`` on the others) and run ``vfrisk score --backend ray --address HEAD:6379`` on
the head. Without ``--address`` a local Ray is started on ``--workers`` CPUs.

Records travel between stages as pickled bytes: Ray Data's column types cannot hold the
nested dataclasses of a prepared series.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.anatomy import PreprocessingSettings
from engine.config import Config
from engine.errors import VfriskError
from engine.prepare import PreparedSeries, PrepareFailure, SeriesJob, prepare_job
from engine.score.model import anatomy_device
from engine.score.pipeline import FAULTS, BatchWriter, Outcome, ScoreRequest, _RunContext, iter_jobs
from engine.store.score_tables import ManifestEntry

__all__ = ["run_ray"]

#: Series per Ray dataset: bounds the driver's memory of file lists on huge archives.
CHUNK = 4096


class _Prepare:
    """The CPU stage: one job in, its pickled PreparedSeries or PrepareFailure out."""

    def __init__(
        self, loading: dict[str, Any], settings: PreprocessingSettings, opts: dict
    ) -> None:
        import torch

        torch.set_num_threads(1)  # one CPU per task, as Ray schedules it
        self.loading, self.settings, self.opts = loading, settings, opts

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        job: SeriesJob = pickle.loads(row["job"])
        result = prepare_job(job, self.loading, self.settings, **self.opts)
        return {"series_uid": job.series_uid, "prepared": pickle.dumps(result)}


class _Model:
    """The model stage: an actor holding the network, scoring a batch of prepared series."""

    def __init__(
        self, model_path: str, settings: PreprocessingSettings, device: str, batch: int
    ) -> None:
        from engine.score.model import load_model

        self.model = load_model(model_path, settings.version, device)
        if device.startswith("cuda"):  # CUDA's lazy start before the first batch arrives
            self.model.warm_up(settings)
        self.batch = batch

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from engine.score.model import score_prepared

        items = [pickle.loads(b) for b in batch["prepared"]]
        prepared = [x for x in items if isinstance(x, PreparedSeries)]
        scored = dict(
            zip(
                (p.series_uid for p in prepared),
                score_prepared(self.model, prepared, batch_size=self.batch),
                strict=True,
            )
        )
        out = []
        for x in items:
            if isinstance(x, PrepareFailure):
                out.append(pickle.dumps((None, None, x)))
            else:
                r = scored[x.series_uid]
                failed = isinstance(r, PrepareFailure)
                out.append(pickle.dumps((x, None if failed else r, r if failed else None)))
        return {"series_uid": list(batch["series_uid"]), "outcome": out}


def _init_ray(request: ScoreRequest) -> bool:
    """Connect to (or start) Ray; True when this call started it."""
    try:
        import ray
    except ImportError:
        raise VfriskError(
            "ray_unavailable",
            "--backend ray needs Ray: pip install -e '.[ray]' (or use --backend local)",
        ) from None
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if request.ray_address:
        ray.init(address=request.ray_address, **options)
    else:
        ray.init(num_cpus=request.workers, **options)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    return True


def run_ray(
    ctx: _RunContext,
    entries: Sequence[ManifestEntry],
    request: ScoreRequest,
    config: Config,
    qa_dir: Path | None,
) -> Iterator[Outcome]:
    """Score ``entries`` on Ray; yield each series' outcome once its batch is queued."""
    import ray
    import ray.data

    started = _init_ray(request)
    gpu = ctx.device.startswith("cuda")  # the actors load the network there
    settings = PreprocessingSettings.from_config(config)
    prepare_args = (
        dict(config["loading"]),
        settings,
        {
            "masks_dir": request.masks_dir,
            "qa_dir": qa_dir,
            "anatomy_device": anatomy_device(config),
        },  # fmt: skip
    )
    model_args = (str(ctx.model.path), settings, ctx.device, request.batch_size)
    actors = max(1, int(config["score"]["ray_model_actors"]))
    writer = BatchWriter(ctx)
    try:
        for start in range(0, len(entries), CHUNK):
            jobs = {j.series_uid: j for j in iter_jobs(ctx.store, entries[start : start + CHUNK])}
            ds = ray.data.from_items([{"job": pickle.dumps(j)} for j in jobs.values()])
            ds = ds.map(_Prepare, fn_constructor_args=prepare_args, num_cpus=1, concurrency=
                        max(1, request.workers))  # fmt: skip
            ds = ds.map_batches(
                _Model, fn_constructor_args=model_args, batch_size=request.batch_size,
                concurrency=actors, num_gpus=1 if gpu else 0, batch_format="numpy",
            )  # fmt: skip
            batch: list[Outcome] = []
            for row in ds.iter_rows():
                prepared, prediction, failure = pickle.loads(row["outcome"])
                job = jobs[str(row["series_uid"])]
                batch.append(
                    Outcome(job, prepared=prepared, prediction=prediction, failure=failure)
                )
                if len(batch) >= request.batch_size:
                    yield from _flush(writer, batch)
            yield from _flush(writer, batch)
    finally:
        writer.close()
        if started:
            ray.shutdown()


def _flush(writer: BatchWriter, batch: list[Outcome]) -> Iterator[Outcome]:
    if not batch:
        return
    FAULTS.hit("before_batch", writer.batches + 1)
    outcomes = list(batch)
    batch.clear()
    writer.put(outcomes)
    yield from outcomes
