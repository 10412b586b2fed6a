"""``vfrisk index``: walk an archive, read headers in parallel, write the index tables.

Incremental and crash-safe:

* The ``files`` table remembers each path's (size, mtime_ns). A run reads only entries that
  are new or whose size or mtime changed; paths gone from the archive are forgotten
  (their instances removed and their series re-summarized or dropped).
* Results are written in batches of ``batch_files`` entries, each ONE transaction that
  replaces the batch's rows in ``files``, ``instances`` and ``unreadable`` and recomputes
  the summaries of the series it touched and the selection of their studies. A crash or
  Ctrl-C loses at most the batch in flight; the next run sees those files as new and
  finishes the job. A bad file becomes an ``unreadable`` row, never an exception.
* At the end, eligibility and selection of every series are re-decided with the current
  rules (cheap, no file is read), so a changed ``[eligibility]`` config applies to the
  whole index on the next run.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import logs
from engine.errors import VfriskError
from engine.index.eligibility import Rules, decide_all
from engine.index.headers import read_chunk
from engine.index.records import FileEntry, InstanceRecord, SeriesRecord, Unreadable
from engine.index.series import summarize
from engine.index.walk import discover
from engine.store import Store
from engine.store import index_tables as tables

__all__ = ["IndexRequest", "IndexSummary", "index_archive"]

_DB_COMPANIONS = ("", ".wal", ".lock", ".intent", ".waiting")


@dataclass(frozen=True)
class IndexRequest:
    """What to index and how.

    Attributes
    ----------
    archive : Path
        The archive folder.
    workers : int
        Header-reading processes (1 = in this process).
    batch_files : int
        Entries per write transaction (smaller = less lost on a crash, more commits).
    progress : bool
        Show a tqdm bar on stderr.
    exclude : tuple of Path
        Files never indexed (the log file when it lies inside the archive); the database
        and its lock files are always excluded.
    """

    archive: Path
    workers: int = 1
    batch_files: int = 1000
    progress: bool = True
    exclude: tuple[Path, ...] = ()


@dataclass(frozen=True)
class IndexSummary:
    """What one run did and what the index holds under the archive folder afterwards."""

    archive: str
    db: str
    seconds: float
    files_seen: int
    new: int
    changed: int
    unchanged: int
    removed: int
    batches: int
    series: int
    studies: int
    patients: int
    eligible: int
    selected: int
    studies_without_selection: int
    unreadable: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        """Everything but the paths, for the ``runs`` row and the JSON log."""
        return {k: v for k, v in self.__dict__.items() if k not in ("archive", "db")}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class _SeriesCache:
    """The stored instances of the series a run is writing, mirrored in memory.

    Re-summarizing a series needs all its instances; reading them back from the database
    in every batch cost more than the rest of the batch (a series often spans batches).
    A series is loaded from the database the first time a batch touches it (its rows from
    earlier runs), then kept up to date with what each batch deletes and inserts. Series
    no batch touched for ``keep`` batches are dropped (memory stays bounded on a large
    archive, read in path order); touching one again reloads it, so the mirror always
    equals the database (one writer at a time holds the write lock; the run aborts when
    a transaction fails).
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self.batch = 0
        self.series: dict[str, dict[str, InstanceRecord]] = {}
        self.last_used: dict[str, int] = {}
        self.series_of: dict[str, str] = {}

    def forget(self, paths: Iterable[str]) -> None:
        """Drop instances whose paths were deleted from the database."""
        for path in paths:
            uid = self.series_of.pop(path, None)
            if uid is not None and uid in self.series:
                self.series[uid].pop(path, None)

    def load(self, con: Any, uids: Iterable[str]) -> None:
        """Mirror the stored instances of the series not held yet."""
        self.batch += 1
        uids = set(uids)
        for uid in uids:
            self.last_used[uid] = self.batch
        missing = [u for u in uids if u not in self.series]
        if missing:
            self.series.update({u: {} for u in missing})
            self.add(tables.load_instances(con, missing))

    def add(self, records: Iterable[InstanceRecord]) -> None:
        """Mirror inserted instances (their series are loaded)."""
        for r in records:
            self.series[r.series_uid][r.path] = r
            self.series_of[r.path] = r.series_uid

    def groups(self, uids: Iterable[str]) -> dict[str, list[InstanceRecord]]:
        """Instances of these series (series with none left are omitted); then evict."""
        out = {u: list(self.series[u].values()) for u in sorted(uids) if self.series.get(u)}
        for uid in [u for u, b in self.last_used.items() if b <= self.batch - self.keep]:
            for path in self.series.pop(uid, {}):
                self.series_of.pop(path, None)
            del self.last_used[uid]
        return out


def _refresh(
    con: Any,
    touched: set[str],
    rules: Rules,
    now: dt.datetime,
    cache: _SeriesCache | None = None,
) -> None:
    """Re-summarize the touched series and re-decide every series of their studies."""
    if not touched:
        return
    studies = tables.study_uids_of(con, touched)
    if cache is not None:
        groups = cache.groups(touched)
    else:
        groups = {}
        for record in tables.load_instances(con, touched):
            groups.setdefault(record.series_uid, []).append(record)
    fresh: list[SeriesRecord] = []
    for records in groups.values():
        summary = summarize(records)
        fresh.append(SeriesRecord(**{**summary.__dict__, "indexed_at": now}))
    studies |= {s.study_uid for s in fresh}
    others = [s for s in tables.series_of_studies(con, studies) if s.series_uid not in touched]
    tables.replace_series(con, touched, decide_all([*others, *fresh], rules))


def _commit(
    store: Store,
    results: Sequence[InstanceRecord | Unreadable],
    rules: Rules,
    cache: _SeriesCache,
) -> None:
    now = _now()
    instances = [r for r in results if isinstance(r, InstanceRecord)]
    unreadable = [r for r in results if isinstance(r, Unreadable)]
    files = [(r.path, r.size, r.mtime_ns, "instance") for r in instances]
    files += [(r.path, r.size, r.mtime_ns, "unreadable") for r in unreadable]
    paths = [f[0] for f in files]
    with store.write() as con:
        touched = tables.delete_paths(con, paths) | {r.series_uid for r in instances}
        cache.forget(paths)
        cache.load(con, touched)  # before the insert: rows of earlier runs only
        tables.insert_instances(con, instances)
        tables.insert_unreadable(con, unreadable)
        tables.insert_files(con, files, now)
        cache.add(instances)
        _refresh(con, touched, rules, now, cache)
    logs.event(
        "index.batch_committed",
        files=len(files),
        instances=len(instances),
        unreadable=len(unreadable),
    )


def _chunks(entries: Sequence[FileEntry], workers: int) -> list[list[FileEntry]]:
    size = max(16, min(256, len(entries) // max(1, workers * 8) or 1))
    return [list(entries[i : i + size]) for i in range(0, len(entries), size)]


def _results(
    entries: Sequence[FileEntry], root: str, workers: int
) -> Iterator[list[InstanceRecord | Unreadable]]:
    tasks = [(chunk, root) for chunk in _chunks(entries, workers)]
    if workers <= 1 or len(tasks) <= 1:
        yield from map(read_chunk, tasks)
        return
    pool = multiprocessing.get_context("fork").Pool(workers)
    try:
        yield from pool.imap_unordered(read_chunk, tasks)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _redecide_all(store: Store, rules: Rules, prefix: str) -> dict[str, Any]:
    """Apply the current rules to every stored series (writing only those that changed)
    and return the summary counts under ``prefix``, in one transaction."""
    with store.write() as con:
        stored = tables.load_series(con)
        decided = decide_all(stored, rules)
        before = {s.series_uid: s for s in stored}
        changed = [s for s in decided if s != before[s.series_uid]]
        if changed:
            tables.replace_series(con, [], changed)
        return tables.summary_counts(con, prefix)


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="index", unit="file", file=sys.stderr, disable=not enabled)


def index_archive(
    store: Store,
    req: IndexRequest,
    rules: Rules,
    *,
    config_hash: str = "",
    run_id: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> IndexSummary:
    """Index ``req.archive`` into ``store`` and record the run in ``runs``.

    Parameters
    ----------
    store : Store
        The database (created when missing).
    req : IndexRequest
        Archive folder, workers, batch size.
    rules : Rules
        Eligibility rules (``engine.index.eligibility.rules_from_config``).
    config_hash : str
        Recorded with the run for provenance.
    run_id : str, optional
        Run id for ``runs`` (default: the log's run id, else a new one).
    on_batch : callable, optional
        Called with the number of entries committed so far after each batch.

    Raises
    ------
    VfriskError
        ``archive_not_found`` when ``req.archive`` is not a folder.
    """
    start = time.perf_counter()
    root = Path(req.archive).absolute()
    if not root.is_dir():
        raise VfriskError(
            "archive_not_found",
            f"archive folder {req.archive} does not exist or is not a folder; pass the folder "
            "that holds the DICOM files (any depth)",
        )
    run_id = run_id or uuid.uuid4().hex[:12]  # each run its own row in `runs`
    store.start_run(run_id, "index", config_hash)
    try:
        summary = _index(store, req, rules, root, start, on_batch)
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted", {})
        raise
    except BaseException as exc:
        store.finish_run(run_id, "failed", {"error": str(exc)[:500]})
        raise
    store.finish_run(run_id, "ok", summary.counts())
    logs.event("index.finished", **summary.counts())
    return summary


def _excluded(store: Store, req: IndexRequest) -> set[str]:
    db = store.path.absolute()
    out = {str(db) + suffix for suffix in _DB_COMPANIONS}
    return out | {str(Path(p).absolute()) for p in req.exclude}


def _index(
    store: Store,
    req: IndexRequest,
    rules: Rules,
    root: Path,
    start: float,
    on_batch: Callable[[int], None] | None,
) -> IndexSummary:
    prefix = str(root) + os.sep
    entries = discover(root, exclude=_excluded(store, req))
    with store.write() as con:
        known = tables.file_signatures(con, prefix)
    seen = {e.path for e in entries}
    new = [e for e in entries if e.path not in known]
    changed = [e for e in entries if e.path in known and known[e.path] != (e.size, e.mtime_ns)]
    removed = [p for p in known if p not in seen]
    logs.event(
        "index.started",
        archive=str(root),
        files=len(entries),
        new=len(new),
        changed=len(changed),
        removed=len(removed),
    )
    if removed:
        with store.write() as con:
            _refresh(con, tables.delete_paths(con, removed), rules, _now())
    to_read = sorted([*new, *changed], key=lambda e: e.path)
    batches = _read_and_commit(store, to_read, str(root), req, rules, on_batch)
    counts = _redecide_all(store, rules, prefix)
    return IndexSummary(
        archive=str(root),
        db=str(store.path),
        seconds=round(time.perf_counter() - start, 3),
        files_seen=len(entries),
        new=len(new),
        changed=len(changed),
        unchanged=len(entries) - len(new) - len(changed),
        removed=len(removed),
        batches=batches,
        **counts,
    )


def _read_and_commit(
    store: Store,
    to_read: Sequence[FileEntry],
    root: str,
    req: IndexRequest,
    rules: Rules,
    on_batch: Callable[[int], None] | None,
) -> int:
    pending: list[InstanceRecord | Unreadable] = []
    done = batches = 0
    cache = _SeriesCache()

    def flush() -> None:
        nonlocal done, batches
        if pending:
            _commit(store, pending, rules, cache)
            done += len(pending)
            batches += 1
            pending.clear()
            if on_batch is not None:
                on_batch(done)

    results: Iterable[list[InstanceRecord | Unreadable]] = (
        _results(to_read, root, req.workers) if to_read else ()
    )
    with _progress_bar(len(to_read), req.progress and bool(to_read)) as bar:
        for chunk in results:
            pending.extend(chunk)
            bar.update(len(chunk))
            if len(pending) >= req.batch_files:
                flush()
        flush()
    return batches
