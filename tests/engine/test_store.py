"""The DuckDB store: transactions, errors, and real concurrent processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from engine.errors import VfriskError
from engine.store import SCHEMA_VERSION, Store


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb")
    with store.write() as con:
        con.execute("CREATE TABLE t (x INTEGER)")
        con.execute("INSERT INTO t VALUES (1), (2)")
    assert store.query("SELECT sum(x) AS s FROM t")["s"].item() == 3
    assert store.query("SELECT value FROM meta")["value"].item() == str(SCHEMA_VERSION)


def test_exception_rolls_back_the_whole_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb")
    with store.write() as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), store.write() as con:
        con.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    assert store.query("SELECT count(*) AS n FROM t")["n"].item() == 0


def test_runs_table_records_provenance(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb")
    store.start_run("r1", "index", "abc")
    store.finish_run("r1", "ok", {"files": 3})
    row = store.query("SELECT command, status, counts FROM runs").iloc[0]
    assert (row["command"], row["status"]) == ("index", "ok")
    assert json.loads(row["counts"]) == {"files": 3}


def test_read_of_missing_database_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(VfriskError) as err:
        Store(tmp_path / "nope.duckdb").query("SELECT 1")
    assert err.value.code == "db_not_found"
    assert "nope.duckdb" in err.value.message and "vfrisk index" in err.value.message


def test_foreign_duckdb_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE theirs (x INTEGER)")
    con.close()
    with pytest.raises(VfriskError) as err:
        Store(path).query("SELECT 1")
    assert err.value.code == "db_schema_mismatch"
    with pytest.raises(VfriskError) as err, Store(path).write():
        pass
    assert err.value.code == "db_schema_mismatch"


def _version_1_db(path: Path) -> None:
    """A version-1 database: the biomarkers table without canal_hu, one row in it."""
    from engine.store.schema import DDL

    con = duckdb.connect(str(path))
    for ddl in DDL:
        con.execute(ddl.replace("        canal_hu DOUBLE,\n", ""))
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute(
        "INSERT INTO biomarkers (series_uid, level, preprocessing_version, present, flags, "
        "series_flags) VALUES ('s1', 'L1', 'pp4', true, '', '')"
    )
    columns = {r[0] for r in con.execute("DESCRIBE biomarkers").fetchall()}
    assert "canal_hu" not in columns and "muscle_hu" in columns
    con.close()


def test_an_older_database_is_upgraded_by_the_first_writer(tmp_path: Path) -> None:
    from engine.store.schema import MIGRATIONS

    path = tmp_path / "old.duckdb"
    _version_1_db(path)
    assert SCHEMA_VERSION == 2 and 1 in MIGRATIONS
    store = Store(path)
    # the first access, a reader's, upgrades it in place and keeps its rows
    assert store.query("SELECT value FROM meta")["value"].item() == "2"
    with store.write() as con:
        con.execute("UPDATE biomarkers SET canal_hu = 21.5")
    row = Store(path).query("SELECT series_uid, canal_hu FROM biomarkers")
    assert row.to_dict("records") == [{"series_uid": "s1", "canal_hu": 21.5}]


def test_an_unwritable_database_reads_and_refuses_writes_with_a_reason(
    tmp_path: Path, unwritable: Callable[[Path], contextlib.AbstractContextManager[None]]
) -> None:
    current, old = tmp_path / "current.duckdb", tmp_path / "old.duckdb"
    with Store(current).write() as con:
        con.execute("INSERT INTO runs (run_id, command) VALUES ('r1', 'index')")
    _version_1_db(old)
    with unwritable(current), unwritable(old):
        assert Store(current).query("SELECT run_id FROM runs")["run_id"].tolist() == ["r1"]
        with pytest.raises(VfriskError) as err:
            Store(current).write().__enter__()
        assert err.value.code == "db_read_only"
        assert "current.duckdb" in err.value.message and "writable" in err.value.message
        # an older schema needs the upgrade's write even to be read
        with pytest.raises(VfriskError) as err:
            Store(old).query("SELECT 1")
        assert err.value.code == "db_read_only" and "older schema" in err.value.message


def test_a_database_in_an_unwritable_folder_reads_without_lock_files(
    tmp_path: Path, unwritable: Callable[[Path], contextlib.AbstractContextManager[None]]
) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    path = folder / "cohort.duckdb"
    with Store(path).write() as con:
        con.execute("INSERT INTO runs (run_id, command) VALUES ('r1', 'index')")
    for lock in folder.glob("cohort.duckdb.*"):
        lock.unlink()  # as if the file had been copied there
    with unwritable(path), unwritable(folder):
        assert not Store(path).writable()
        assert Store(path).query("SELECT run_id FROM runs")["run_id"].tolist() == ["r1"]
        assert not list(folder.glob("cohort.duckdb.*"))
        with pytest.raises(VfriskError) as err:
            Store(path).write().__enter__()
        assert err.value.code == "db_read_only"
        assert "archive" in err.value.message and "lock files" in err.value.message
    assert Store(path).writable() and not Store(folder / "absent.duckdb").writable()


def test_lock_files_that_cannot_be_written_still_order_readers_and_writers(
    tmp_path: Path, unwritable: Callable[[Path], contextlib.AbstractContextManager[None]]
) -> None:
    path = tmp_path / "db.duckdb"
    store = Store(path)
    with store.write() as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    locks = sorted(tmp_path.glob("db.duckdb.*"))
    assert [p.name for p in locks] == ["db.duckdb.intent", "db.duckdb.lock", "db.duckdb.waiting"]
    with contextlib.ExitStack() as stack:
        for lock in locks:  # made by another user's writer: flock needs no write access
            stack.enter_context(unwritable(lock))
        with store.read():  # a reader holds the shared lock: a writer must time out
            with pytest.raises(VfriskError) as err:
                Store(path, lock_timeout_s=0.3).write().__enter__()
            assert err.value.code == "db_busy"
        with store.write() as con:
            con.execute("INSERT INTO t VALUES (1)")
        assert store.query("SELECT x FROM t")["x"].tolist() == [1]


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with Store(path).write():
        pass
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    for attempt in (lambda: Store(path).query("SELECT 1"), lambda: Store(path).write().__enter__()):
        with pytest.raises(VfriskError) as err:
            attempt()
        assert err.value.code == "db_schema_mismatch" and "new --db" in err.value.message


def test_writer_gives_up_with_db_busy_when_a_reader_never_finishes(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    store = Store(path)
    with store.write() as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        _python(f"""
        import time, pathlib
        from engine.store import Store
        with Store({str(path)!r}).read() as con:
            pathlib.Path({str(ready)!r}).touch()
            time.sleep(30)
    """)
    )
    try:
        for _ in range(600):
            if ready.exists():
                break
            time.sleep(0.05)
        with pytest.raises(VfriskError) as err, Store(path, lock_timeout_s=0.3).write():
            pass
        assert err.value.code == "db_busy"
    finally:
        holder.kill()
        holder.wait()


def test_reader_process_never_errors_nor_sees_half_a_batch_while_a_writer_runs(
    tmp_path: Path,
) -> None:
    """A real second process polls throughout 60 write transactions of 50 rows each."""
    path = tmp_path / "db.duckdb"
    with Store(path).write() as con:
        con.execute("CREATE TABLE t (batch INTEGER, i INTEGER)")
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    reader = subprocess.Popen(
        _python(f"""
        import json, pathlib
        from engine.store import Store
        store, seen, errors = Store({str(path)!r}), [], []
        while not pathlib.Path({str(stop)!r}).exists():
            try:
                with store.read() as con:
                    n, b = con.execute("SELECT count(*), count(DISTINCT batch) FROM t").fetchone()
                seen.append([n, b])
                pathlib.Path({str(ready)!r}).touch()
            except Exception as exc:
                errors.append(repr(exc))
        print(json.dumps({{"seen": seen, "errors": errors}}))
    """),
        stdout=subprocess.PIPE,
        text=True,
    )
    store, waits = Store(path), []
    for _ in range(600):
        if ready.exists():
            break
        time.sleep(0.05)
    try:
        for batch in range(60):
            t0 = time.monotonic()
            with store.write() as con:
                waits.append(time.monotonic() - t0)
                con.executemany("INSERT INTO t VALUES (?, ?)", [[batch, i] for i in range(50)])
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    result = json.loads(out)
    assert result["errors"] == []
    during = [n for n, _ in result["seen"] if 0 < n < 3000]
    assert len(during) >= 10, f"the reader must get in between writes, saw {during}"
    counts = [n for n, _ in result["seen"]]
    assert all(n == 50 * b for n, b in result["seen"]), "a reader saw a half-written batch"
    assert counts == sorted(counts)
    # Writer priority: an open reader delays a writer by one short read, not more (~1 s).
    assert max(waits) < 2.0, f"writer waited {max(waits):.2f} s for the reader"


def test_sigkill_mid_transaction_loses_only_the_uncommitted_batch(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    with Store(path).write() as con:
        con.execute("CREATE TABLE t (x INTEGER)")
        con.execute("INSERT INTO t VALUES (1)")
    inside = tmp_path / "inside"
    writer = subprocess.Popen(
        _python(f"""
        import time, pathlib
        from engine.store import Store
        with Store({str(path)!r}).write() as con:
            con.execute("INSERT INTO t SELECT range FROM range(100, 10100)")
            pathlib.Path({str(inside)!r}).touch()
            time.sleep(60)
    """)
    )
    for _ in range(600):
        if inside.exists():
            break
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    store = Store(path, lock_timeout_s=5)
    assert store.query("SELECT count(*) AS n FROM t")["n"].item() == 1
    with store.write() as con:
        con.execute("INSERT INTO t VALUES (2)")
    assert store.query("SELECT sum(x) AS s FROM t")["s"].item() == 3
