"""``vfrisk index`` through a subprocess: summary, exit codes, crash and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from engine.store import Store

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "VFRISK_CONFIG": ""}


def _vfrisk(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True, text=True, check=False, cwd=ROOT, env=ENV, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_cli_summary_and_exit_0(cohort: Path, tmp_path: Path) -> None:
    db = tmp_path / "db.duckdb"
    out = _vfrisk("index", str(cohort / "archive"), "--db", str(db), "--workers", "2")
    assert out.returncode == 0, out.stderr
    truth = pd.read_csv(cohort / "truth" / "series.csv")
    n = truth.n_files.sum()
    assert f"files        {n} seen: {n} new, 0 changed, 0 unchanged, 0 removed" in out.stdout
    assert f"series       {len(truth)} in 5 studies of 5 patients" in out.stdout
    assert "selected     5 series" in out.stdout
    assert "localizer 5" in out.stdout and "no_image 5" in out.stdout
    again = _vfrisk("index", str(cohort / "archive"), "--db", str(db))
    assert f"0 new, 0 changed, {n} unchanged" in again.stdout
    log = [json.loads(line) for line in (tmp_path / "vfrisk.log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "index.finished" for e in log)
    runs = Store(db).query("SELECT command, status, counts FROM runs")
    assert runs.command.tolist() == ["index", "index"] and set(runs.status) == {"ok"}
    assert json.loads(runs.counts[0])["files_seen"] == n


def test_cli_missing_archive_exits_2(tmp_path: Path) -> None:
    out = _vfrisk("index", str(tmp_path / "nope"), "--db", str(tmp_path / "db.duckdb"))
    assert out.returncode == 2
    assert "vfrisk: error [archive_not_found]" in out.stderr and "nope" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "db.duckdb").exists()


def _tables(db: Path) -> dict[str, pd.DataFrame]:
    store = Store(db)
    return {
        "series": store.query("SELECT * EXCLUDE (indexed_at) FROM series ORDER BY series_uid"),
        "instances": store.query("SELECT * FROM instances ORDER BY path"),
        "unreadable": store.query("SELECT * FROM unreadable ORDER BY path"),
        "files": store.query("SELECT * EXCLUDE (indexed_at) FROM files ORDER BY path"),
    }


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(cohort: Path, tmp_path: Path) -> None:
    archive = str(cohort / "archive")
    full = tmp_path / "full.duckdb"
    assert _vfrisk("index", archive, "--db", str(full), "--workers", "2").returncode == 0

    db, log = tmp_path / "crash.duckdb", tmp_path / "crash.log.jsonl"
    args = ["--log-file", str(log), "index", archive, "--db", str(db), "--workers", "1",
            "--batch-files", "20", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and "index.batch_committed" in log.read_text():
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    partial = Store(db).query("SELECT count(*) AS n FROM files").n[0]
    total = len(_tables(full)["files"])
    assert 0 < partial < total
    # what was committed is consistent: every file row has its instance or unreadable row
    orphans = Store(db).query(
        "SELECT count(*) AS n FROM files f WHERE NOT EXISTS (SELECT 1 FROM instances i "
        "WHERE i.path = f.path) AND NOT EXISTS (SELECT 1 FROM unreadable u WHERE u.path = f.path)"
    )
    assert orphans.n[0] == 0

    rerun = _vfrisk(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{partial} unchanged" in rerun.stdout
    got, want = _tables(db), _tables(full)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)
