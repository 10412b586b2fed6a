"""``vfrisk score``: what to score, the run's provenance, and the batch writer.

The flow of one run (both backends):

1. start the worker processes (local backend), so that they import their libraries
   while this process loads the checkpoint, instead of after (issue 7: the start of 16
   workers costs seconds);
2. load the checkpoint (on the CPU: the local backend moves the network to the device
   once the workers have their first series, so CUDA's initialisation overlaps their
   work too) and register it in ``models``;
3. read the manifest: the selected series without a current prediction (or failure) of
   this model (:func:`engine.store.score_tables.manifest`);
4. the backend prepares the series in worker processes and runs the model on batches;
5. each batch's outcomes go to :class:`BatchWriter`, a thread that commits one batch per
   write transaction (predictions, biomarkers, QA facts and failures together), so the
   model never waits for the database and a killed run loses at most the batches not
   yet committed, which the next run scores again.

Fault injection (tests only): ``VFRISK_FAULT="before_batch:2"`` (or ``in_transaction:N``,
``after_commit:N``; several joined by ``|``) makes the process SIGKILL itself at that
point of the N-th batch, so tests can check that a rerun completes the tables exactly.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import logs
from engine.anatomy import PreprocessingSettings
from engine.config import Config
from engine.errors import VfriskError
from engine.prepare import PreparedSeries, PrepareFailure, PreparePool, SeriesJob, jobs_for
from engine.score.model import LoadedModel, anatomy_device, load_model, resolve_device
from engine.store import Store
from engine.store.score_tables import (
    FailureRow,
    ManifestEntry,
    PredictionRow,
    QaRow,
    manifest,
    register_model,
    write_batch,
)

__all__ = [
    "BACKENDS",
    "BatchWriter",
    "Outcome",
    "ScoreRequest",
    "ScoreSummary",
    "describe_score",
    "qa_dir_for",
    "score_archive",
]

BACKENDS = ("local", "ray")
FAULT_ENV = "VFRISK_FAULT"
FAULT_POINTS = ("before_batch", "in_transaction", "after_commit")


def qa_dir_for(db: Path | str) -> Path:
    """The folder of a database's QA pictures: ``DB.qa/`` beside ``DB``.

    The picture of a series is ``engine.prepare.qa_png_path(qa_dir_for(db), series_uid)``;
    ``series_qa.qa_png`` holds the same path.
    """
    db = Path(db)
    return db.with_name(db.name + ".qa")


@dataclass(frozen=True)
class ScoreRequest:
    """What ``vfrisk score`` was asked to do.

    Attributes
    ----------
    db : Path
    model_path : Path or None
        Checkpoint; None = ``[score] model`` or the shipped one.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    workers : int
        Processes preparing series (1 = in this process).
    batch_size : int
        Series per model batch and per write transaction.
    backend : str
        ``local`` or ``ray``.
    rescore, retry_failed, dry_run : bool
    masks_dir : Path or None
        TotalSegmentator masks instead of the built-in segmenter.
    qa_png : bool
        Draw QA pictures into :func:`qa_dir_for`.
    progress : bool
        Show a progress bar.
    ray_address : str or None
        Ray cluster (``None``: a local Ray).
    """

    db: Path
    model_path: Path | None = None
    device: str = "auto"
    workers: int = 1
    batch_size: int = 32
    backend: str = "local"
    rescore: bool = False
    retry_failed: bool = False
    dry_run: bool = False
    masks_dir: Path | None = None
    qa_png: bool = True
    progress: bool = True
    ray_address: str | None = None


@dataclass(frozen=True)
class ScoreSummary:
    """The outcome of a run, for the terminal and the ``runs`` table.

    Attributes
    ----------
    run_id, model_id, device, backend : str
    selected : int
        Selected series in the database.
    due : int
        Series this run set out to score.
    scored, failed : int
        Of ``due``.
    skipped : int
        Selected series not due (already scored, or failed earlier without
        ``--retry-failed``).
    seconds : float
        Wall time of the scoring stage.
    failures_by_reason : dict
        ``reason_code -> count`` of this run's failures.
    dry_run : list of ManifestEntry
        The manifest, when ``dry_run``.
    """

    run_id: str
    model_id: str
    device: str
    backend: str
    selected: int
    due: int
    scored: int
    failed: int
    skipped: int
    seconds: float
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    dry_run: list[ManifestEntry] | None = None

    @property
    def scans_per_s(self) -> float:
        """Series finished (scored or failed) per second of the scoring stage."""
        return (self.scored + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def counts(self) -> dict[str, Any]:
        """The JSON ``runs.counts`` of the run."""
        return {
            "selected": self.selected, "due": self.due, "scored": self.scored,
            "failed": self.failed, "skipped": self.skipped, "seconds": round(self.seconds, 3),
            "scans_per_s": round(self.scans_per_s, 4), "backend": self.backend,
            "failures_by_reason": self.failures_by_reason,
        }  # fmt: skip


def describe_score(s: ScoreSummary, max_listed: int = 50) -> str:
    """The terminal summary of a run (or of a dry run's manifest)."""
    head = f"model {s.model_id} on {s.device} ({s.backend})"
    if s.dry_run is not None:
        lines = [
            f"Dry run, {head}: {s.due} of {s.selected} selected series would be scored, "
            f"{s.skipped} skipped (already scored, or failed: --retry-failed retries them)."
        ]
        lines += [
            f"  {e.series_uid}  patient {e.patient_id}  {e.why}" for e in s.dry_run[:max_listed]
        ]
        if s.due > max_listed:
            lines.append(f"  ... and {s.due - max_listed} more")
        return "\n".join(lines)
    lines = [
        f"Scored with {head}, run {s.run_id}: {s.scored} scored, {s.skipped} skipped, "
        f"{s.failed} failed of {s.selected} selected series; {s.seconds:.1f} s, "
        f"{s.scans_per_s:.2f} scans/s.",
    ]
    if s.failures_by_reason:
        reasons = ", ".join(f"{k} {v}" for k, v in s.failures_by_reason.items())
        lines.append(f"  failures by reason: {reasons} (table failures; --retry-failed retries)")
    lines.append("  Model weights trained on SYNTHETIC data are not for clinical use.")
    return "\n".join(lines)


@dataclass(frozen=True)
class Outcome:
    """What became of one series: prepared and predicted, or failed at some stage.

    ``prepared`` is kept when the model stage failed, so its biomarkers are still stored.
    """

    job: SeriesJob
    prepared: PreparedSeries | None = None
    prediction: Any = None  # models.inference.Prediction (torch-free import here)
    failure: PrepareFailure | None = None


class _Faults:
    """The ``VFRISK_FAULT`` points of this process (tests only)."""

    def __init__(self, spec: str) -> None:
        self.at: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in spec.split("|"))):
            point, _, nth = part.partition(":")
            if point not in FAULT_POINTS or not nth.isdigit():
                raise VfriskError(
                    "bad_argument",
                    f"{FAULT_ENV}={spec!r}: use POINT:N joined by '|', POINT one of {FAULT_POINTS}",
                )
            self.at[point] = int(nth)

    def hit(self, point: str, batch_no: int) -> None:
        if self.at.get(point) == batch_no:
            os.kill(os.getpid(), signal.SIGKILL)


FAULTS = _Faults(os.environ.get(FAULT_ENV, ""))


@dataclass
class _RunContext:
    store: Store
    model: LoadedModel
    preprocessing_version: str
    run_id: str
    device: str  # where the network runs (``model`` is on the CPU until the backend moves it)
    started: float  # time.perf_counter() when the run began
    pool: PreparePool | None  # the local backend's workers, when more than one


def commit_batch(ctx: _RunContext, outcomes: Sequence[Outcome], batch_no: int) -> None:
    """Write one batch of outcomes in one transaction (see module doc for the faults)."""
    predictions, failures, biomarkers, qa = [], [], [], []
    for o in outcomes:
        if o.prepared is not None:
            biomarkers.append(o.prepared.biomarkers)
            png = None if o.prepared.qa_png is None else str(Path(o.prepared.qa_png).absolute())
            qa.append(
                QaRow(o.job.series_uid, o.prepared.segmentation_source, o.prepared.qa_flags, png)
            )
        if o.failure is not None:
            f = o.failure
            failures.append(
                FailureRow(f.series_uid, f.stage, f.reason_code, f.error, o.job.content_hash)
            )
        else:
            p = o.prediction
            predictions.append(
                PredictionRow(
                    p.series_uid, o.job.patient_id, p.p_fracture, p.risk, o.job.content_hash
                )
            )
    with ctx.store.write() as con:
        write_batch(
            con, model_id=ctx.model.model_id, preprocessing_version=ctx.preprocessing_version,
            run_id=ctx.run_id, predictions=predictions, biomarkers=biomarkers, qa=qa,
            failures=failures,
        )  # fmt: skip
        FAULTS.hit("in_transaction", batch_no)
    FAULTS.hit("after_commit", batch_no)
    for f in failures:
        logs.event(
            "score.series_failed", level="warning", series_uid=f.series_uid, stage=f.stage,
            reason_code=f.reason_code,
        )  # fmt: skip


class BatchWriter:
    """A thread committing batches in order, so the model never waits for the database.

    At most ``depth`` batches wait; :meth:`put` blocks beyond (backpressure) and re-raises
    an error of the thread (e.g. ``db_busy``); :meth:`close` drains and joins.
    """

    def __init__(self, ctx: _RunContext, depth: int = 2) -> None:
        self._ctx = ctx
        self._queue: queue.Queue[tuple[int, list[Outcome]] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.batches = 0
        self.commit_seconds = 0.0  # in the thread's transactions
        self._thread = threading.Thread(target=self._run, name="vfrisk-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                t0 = time.perf_counter()
                try:
                    commit_batch(self._ctx, item[1], item[0])
                except BaseException as exc:  # handed to the main thread by put/close
                    self._error = exc
                self.commit_seconds += time.perf_counter() - t0

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, outcomes: list[Outcome]) -> None:
        """Queue one batch (numbered from 1 in order of arrival)."""
        self._raise()
        self.batches += 1
        self._queue.put((self.batches, outcomes))

    def close(self) -> None:
        """Commit what is queued, stop the thread, re-raise its error."""
        self._queue.put(None)
        self._thread.join()
        self._raise()


def iter_jobs(
    store: Store, entries: Sequence[ManifestEntry], chunk: int = 256
) -> Iterator[SeriesJob]:
    """The :class:`SeriesJob` of each entry, read ``chunk`` series per read transaction.

    Lazy, so a run over a million series never holds every file path at once.
    """
    for start in range(0, len(entries), chunk):
        uids = [e.series_uid for e in entries[start : start + chunk]]
        with store.read() as con:
            jobs = jobs_for(con, uids)
        yield from jobs


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Any]:
    from tqdm import tqdm

    with tqdm(total=total, desc="score", unit="scan", disable=not enabled, smoothing=0.1) as bar:
        yield bar


def score_archive(
    request: ScoreRequest, config: Config, *, run_id: str | None = None
) -> ScoreSummary:
    """Score the selected series of ``request.db`` that are due; see the module doc.

    Parameters
    ----------
    request : ScoreRequest
    config : Config
        ``[loading]``, ``[preprocessing]``, ``[score]`` and ``[storage]``.
    run_id : str, optional
        Default the log's run id (``engine.logs``) or a fresh one.

    Returns
    -------
    ScoreSummary
    """
    import uuid

    if request.backend not in BACKENDS:
        raise VfriskError(
            "bad_argument", f"--backend {request.backend!r}: choose one of {BACKENDS}"
        )
    if request.masks_dir is not None and not Path(request.masks_dir).is_dir():
        raise VfriskError(
            "masks_missing",
            f"--masks {request.masks_dir} is not a folder; pass the TotalSegmentator output root "
            "(one folder per SeriesInstanceUID)",
        )
    started = time.perf_counter()
    run_id = run_id or logs.run_id() or uuid.uuid4().hex[:12]
    store = Store(request.db, lock_timeout_s=config["storage"]["lock_timeout_s"])
    if not store.path.exists():
        raise VfriskError(
            "db_not_found",
            f"database {request.db} does not exist; index the archive first with "
            f"`vfrisk index ARCHIVE --db {request.db}`",
        )
    qa_dir = qa_dir_for(store.path) if request.qa_png else None
    with contextlib.ExitStack() as stack:
        pool = None
        if request.backend == "local" and request.workers > 1 and not request.dry_run:
            pool = stack.enter_context(
                PreparePool(
                    dict(config["loading"]),
                    PreprocessingSettings.from_config(config),
                    workers=request.workers,
                    masks_dir=request.masks_dir,
                    qa_dir=qa_dir,
                    anatomy_device=anatomy_device(config),
                )  # fmt: skip
            )
        return _score(request, config, store, run_id, qa_dir, pool, started)


def _score(
    request: ScoreRequest,
    config: Config,
    store: Store,
    run_id: str,
    qa_dir: Path | None,
    pool: PreparePool | None,
    started: float,
) -> ScoreSummary:
    """:func:`score_archive` once the workers are starting."""
    version = str(config["preprocessing"]["version"])
    model_path = request.model_path or (
        Path(config["score"]["model"]) if config["score"]["model"] else None
    )
    device = resolve_device(request.device)
    # on the CPU for now: the backend moves it once the workers have their first series,
    # so CUDA's initialisation overlaps their work
    model = load_model(model_path, version, "cpu")
    with store.read() as con:
        entries, counts = manifest(
            con, model.model_id, rescore=request.rescore, retry_failed=request.retry_failed
        )
    skipped = counts["selected"] - counts["due"]
    base = dict(
        run_id=run_id, model_id=model.model_id, device=device, backend=request.backend,
        selected=counts["selected"], due=counts["due"], skipped=skipped,
    )  # fmt: skip
    if request.dry_run:
        return ScoreSummary(**base, scored=0, failed=0, seconds=0.0, dry_run=entries)
    with store.write() as con:
        register_model(
            con, model_id=model.model_id, name=(model.card or {}).get("name", model.path.stem),
            path=str(model.path), sha256=model.sha256, preprocessing_version=version,
            card=model.card,
        )  # fmt: skip
    store.start_run(run_id, "score", config.hash(), model_id=model.model_id, device=device)
    logs.event(
        "score.start", model_id=model.model_id, device=device, due=len(entries),
        seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip
    ctx = _RunContext(
        store=store, model=model, preprocessing_version=version, run_id=run_id,
        device=device, started=started, pool=pool,
    )  # fmt: skip
    tally: dict[str, int] = {}
    scored = failed = 0
    t0 = time.perf_counter()
    status = "failed"
    try:
        with _progress(len(entries), request.progress) as bar:
            if request.backend == "ray":
                from engine.score.ray_backend import run_ray as run
            else:
                from engine.score.local import run_local as run
            for outcome in run(ctx, entries, request, config, qa_dir):
                if outcome.failure is None:
                    scored += 1
                else:
                    failed += 1
                    code = outcome.failure.reason_code
                    tally[code] = tally.get(code, 0) + 1
                bar.update(1)
                bar.set_postfix(failed=failed, refresh=False)
        status = "ok"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        summary = ScoreSummary(
            **base, scored=scored, failed=failed, seconds=time.perf_counter() - t0,
            failures_by_reason=dict(sorted(tally.items())),
        )  # fmt: skip
        with contextlib.suppress(VfriskError):
            store.finish_run(run_id, status, summary.counts())
        logs.event("score.finish", status=status, **summary.counts())
    return summary
