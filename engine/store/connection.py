"""Connections to the DuckDB file: short transactions under phase-fair locks.

Concurrency design
------------------
DuckDB lets one process open a database file read-write, or many processes open it
read-only, never both at once. vfrisk needs the dashboard open while ``index``, ``score``
and ``import-clinical`` write, so no process keeps the file open:

* a writer opens the file read-write for one short transaction (a batch of rows), commits
  and closes it (:meth:`Store.write`);
* a reader opens it read-only for one batch of queries (one dashboard render) and closes it
  (:meth:`Store.read`).

Three advisory ``flock`` files beside the database order them phase-fairly. A reader
announces itself on ``DB.waiting`` (shared), passes ``DB.intent`` (shared), takes
``DB.lock`` (shared) and withdraws its announcement. A writer takes ``DB.intent``
exclusively, which stops new readers from starting; if readers were already waiting it
lets them in first (releasing ``DB.intent`` for at most ``_YIELD_S``), then waits for the
running readers to finish on ``DB.lock`` (exclusive). So a writer waits at most for one
round of reader batches (well under a second for dashboard queries), a reader waits at
most for one write transaction even when writes come back to back, and nobody errors
while the other is busy. After ``storage.lock_timeout_s`` seconds a command gives up with
reason code ``db_busy``.
DuckDB's own file lock is still honoured (a non-vfrisk process holding the file is
retried the same way). ``flock`` needs no write access: lock files that another user's
writer made are opened read-only. A database in a folder where this process cannot create
the lock files (a read-only mount, an archive folder owned by another user) is read
without them: no vfrisk writer has locked it, and a writer from this process would fail
there anyway, with ``db_read_only``. A writer killed mid-transaction leaves only a WAL of committed
transactions, which DuckDB replays on the next open.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb

from engine.errors import VfriskError
from engine.store.schema import DDL, MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:  # pandas costs ~150 ms to import; only query() needs it
    import pandas as pd

__all__ = ["Store"]

_POLL_S = 0.002
_YIELD_S = 1.0
#: DuckDB's words (from the OS) when a file cannot be opened for writing.
_NOT_WRITABLE = ("permission denied", "not permitted", "read-only file system")
#: The same from Python's ``open``.
_NOT_WRITABLE_ERRNO = (errno.EACCES, errno.EPERM, errno.EROFS)


class _FlockTimeout(Exception):
    pass


def _flock(handle: IO[bytes], mode: int, deadline: float) -> None:
    """Take ``flock(mode)`` on an open file, polling until ``deadline`` (monotonic s)."""
    delay = _POLL_S
    while True:
        try:
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _FlockTimeout from None
            time.sleep(delay)
            delay = min(delay * 1.5, 0.02)


class Store:
    """A vfrisk DuckDB database file with writer-priority short-lived connections.

    Parameters
    ----------
    path : path-like
        The ``.duckdb`` file.
    lock_timeout_s : float
        Seconds to wait for another vfrisk process before failing with ``db_busy``.
    """

    def __init__(self, path: str | os.PathLike[str], lock_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = float(lock_timeout_s)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._intent_path = self.path.with_name(self.path.name + ".intent")
        self._waiting_path = self.path.with_name(self.path.name + ".waiting")
        self._schema_checked = False  # tables are created once per Store, not per write

    # -- locking ---------------------------------------------------------------------------
    @staticmethod
    def _open_lockfile(path: Path) -> IO[bytes] | None:
        """``path`` opened for ``flock`` (created when missing), or None when this process
        can neither create it nor find it (see the module doc)."""
        try:
            return open(path, "a+b")  # noqa: SIM115 - closed by the caller's ExitStack
        except OSError as exc:
            if exc.errno not in _NOT_WRITABLE_ERRNO:
                raise
        try:
            return open(path, "rb")  # noqa: SIM115 - made by another user: flock needs no write
        except FileNotFoundError:
            return None

    def _busy(self, role: str) -> VfriskError:
        return VfriskError(
            "db_busy",
            f"{self.path} stayed locked for {self.lock_timeout_s:.0f} s while this {role} "
            "waited; another process holds it (a long query or a stuck command). Retry, or "
            "stop the other process.",
        )

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        with contextlib.ExitStack() as stack:
            files = []
            for path in (self._waiting_path, self._intent_path, self._lock_path):
                files.append(self._open_lockfile(path))
                if files[-1] is not None:
                    stack.enter_context(files[-1])
            waiting, intent, lock = files
            if waiting is None or intent is None or lock is None:
                if exclusive:
                    raise VfriskError(
                        "db_read_only",
                        f"{self.path.parent} does not let this process create the lock files "
                        f"beside {self.path.name}; this command writes to the database: make "
                        "the folder writable, or copy the file and pass the copy as --db",
                    )
                yield  # nobody can write here (module doc): read without the locks
                return
            try:
                if exclusive:
                    self._writer_enter(waiting, intent, deadline)
                    _flock(lock, fcntl.LOCK_EX, deadline)
                else:
                    _flock(waiting, fcntl.LOCK_SH, deadline)
                    _flock(intent, fcntl.LOCK_SH, deadline)
                    _flock(lock, fcntl.LOCK_SH, deadline)
                    fcntl.flock(intent.fileno(), fcntl.LOCK_UN)
                    fcntl.flock(waiting.fileno(), fcntl.LOCK_UN)
            except _FlockTimeout:
                raise self._busy("writer" if exclusive else "reader") from None
            yield

    @staticmethod
    def _writer_enter(waiting: IO[bytes], intent: IO[bytes], deadline: float) -> None:
        """Take the writer intent, first letting in readers that were already waiting."""
        _flock(intent, fcntl.LOCK_EX, deadline)
        yield_until = min(time.monotonic() + _YIELD_S, deadline)
        try:
            fcntl.flock(waiting.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(waiting.fileno(), fcntl.LOCK_UN)
            return  # nobody waiting
        except BlockingIOError:
            fcntl.flock(intent.fileno(), fcntl.LOCK_UN)
        try:
            _flock(waiting, fcntl.LOCK_EX, yield_until)
            fcntl.flock(waiting.fileno(), fcntl.LOCK_UN)
        except _FlockTimeout:
            pass  # readers keep arriving: go ahead anyway after the yield
        _flock(intent, fcntl.LOCK_EX, deadline)

    def _connect(self, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
        delay = _POLL_S
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                text = str(exc).lower()
                if not read_only and any(w in text for w in _NOT_WRITABLE):
                    raise VfriskError(
                        "db_read_only",
                        f"{self.path} cannot be written ({exc}); this command writes to the "
                        "database: make the file writable, or copy it and pass the copy as --db",
                    ) from exc
                # Another (non-vfrisk) process holds DuckDB's own lock: wait like for ours.
                if "lock" not in text or time.monotonic() >= deadline:
                    raise self._busy("reader" if read_only else "writer") from exc
                time.sleep(delay)
                delay = min(delay * 1.5, 0.05)

    # -- public API ------------------------------------------------------------------------
    def writable(self) -> bool:
        """Whether this process could write the database: the file opens for writing and
        the lock files beside it can be opened for writing (made when missing). No lock is
        taken and no row changes: the dashboard asks before offering an audited action."""
        try:
            with open(self.path, "r+b"):
                pass
            for path in (self._waiting_path, self._intent_path, self._lock_path):
                with open(path, "a+b"):
                    pass
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno in _NOT_WRITABLE_ERRNO:
                return False
            raise
        return True

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction: commit on success, roll back on any exception.

        Creates the database and its tables on first use. Keep the body short (one batch):
        readers wait while it runs.
        """
        with self._locked(exclusive=True):
            con = self._connect(False, time.monotonic() + self.lock_timeout_s)
            try:
                if not self._schema_checked:
                    self._ensure_schema(con)
                    self._schema_checked = True
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            finally:
                con.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one batch of queries; never blocks a writer for long."""
        if not self.path.exists():
            raise VfriskError(
                "db_not_found",
                f"database {self.path} does not exist yet; create it with `vfrisk index` "
                "(or `vfrisk demo`) first, or pass the right --db",
            )
        upgrade = False
        with self._locked(exclusive=False):
            con = self._connect(True, time.monotonic() + self.lock_timeout_s)
            try:
                upgrade = self._upgradable(self._version(con))
                if not upgrade:
                    self._check_version(con)
                    yield con
            finally:
                con.close()
        if upgrade:  # an older database: the first access upgrades it (``MIGRATIONS``)
            try:
                with self.write():
                    pass
            except VfriskError as exc:
                if exc.code != "db_read_only":
                    raise
                raise VfriskError(
                    "db_read_only",
                    f"{self.path} has an older schema, which this vfrisk upgrades to version "
                    f"{SCHEMA_VERSION} on first use (it adds columns), but the file cannot be "
                    "written: make it writable, or copy it and open the copy",
                ) from exc
            with self.read() as con:
                yield con

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run one parameterized read-only query and return its rows."""
        with self.read() as con:
            return con.execute(sql, params or []).df()

    def start_run(self, run_id: str, command: str, config_hash: str, **fields: Any) -> None:
        """Record the start of a writing command in ``runs`` (provenance)."""
        from engine import __version__

        with self.write() as con:
            con.execute(
                "INSERT OR REPLACE INTO runs (run_id, command, code_version, config_hash, "
                "model_id, device, started_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                [
                    run_id,
                    command,
                    __version__,
                    config_hash,
                    fields.get("model_id"),
                    fields.get("device"),
                    dt.datetime.now(dt.UTC).replace(tzinfo=None),
                ],
            )

    def finish_run(self, run_id: str, status: str, counts: dict[str, Any]) -> None:
        """Record the end of a run, its status ('ok', 'failed', 'interrupted') and counts."""
        with self.write() as con:
            con.execute(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ? WHERE run_id = ?",
                [
                    dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    status,
                    json.dumps(counts, default=str),
                    run_id,
                ],
            )

    # -- schema ------------------------------------------------------------------------------
    def _ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create missing tables (all DDL is ``IF NOT EXISTS``) after checking the version."""
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "meta" in tables:
            self._migrate(con)
            self._check_version(con)
        elif tables:
            raise VfriskError(
                "db_schema_mismatch",
                f"{self.path} holds tables of another application; give vfrisk its own --db",
            )
        for ddl in DDL:
            con.execute(ddl)
        if "meta" not in tables:
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    @staticmethod
    def _version(con: duckdb.DuckDBPyConnection) -> int | None:
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except duckdb.CatalogException:
            row = None
        return int(row[0]) if row else None

    @staticmethod
    def _upgradable(found: int | None) -> bool:
        """An older schema version with a migration path to ``SCHEMA_VERSION``."""
        return (
            found is not None
            and found < SCHEMA_VERSION
            and all(v in MIGRATIONS for v in range(found, SCHEMA_VERSION))
        )

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bring an older database to ``SCHEMA_VERSION`` in one transaction, if it can be."""
        found = self._version(con)
        if not self._upgradable(found):
            return  # current, or no path (_check_version refuses it)
        con.execute("BEGIN TRANSACTION")
        try:
            for version in range(int(found or 0), SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    con.execute(statement)
            con.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)]
            )
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _check_version(self, con: duckdb.DuckDBPyConnection) -> None:
        found = self._version(con)
        if found != SCHEMA_VERSION:
            raise VfriskError(
                "db_schema_mismatch",
                f"{self.path} has schema version {found}, this vfrisk needs {SCHEMA_VERSION} "
                "and cannot upgrade it; re-create it with `vfrisk index` into a new --db",
            )
