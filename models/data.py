"""Training data: labelled patients, their cached model inputs, and stratified batches.

- :func:`build_cache`: every linked patient (``clinical_links.status = 'linked'``) of the
  requested sites, its index scan prepared once by :func:`engine.prepare.prepare_many`
  and cached as ``.npz`` (:func:`engine.anatomy.save_inputs`), so epochs never decode
  DICOM again; the biomarkers measured on the way are written to the ``biomarkers``
  table. A cache file is named by series, preprocessing version, settings digest and the
  series' ``content_hash``: other preprocessing or a changed series (a slice added or
  replaced, ``vfrisk index``) misses the cache and is prepared again. A series that fails
  is reported (series, stage, reason) and skipped.
- :func:`load_examples`: the cached inputs in memory, as a given model reads them (its
  intensity features measured once, only its array kept).
- :func:`stratified_batches` and :func:`make_batch`: the batches of an epoch. Kong et al.
  sample positive/negative pairs; here every batch is a stratified slice of the training
  set (strata: prevalent fracture yes/no x incident fracture within the horizon yes/no),
  so each batch holds prevalent-fracture and incident-fracture positives in the cohort's
  own proportions, and the predicted probabilities stay calibrated (no oversampling).

Labels come from the clinical table only: ``prevalent_vf`` for detection,
``followup_years`` and ``event_type`` (0 censored, 1 fracture, 2 death) for survival.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from engine.anatomy.inputs import (
    ModelInputs,
    PreprocessingSettings,
    cache_path,
    load_inputs,
    save_inputs,
)
from engine.prepare import PreparedSeries, PrepareFailure, SeriesJob, jobs_for, prepare_many
from models.config import ModelConfig
from models.losses import survival_labels
from models.sampling import ModelBatch, intensity_features, sample_triplets, to_batch

if TYPE_CHECKING:
    import torch

    from engine.store import Store

__all__ = [
    "CacheResult",
    "Example",
    "LoadedInputs",
    "TrainBatch",
    "build_cache",
    "build_thick_cache",
    "cache_file",
    "fracture_strata",
    "load_examples",
    "make_batch",
    "stratified_batches",
]

#: Prepared series whose biomarkers are written in one transaction.
_WRITE_BATCH = 32


@dataclass(frozen=True)
class Example:
    """One patient of a training or evaluation set.

    Attributes
    ----------
    patient_id : str
    series_uid : str
        The patient's index scan (``clinical_links``).
    site : str
    cache_path : Path
        Its cached :class:`~engine.anatomy.inputs.ModelInputs` (``.npz``).
    prevalent_vf : int or None
        1 prevalent vertebral fracture on the scan, 0 none, None unknown.
    followup_years : float
        Years from the scan to fracture, death or last contact.
    event : int
        0 censored, 1 vertebral fracture, 2 death before fracture (``event_type``).
    content_hash : str
        ``series.content_hash`` the cache was made from.
    """

    patient_id: str
    series_uid: str
    site: str
    cache_path: Path
    prevalent_vf: int | None
    followup_years: float
    event: int
    content_hash: str = ""


@dataclass(frozen=True)
class CacheResult:
    """What :func:`build_cache` found and made.

    Attributes
    ----------
    examples : tuple of Example
        Patients with usable cached inputs, ordered by patient_id.
    failures : tuple of PrepareFailure
        Series that could not be prepared (stage, reason code, message); skipped.
    prepared : int
        Series prepared in this call.
    reused : int
        Series whose cache file was already there.
    seconds : float
        Wall time of the call.
    """

    examples: tuple[Example, ...]
    failures: tuple[PrepareFailure, ...]
    prepared: int
    reused: int
    seconds: float

    def sites(self) -> list[str]:
        """Sites present among the examples, sorted."""
        return sorted({e.site for e in self.examples})


def cache_file(
    cache_dir: Path | str,
    series_uid: str,
    settings: PreprocessingSettings,
    content_hash: str,
    thick_mm: float | None = None,
) -> Path:
    """Cache file of a series: ``<uid>.<version>.<settings digest>.<content hash>.npz``.

    A thick-slice view (``thick_mm``, :func:`engine.prepare.thick_view`) has
    ``thick<mm>`` before the content hash.
    """
    content = re.sub(r"[^A-Za-z0-9]", "", content_hash)[:16] or "nohash"
    view = "" if not thick_mm else f"thick{thick_mm:g}".replace(".", "p") + "."
    key = f"{settings.version}.{settings.digest()}.{view}{content}"
    return cache_path(cache_dir, series_uid, key)


def _store_inputs(prepared: PreparedSeries, target: Path) -> None:
    """Save with the engine's writer, then move to the content-keyed name (atomic).

    The file of an older content of the same series (same settings) is removed; files of
    other settings stay (another configuration may still use them).
    """
    staging = target.parent / ".staging"
    written = save_inputs(prepared.inputs, staging)
    stem = target.name.removesuffix(".npz")
    prefix = stem[: stem.rfind(".") + 1]  # everything up to the content hash
    older = re.compile(re.escape(prefix) + r"[A-Za-z0-9]{1,16}\.npz")
    for stale in target.parent.glob(f"{glob_escape(prefix)}*.npz"):
        if stale != target and older.fullmatch(stale.name):
            stale.unlink(missing_ok=True)
    written.replace(target)


def _prepare_into(
    jobs: Sequence[SeriesJob],
    config: Any,
    settings: PreprocessingSettings,
    workers: int,
    progress: Callable[[int, int], None] | None,
    target: dict[str, Path],
) -> Iterator[PreparedSeries | PrepareFailure]:
    """Prepare ``jobs`` in workers, cache each prepared series at ``target[uid]``, and
    yield every result (then report ``progress(done, total)``)."""
    if progress is not None and jobs:
        progress(0, len(jobs))
    results = prepare_many(jobs, dict(config["loading"]), settings, workers=workers)
    for done, result in enumerate(results, start=1):
        if isinstance(result, PreparedSeries):
            _store_inputs(result, target[result.series_uid])
        yield result
        if progress is not None:
            progress(done, len(jobs))


def build_cache(
    store: Store,
    config: Any,
    cache_dir: Path | str,
    *,
    sites: Sequence[str] | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    settings: PreprocessingSettings | None = None,
    run_id: str | None = None,
) -> CacheResult:
    """Make sure every linked patient of ``sites`` has cached model inputs.

    Parameters
    ----------
    store : Store
        The database (read for the labels and files; written for biomarkers, one short
        transaction per batch of prepared series).
    config : engine.config.Config or mapping
        Its ``[loading]`` table, and ``[preprocessing]`` unless ``settings`` is given.
    cache_dir : path-like
        Folder of the ``.npz`` files (created).
    sites : sequence of str, optional
        Clinical sites to include; None = all.
    workers : int
        Worker processes preparing series.
    progress : callable, optional
        ``progress(done, total)`` over the series that need preparing.
    settings : PreprocessingSettings, optional
        Default: from ``config``.
    run_id : str, optional
        Stored with the biomarkers.

    Returns
    -------
    CacheResult
    """
    from engine.store.biomarker_tables import insert_biomarkers
    from engine.store.training_tables import labelled_scans

    t0 = time.perf_counter()
    settings = settings or PreprocessingSettings.from_config(config)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with store.read() as con:
        rows = labelled_scans(con, sites)
        examples = {
            uid: Example(
                patient_id=pid,
                series_uid=uid,
                site=site,
                cache_path=cache_file(cache_dir, uid, settings, content),
                prevalent_vf=prevalent,
                followup_years=years,
                event=event,
                content_hash=content,
            )  # fmt: skip
            for pid, uid, site, prevalent, years, event, content in rows
        }
        missing = [uid for uid, ex in examples.items() if not ex.cache_path.is_file()]
        jobs = jobs_for(con, missing)
    reused = len(examples) - len(missing)
    failures: list[PrepareFailure] = []
    pending: list[PreparedSeries] = []

    def flush() -> None:
        if pending:
            with store.write() as con:
                insert_biomarkers(
                    con, [p.biomarkers for p in pending],
                    preprocessing_version=settings.version, run_id=run_id,
                )  # fmt: skip
            pending.clear()

    target = {uid: ex.cache_path for uid, ex in examples.items()}
    for result in _prepare_into(jobs, config, settings, workers, progress, target):
        if isinstance(result, PrepareFailure):
            failures.append(result)
        else:
            pending.append(result)
            if len(pending) >= _WRITE_BATCH:
                flush()
    flush()
    failed = {f.series_uid for f in failures}
    kept = sorted(
        (ex for uid, ex in examples.items() if uid not in failed), key=lambda e: e.patient_id
    )
    return CacheResult(
        examples=tuple(kept),
        failures=tuple(failures),
        prepared=len(jobs) - len(failures),
        reused=reused,
        seconds=time.perf_counter() - t0,
    )


def build_thick_cache(
    store: Store,
    config: Any,
    cache_dir: Path | str,
    examples: Sequence[Example],
    thick_mm: float,
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    settings: PreprocessingSettings | None = None,
) -> tuple[dict[str, Path], tuple[PrepareFailure, ...]]:
    """Cached thick-slice views of the examples' series (``[train] thick_mm``).

    Each series is prepared as :func:`engine.prepare.thick_view` reconstructs it, through
    the same anatomy stage as the series itself, into :func:`cache_file` with
    ``thick_mm``. Nothing is written to the database: these are not scans of the archive.

    Returns
    -------
    files : dict
        SeriesInstanceUID -> cache file, for every series whose view is cached.
    failures : tuple of PrepareFailure
        Views that could not be prepared (their patients are seen as stored).
    """
    settings = settings or PreprocessingSettings.from_config(config)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    files = {
        e.series_uid: cache_file(cache_dir, e.series_uid, settings, e.content_hash, thick_mm)
        for e in examples
    }
    missing = [uid for uid, path in files.items() if not path.is_file()]
    with store.read() as con:
        jobs = [dataclasses.replace(j, thick_mm=thick_mm) for j in jobs_for(con, missing)]
    failures = [
        result
        for result in _prepare_into(jobs, config, settings, workers, progress, dict(files))
        if isinstance(result, PrepareFailure)
    ]
    for f in failures:
        files.pop(f.series_uid)
    return files, tuple(failures)


class LoadedInputs(NamedTuple):
    """The cached inputs of a list of examples, as a model reads them.

    Attributes
    ----------
    inputs : list of ModelInputs
        In the examples' order.
    features : np.ndarray or None
        float32, shape (n, n_levels, F): :func:`models.sampling.intensity_features` of
        each input, measured at load (before an array was dropped), for a model with the
        intensity branch; else None.
    """

    inputs: list[ModelInputs]
    features: np.ndarray | None


def load_examples(
    examples: Sequence[Example],
    settings: PreprocessingSettings | None = None,
    *,
    config: ModelConfig | None = None,
) -> LoadedInputs:
    """The cached inputs of ``examples``, in order.

    Parameters
    ----------
    examples : sequence of Example
    settings : PreprocessingSettings, optional
        A file made with other settings is refused (``preprocessing_mismatch``).
    config : ModelConfig, optional
        The model that will read them: its intensity features are measured on each
        input as it is read (they need both arrays), then only the array its network
        reads (``input_variant``) stays in memory, the other becoming a read-only
        all-zero view that costs nothing (half the memory of a training set). None keeps
        both arrays and measures nothing.
    """
    out, features = [], []
    for ex in examples:
        inputs = load_inputs(ex.cache_path, settings)
        if config is not None:
            if config.intensity_features:
                features.append(intensity_features(inputs, config))
            variant = config.input_variant
            drop = "bone_muscle" if variant == "bone" else "bone"
            kept = getattr(inputs, variant)
            empty = np.broadcast_to(np.zeros((), dtype=kept.dtype), kept.shape)
            inputs = ModelInputs(**{**inputs.__dict__, drop: empty})
        out.append(inputs)
    measured = config is not None and config.intensity_features
    if not measured:
        return LoadedInputs(out, None)
    return LoadedInputs(out, np.stack(features) if features else np.zeros((0, 0, 0), np.float32))


def fracture_strata(examples: Sequence[Example], max_followup: int) -> np.ndarray:
    """Stratum per example: 2 x prevalent fracture + incident fracture within the horizon."""
    prevalent = np.array([e.prevalent_vf == 1 for e in examples])
    incident = np.array(
        [e.event == 1 and e.followup_years < max_followup for e in examples], dtype=bool
    )
    return prevalent.astype(np.int64) * 2 + incident


def stratified_batches(
    examples: Sequence[Example], batch_size: int, max_followup: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch's batches (indices into ``examples``), each a stratified slice.

    Each stratum (prevalent fracture x incident fracture within ``max_followup`` years) is
    shuffled and spread evenly over the epoch (systematic sampling with a random start),
    so every batch holds the strata in about the cohort's proportions.

    Parameters
    ----------
    examples : sequence of Example
    batch_size : int
    max_followup : int
        Years of the survival horizon.
    rng : np.random.Generator
        Seeded by the caller: the same state gives the same batches.

    Returns
    -------
    list of np.ndarray
        int64 indices; every example appears exactly once per epoch; the last batch may
        be smaller.
    """
    strata = fracture_strata(examples, max_followup)
    keys = np.empty(len(examples))
    for s in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == s))
        keys[members] = (np.arange(members.size) + rng.random()) / members.size
    order = np.argsort(keys, kind="stable")
    return [order[i : i + batch_size] for i in range(0, order.size, batch_size)]


@dataclass(frozen=True)
class TrainBatch:
    """Images and labels of one training batch (tensors on the training device).

    Attributes
    ----------
    batch : ModelBatch
        images (B, n_levels, K, 3, H, W) and level_present (B, n_levels).
    prevalent : torch.Tensor
        float32, shape (B,): 1 prevalent fracture, 0 none (0 where unknown).
    prevalent_known : torch.Tensor
        bool, shape (B,): the detection label is known.
    y_seq, mask : torch.Tensor
        float32, shape (B, T): Mirai's yearly labels and censoring mask.
    """

    batch: ModelBatch
    prevalent: torch.Tensor
    prevalent_known: torch.Tensor
    y_seq: torch.Tensor
    mask: torch.Tensor


def make_batch(
    examples: Sequence[Example],
    inputs: Sequence[ModelInputs],
    index: np.ndarray,
    config: ModelConfig,
    rng: np.random.Generator | None,
    device: str | torch.device = "cpu",
    features: np.ndarray | None = None,
) -> TrainBatch:
    """Images (random slice triplets when ``rng`` is given) and labels of ``index``.

    Parameters
    ----------
    examples, inputs : sequence
        Aligned: ``inputs[i]`` is the cached input of ``examples[i]``.
    index : np.ndarray
        Which patients.
    config : ModelConfig
    rng : np.random.Generator or None
        Training triplets (:func:`models.sampling.sample_triplets`); None = centred.
    device : str or torch.device
    features : np.ndarray, optional
        shape (len(inputs), n_levels, F): the intensity features of every input, measured
        once by the caller; None = measured here.
    """
    import torch

    chosen = [examples[i] for i in index]
    samples = [
        sample_triplets(inputs[i], config, rng, None if features is None else features[i])
        for i in index
    ]
    known = np.array([e.prevalent_vf is not None for e in chosen])
    prevalent = np.array([float(e.prevalent_vf or 0) for e in chosen], dtype=np.float32)
    labels = survival_labels(
        [e.followup_years for e in chosen], [e.event for e in chosen], config.max_followup
    )
    return TrainBatch(
        batch=to_batch(samples, device),
        prevalent=torch.from_numpy(prevalent).to(device),
        prevalent_known=torch.from_numpy(known).to(device),
        y_seq=torch.from_numpy(labels.y_seq).to(device),
        mask=torch.from_numpy(labels.mask).to(device),
    )
