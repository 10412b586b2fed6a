"""Series from files to everything the model and the database need, one or many at once.

``prepare_volume`` is the single path from a loaded :class:`~engine.load.Volume` to the
network's :class:`~engine.anatomy.inputs.ModelInputs`, the per-level
:class:`~engine.anatomy.biomarkers.Biomarkers`, the QA flags and (optionally) the QA
picture. ``vfrisk train``, ``vfrisk score`` and the dashboard's ad hoc scoring all call
it, so a series is prepared the same way wherever it is scored or learned from.

Anatomy comes from the built-in segmenter, or from TotalSegmentator masks when
``masks_dir`` is given (one folder per SeriesInstanceUID, see
:func:`engine.anatomy.masks.load_masks`).

Many series: :func:`jobs_for` reads, in one database transaction, each series' files and
the patient's height; :func:`prepare_many` loads and prepares them in worker processes
(which never open the database) and yields a :class:`PreparedSeries` or a
:class:`PrepareFailure` per job: a bad series fails alone, with the stage and reason code.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import threading
import time
import traceback
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.anatomy import (
    Biomarkers,
    ModelInputs,
    PreprocessingSettings,
    Segmentation,
    build_inputs,
    load_masks,
    measure_biomarkers,
    qa_flags,
    qa_png,
    segment,
)
from engine.anatomy.aorta import aorta_hu
from engine.errors import VfriskError
from engine.load import Volume, load_volume
from engine.load.volume import thick_slices

__all__ = [
    "PreparePool",
    "PrepareFailure",
    "PreparedSeries",
    "SeriesJob",
    "crop_to_anatomy",
    "jobs_for",
    "prepare_job",
    "prepare_many",
    "prepare_volume",
    "qa_png_path",
    "thick_view",
]


@dataclass(frozen=True)
class PreparedSeries:
    """What the anatomy stage makes of one series.

    Attributes
    ----------
    series_uid : str
    inputs : ModelInputs
        The network's patches (bone and bone + muscle) and the present-level mask.
    biomarkers : Biomarkers
    qa_flags : tuple of str
        Plausibility flags (:func:`engine.anatomy.qa_flags`) and the segmentation's own
        flags (``missing_T12`` ...).
    segmentation_source : str
        ``builtin`` or ``masks``.
    qa_png : Path or None
        The QA picture, when a folder was given.
    seconds : dict
        Wall time of each step (``anatomy``, ``inputs``, ``biomarkers``, ``qa``).
    peak_rss_mb : float
        Peak resident memory of the process that prepared it, when it was done (MB;
        :func:`prepare_job` sets it, 0 elsewhere): a worker's, which the parent's
        ``RUSAGE_CHILDREN`` does not see once workers are forked by a fork server.
    """

    series_uid: str
    inputs: ModelInputs
    biomarkers: Biomarkers
    qa_flags: tuple[str, ...]
    segmentation_source: str
    qa_png: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0


def qa_png_path(folder: Path | str, series_uid: str) -> Path:
    """Where the QA picture of ``series_uid`` lives under ``folder``."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in series_uid)
    return Path(folder) / f"{safe}.png"


#: In-plane margin kept around the labelled anatomy (the aorta lies up to ~45 mm in front
#: of the bodies; the QA picture shows some context).
CROP_MARGIN_MM = 60.0


def crop_to_anatomy(
    hu: np.ndarray, seg: Segmentation, margin_mm: float = CROP_MARGIN_MM
) -> tuple[np.ndarray, Segmentation]:
    """``hu`` and ``seg`` cut to the labelled region: in-plane ``margin_mm`` around it,
    one slice beyond it along z (so a body that touches the scan's first or last slice
    still does, and one that does not still does not: the ``truncated`` flag is kept).

    Biomarkers, the aorta reading, QA flags and the QA picture work in patient
    coordinates through the cropped grid, so they do not change; they only cost less (a
    full-size CT is mostly air, fat and organs). Model patches are not cut from it: they
    reach beyond the labelled region.
    """
    labels = seg.labels
    if not seg.boxes:
        return hu, seg
    # the labelled region: the union of the labels' boxes (found once per segmentation)
    first = [min(b[a].start for b in seg.boxes.values()) for a in range(3)]
    last = [max(b[a].stop for b in seg.boxes.values()) for a in range(3)]
    nz, ny, nx = labels.shape
    _, dy, dx = seg.grid.spacing_zyx
    my, mx = int(np.ceil(margin_mm / dy)), int(np.ceil(margin_mm / dx))
    box = (
        slice(max(0, first[0] - 1), min(nz, last[0] + 1)),
        slice(max(0, first[1] - my), min(ny, last[1] + my)),
        slice(max(0, first[2] - mx), min(nx, last[2] + mx)),
    )
    cropped = dataclasses.replace(seg, labels=labels[box], grid=seg.grid.crop(box))
    return hu[box], cropped


def _segmentation(
    volume: Volume, series_uid: str, masks_dir: Path | None, device: str | None
) -> Segmentation:
    if masks_dir is None:
        return segment(volume, device)
    return load_masks(masks_dir, series_uid, volume.grid)


def _readings(biomarkers: Biomarkers, levels: Sequence[str]) -> dict[str, np.ndarray]:
    """The biomarkers' per-level readings the network reads (``ModelInputs.READINGS``):
    trabecular HU, and the height loss as the largest of the wedge, biconcave and crush
    ratios (at least 0; NaN where none was measured)."""
    by_level = {lb.level: lb for lb in biomarkers.levels}
    trabecular, loss = np.full(len(levels), np.nan), np.full(len(levels), np.nan)
    for i, level in enumerate(levels):
        lb = by_level.get(level)
        if lb is None:
            continue
        trabecular[i] = lb.trabecular_hu
        ratios = [lb.wedge_loss, lb.biconcave_loss, lb.crush_loss]
        if any(np.isfinite(r) for r in ratios):
            loss[i] = max(0.0, np.nanmax(ratios))
    return {"trabecular_hu": trabecular.astype(np.float32), "height_loss": loss.astype(np.float32)}


def prepare_volume(
    volume: Volume,
    series_uid: str,
    settings: PreprocessingSettings,
    *,
    masks_dir: Path | str | None = None,
    height_cm: float | None = None,
    contrast_tag: bool | None = None,
    qa_dir: Path | str | None = None,
    anatomy_device: str | None = None,
) -> PreparedSeries:
    """Segment, build model inputs, measure biomarkers and check one loaded series.

    Parameters
    ----------
    volume : Volume
        The series in HU on the canonical grid.
    series_uid : str
    settings : PreprocessingSettings
        ``[preprocessing]``: patch geometry, intensity and version.
    masks_dir : path-like, optional
        TotalSegmentator output root; the series' folder is used instead of the built-in
        segmenter.
    height_cm : float, optional
        Patient height, for the L3 skeletal muscle index.
    contrast_tag : bool, optional
        Contrast according to the DICOM header.
    qa_dir : path-like, optional
        Write the QA picture to :func:`qa_png_path` under it.
    anatomy_device : {'cpu', 'cuda'}, optional
        Where the built-in segmenter's muscle network runs; default CUDA when visible
        (``[score] anatomy_device``).

    Raises
    ------
    VfriskError
        The anatomy stage's codes (``no_spine_found``, ``masks_misaligned`` ...), naming
        the series.
    """
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    masks = None if masks_dir is None else Path(masks_dir)
    seg = _segmentation(volume, series_uid, masks, anatomy_device)
    seconds["anatomy"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # the patches may reach beyond the labelled region: they read the whole volume
    inputs = build_inputs(volume.hu, seg, series_uid, settings)
    seconds["inputs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    hu, seg = crop_to_anatomy(volume.hu, seg)
    biomarkers = measure_biomarkers(
        hu, seg, series_uid, height_cm=height_cm, contrast_tag=contrast_tag,
        aorta_hu=aorta_hu(hu, seg),
        canal_hu=dict(zip(inputs.levels, inputs.canal_hu.tolist(), strict=True)),
    )  # fmt: skip
    # the network reads the bodies' trabecular HU and height loss as the biomarkers
    # measured them on the native slices
    inputs = dataclasses.replace(inputs, **_readings(biomarkers, inputs.levels))
    seconds["biomarkers"] = time.perf_counter() - t0
    flags = tuple(dict.fromkeys((*seg.flags, *qa_flags(seg))))
    png = None
    if qa_dir is not None:
        t0 = time.perf_counter()
        png = qa_png(hu, seg, qa_png_path(qa_dir, series_uid), title=series_uid, flags=flags)
        seconds["qa"] = time.perf_counter() - t0
    return PreparedSeries(
        series_uid=series_uid,
        inputs=inputs,
        biomarkers=biomarkers,
        qa_flags=flags,
        segmentation_source=seg.source,
        qa_png=png,
        seconds=seconds,
    )


@dataclass(frozen=True)
class SeriesJob:
    """One series to prepare: everything a worker needs without opening the database.

    Attributes
    ----------
    series_uid : str
    paths : tuple of str
        Its files (or zip members, or one NIfTI), ordered along the slice normal.
    patient_id : str or None
    height_cm : float or None
        From the clinical table when linked (for the skeletal muscle index).
    content_hash : str
        ``series.content_hash`` at the time the job was made.
    thick_mm : float or None
        Prepare the series as a thick-slice reconstruction of about this thickness
        (:func:`thick_view`) instead of as stored: ``vfrisk train``'s thick-slice views.
    """

    series_uid: str
    paths: tuple[str, ...]
    patient_id: str | None = None
    height_cm: float | None = None
    content_hash: str = ""
    thick_mm: float | None = None


def thick_view(volume: Volume, thick_mm: float, key: str) -> Volume:
    """``volume`` as a scanner reconstructing slices of about ``thick_mm`` would give it.

    Whole slabs of ``round(thick_mm / dz)`` slices (:func:`engine.load.volume.thick_slices`),
    starting at a phase drawn from ``key`` (CRC-32 of the series UID: reproducible, and
    the slab boundaries fall on different anatomy in different patients). A series whose
    slices are already that thick (fewer than 2 per slab) is returned as it is; one with
    fewer than two slabs of slices is refused (``too_few_slices``).
    """
    factor = int(round(thick_mm / volume.grid.spacing_zyx[0]))
    if factor < 2:
        return volume
    if volume.hu.shape[0] < 2 * factor:
        raise VfriskError(
            "too_few_slices",
            f"series {key}: {volume.hu.shape[0]} slices make no {thick_mm:g} mm view "
            f"(slabs of {factor} slices)",
        )
    return thick_slices(volume, factor, zlib.crc32(key.encode()) % factor)


@dataclass(frozen=True)
class PrepareFailure:
    """A series that could not be prepared.

    Attributes
    ----------
    series_uid : str
    stage : str
        ``load`` or ``anatomy``.
    reason_code : str
        A code of :data:`engine.errors.REASONS`; ``internal_error`` for a bug (the
        traceback is in ``error``).
    error : str
        The message, naming the series or file.
    """

    series_uid: str
    stage: str
    reason_code: str
    error: str


def jobs_for(con: Any, series_uids: Sequence[str]) -> list[SeriesJob]:
    """The :class:`SeriesJob` of each series, in the order given.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A read connection (``Store.read()``).
    series_uids : sequence of str
        Series in ``series``; an unknown one gets a job without paths (it fails at load
        with ``series_not_found``).
    """
    if not series_uids:
        return []
    con.execute("CREATE OR REPLACE TEMP TABLE _wanted (series_uid VARCHAR, k INTEGER)")
    con.executemany(
        "INSERT INTO _wanted VALUES (?, ?)", [(u, i) for i, u in enumerate(series_uids)]
    )
    rows = con.execute(
        """
        SELECT w.series_uid, s.patient_id, s.content_hash, c.height_cm,
               list(i.path ORDER BY i.position, i.instance_number, i.path)
               FILTER (WHERE i.path IS NOT NULL)
        FROM _wanted w
        LEFT JOIN series s USING (series_uid)
        LEFT JOIN instances i USING (series_uid)
        LEFT JOIN clinical c ON c.patient_id = s.patient_id
        GROUP BY w.series_uid, w.k, s.patient_id, s.content_hash, c.height_cm
        ORDER BY w.k
        """
    ).fetchall()
    con.execute("DROP TABLE _wanted")
    return [
        SeriesJob(
            series_uid=uid,
            paths=tuple(paths or ()),
            patient_id=patient,
            height_cm=None if height is None else float(height),
            content_hash=content or "",
        )
        for uid, patient, content, height, paths in rows
    ]


def prepare_job(
    job: SeriesJob,
    loading: dict[str, Any],
    settings: PreprocessingSettings,
    *,
    masks_dir: Path | str | None = None,
    qa_dir: Path | str | None = None,
    anatomy_device: str | None = None,
) -> PreparedSeries | PrepareFailure:
    """Load and prepare one series; any failure is returned, never raised.

    Parameters
    ----------
    job : SeriesJob
    loading : dict
        The ``[loading]`` table (the loader's gap and angle limits).
    settings : PreprocessingSettings
    masks_dir, qa_dir, anatomy_device
        As :func:`prepare_volume`.
    """
    stage = "load"
    try:
        if not job.paths:
            raise VfriskError(
                "series_not_found",
                f"series {job.series_uid} has no files in the database; run `vfrisk index`",
            )
        t0 = time.perf_counter()
        volume = load_volume(list(job.paths), **loading)
        if job.thick_mm:
            volume = thick_view(volume, job.thick_mm, job.series_uid)
        load_s = time.perf_counter() - t0
        stage = "anatomy"
        prepared = prepare_volume(
            volume, job.series_uid, settings, masks_dir=masks_dir, height_cm=job.height_cm,
            qa_dir=qa_dir, anatomy_device=anatomy_device,
        )  # fmt: skip
        prepared.seconds["load"] = load_s
        return dataclasses.replace(prepared, peak_rss_mb=_peak_rss_mb())
    except VfriskError as exc:
        return PrepareFailure(job.series_uid, stage, exc.code, exc.message)
    except Exception as exc:  # a bug must not stop the batch; the traceback is kept
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        text = f"series {job.series_uid}: {detail}\n{traceback.format_exc(limit=6)}"
        return PrepareFailure(job.series_uid, stage, "internal_error", text)


_WORKER: dict[str, Any] = {}

#: A series in flight when its worker process dies this many times fails (``worker_died``);
#: before that it is retried in a fresh pool (the death may have been another series').
MAX_WORKER_DEATHS = 2


def _peak_rss_mb() -> float:
    """This process's peak resident memory, MB (0 where the platform cannot say)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, KB here


def _exit_with_parent(parent: int) -> None:
    """Leave when the parent process is gone (killed, even by SIGKILL): an orphan worker
    would otherwise wait for work forever, holding the parent's pipes and memory.

    A worker forked by the fork server (:func:`_context`) has that server as its own
    parent, and the server lives as long as any worker (each holds its "alive" pipe): such
    a worker watches ``parent`` itself, which counts as gone once it is a zombie (killed,
    not yet reaped by whoever started it).
    """
    start = os.getppid()
    while os.getppid() == start and (start == parent or _running(parent)):
        time.sleep(0.5)
    os._exit(1)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the number is someone else's
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # Linux: the state follows the name
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:  # no /proc: trust kill
        return True


#: What a worker imports before its first series; the fork server imports it once and
#: each worker starts with it (:func:`_context`).
_PRELOAD = (
    "engine.prepare", "engine.anatomy.muscle_net", "PIL.Image", "PIL.ImageDraw",
    "PIL.PngImagePlugin",
)  # fmt: skip


def _context() -> multiprocessing.context.BaseContext:
    """How workers start: forked by a fork server that imported :data:`_PRELOAD` (POSIX),
    else spawned.

    A spawned worker starts a fresh interpreter and imports numpy, scipy, pydicom and
    torch itself: 16 of them at once took seconds on a 16-core machine (issue 7). The fork
    server imports them once, with no thread and no CUDA, and each worker is a fork of it.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(_PRELOAD))
        return ctx
    return multiprocessing.get_context("spawn")


def _init_worker(
    parent: int, loading: dict[str, Any], settings: PreprocessingSettings, opts: dict
) -> None:
    # ``parent`` comes from the parent itself: one killed while this worker was starting
    # is already gone here, and os.getppid() would name the process that adopted us
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    import torch

    torch.set_num_threads(1)  # one core per worker; the workers fill the machine
    _WORKER.update(loading=loading, settings=settings, opts=opts)


def _warm_up() -> None:
    """Import in a fresh worker what its first series would (the QA picture's pillow,
    the muscle network's module), while it has nothing else to do (already there in a
    worker of the fork server)."""
    import PIL.Image  # noqa: F401
    import PIL.ImageDraw  # noqa: F401
    import PIL.PngImagePlugin  # noqa: F401

    import engine.anatomy.muscle_net  # noqa: F401


def _start_workers(executor: ProcessPoolExecutor, n: int) -> None:
    """Submit a :func:`_warm_up` per worker: each submit starts one worker process."""
    try:
        for _ in range(n):
            executor.submit(_warm_up)
    except (RuntimeError, BrokenProcessPool):  # shut down, or a worker died: prepare() sees it
        pass


def _run_job(job: SeriesJob) -> PreparedSeries | PrepareFailure:
    return prepare_job(job, _WORKER["loading"], _WORKER["settings"], **_WORKER["opts"])


class PreparePool:
    """Worker processes preparing series, started as soon as the pool is made.

    Starting workers costs seconds (the fork server imports numpy, pydicom and torch once,
    :func:`_context`; spawned workers each import them): a caller with other slow work
    (loading the model) makes the pool first, so that both go on together, then hands it
    its jobs with :meth:`prepare`. Use it as a context manager, or call :meth:`close`.

    Parameters
    ----------
    loading, settings, masks_dir, qa_dir, anatomy_device
        As :func:`prepare_job`.
    workers : int
        Processes (at least 2; :func:`prepare_many` prepares in-process for 1).
    """

    def __init__(
        self,
        loading: dict[str, Any],
        settings: PreprocessingSettings,
        *,
        workers: int,
        masks_dir: Path | str | None = None,
        qa_dir: Path | str | None = None,
        anatomy_device: str | None = None,
    ) -> None:
        self.workers = workers
        opts = {"masks_dir": masks_dir, "qa_dir": qa_dir, "anatomy_device": anatomy_device}
        self._initargs = (os.getpid(), loading, settings, opts)
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            self.workers, mp_context=_context(),
            initializer=_init_worker, initargs=self._initargs,
        )  # fmt: skip
        # one task each starts every worker now; a start waits for the fork server's
        # imports (seconds), so the tasks go in from a thread and the caller goes on
        self._starting = threading.Thread(
            target=_start_workers, args=(executor, self.workers), daemon=True
        )
        self._starting.start()
        return executor

    def __enter__(self) -> PreparePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (series in flight are dropped)."""
        self._starting.join()  # no worker starts after the shutdown
        self._executor.shutdown(wait=False, cancel_futures=True)

    def prepare(
        self, jobs: Iterable[SeriesJob], window: int | None = None
    ) -> Iterator[PreparedSeries | PrepareFailure]:
        """Prepare ``jobs`` in the workers; the returned iterator yields each as it finishes.

        The first ``window`` jobs go to the workers at once, before the first result is
        asked for (the caller may have slow work of its own meanwhile). See
        :func:`prepare_many` for the order, the window and dead workers.
        """
        limit = max(1, window) if window is not None else None
        source = iter(jobs)
        retry: deque[SeriesJob] = deque()
        deaths: dict[str, int] = {}
        pending: dict[Future, SeriesJob] = {}

        def died(job: SeriesJob, out: list[PreparedSeries | PrepareFailure]) -> None:
            deaths[job.series_uid] = deaths.get(job.series_uid, 0) + 1
            if deaths[job.series_uid] < MAX_WORKER_DEATHS:
                retry.append(job)  # perhaps it was another series that killed the worker
                return
            out.append(
                PrepareFailure(
                    job.series_uid,
                    "load",
                    "worker_died",
                    f"series {job.series_uid}: the worker process preparing it died "
                    f"{MAX_WORKER_DEATHS} times (out of memory, or killed); see the system log",
                )  # fmt: skip
            )

        def replace_pool(out: list[PreparedSeries | PrepareFailure]) -> None:
            for job in pending.values():  # every series still in the dead pool shares the fate
                died(job, out)
            pending.clear()
            self.close()
            self._executor = self._start()

        def fill(out: list[PreparedSeries | PrepareFailure]) -> None:
            while limit is None or len(pending) < limit:
                job = retry.popleft() if retry else next(source, None)
                if job is None:
                    return
                try:
                    pending[self._executor.submit(_run_job, job)] = job
                except BrokenProcessPool:  # a worker died before it got this job
                    died(job, out)  # counted, so that a pool that always dies cannot loop
                    replace_pool(out)

        def results(
            first: list[PreparedSeries | PrepareFailure],
        ) -> Iterator[PreparedSeries | PrepareFailure]:
            yield from first  # series that failed while the jobs were first handed out
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                out: list[PreparedSeries | PrepareFailure] = []
                broken = False
                for future in finished:
                    job = pending.pop(future)
                    try:
                        out.append(future.result())
                    except BrokenProcessPool:
                        broken = True
                        died(job, out)
                    except Exception as exc:  # the job could not reach or leave a worker
                        uid = job.series_uid
                        out.append(
                            PrepareFailure(uid, "load", "internal_error", f"series {uid}: {exc!r}")
                        )
                if broken:
                    replace_pool(out)
                fill(out)  # before yielding, so the workers stay busy meanwhile
                yield from out

        first: list[PreparedSeries | PrepareFailure] = []
        fill(first)
        return results(first)


def prepare_many(
    jobs: Iterable[SeriesJob],
    loading: dict[str, Any],
    settings: PreprocessingSettings,
    *,
    workers: int = 1,
    masks_dir: Path | str | None = None,
    qa_dir: Path | str | None = None,
    window: int | None = None,
    anatomy_device: str | None = None,
) -> Iterator[PreparedSeries | PrepareFailure]:
    """Prepare many series, ``workers`` at a time, yielding each as it finishes.

    With ``workers == 1`` everything runs in this process, in order. Otherwise worker
    processes (a :class:`PreparePool`; forked by a fork server or spawned, never forked
    from this process: safe beside torch threads) take one
    series each; results come back in completion order, so one slow series does not hold
    up the others. A worker that dies (out of memory, killed) never hangs the run: the
    series it held are retried in a fresh pool, and fail with ``worker_died`` after
    :data:`MAX_WORKER_DEATHS`.

    Parameters
    ----------
    jobs : iterable of SeriesJob
        Pulled lazily, in the consumer's thread, only as far as ``window`` allows.
    loading, settings, masks_dir, qa_dir, anatomy_device
        As :func:`prepare_job`.
    workers : int
    window : int, optional
        At most this many series are being prepared or wait to be taken by the consumer
        (backpressure: memory stays flat however many jobs there are). Default: all
        jobs are submitted at once.
    """
    if workers <= 1:
        for job in jobs:
            yield prepare_job(
                job, loading, settings, masks_dir=masks_dir, qa_dir=qa_dir,
                anatomy_device=anatomy_device,
            )  # fmt: skip
        return
    with PreparePool(
        loading, settings, workers=workers, masks_dir=masks_dir, qa_dir=qa_dir,
        anatomy_device=anatomy_device,
    ) as pool:  # fmt: skip
        yield from pool.prepare(jobs, window)
