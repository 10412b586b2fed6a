"""Index a scan archive: find files, read headers, group series, decide what can be scored.

``vfrisk index ARCHIVE --db DB`` (``engine.cli``) calls :func:`index_archive`. Stages:
``walk`` (files, zip members, NIfTI) -> ``headers`` / ``nifti`` (one record per file) ->
``series`` (summary per series) -> ``eligibility`` (rules, ``kernels``, one selected per
study) -> ``engine.store.index_tables`` (the only SQL). ``indexer`` orchestrates them in
crash-safe, incremental batches; ``lookup`` loads an indexed series by its UID.
"""

from engine.index.eligibility import Rules, decide, decide_all, rules_from_config, select
from engine.index.indexer import IndexRequest, IndexSummary, index_archive
from engine.index.kernels import KERNEL_CLASSES, classify_kernel
from engine.index.lookup import load_indexed_series
from engine.index.records import FileEntry, InstanceRecord, SeriesRecord, Unreadable

__all__ = [
    "KERNEL_CLASSES",
    "FileEntry",
    "IndexRequest",
    "IndexSummary",
    "InstanceRecord",
    "Rules",
    "SeriesRecord",
    "Unreadable",
    "classify_kernel",
    "decide",
    "decide_all",
    "index_archive",
    "load_indexed_series",
    "rules_from_config",
    "select",
]
