"""The ``vfrisk`` console script: real subprocesses, summaries, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from engine.synth.population import CLINICAL_COLUMNS


def _vfrisk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_synth_tables_only_writes_tables_log_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    result = _vfrisk("synth", str(out), "--patients", "300", "--seed", "5", "--tables-only",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC cohort written" in result.stdout and "patients        300" in result.stdout
    clinical = pd.read_csv(out / "clinical.csv")
    assert tuple(clinical.columns) == CLINICAL_COLUMNS and len(clinical) == 300
    assert not (out / "archive").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["synthetic"] is True and manifest["request"]["seed"] == 5
    events = [json.loads(line)["event"] for line in (out / "vfrisk.log.jsonl").open()]
    assert events[0] == "synth.population" and events[-1] == "synth.done"
    assert "SYNTHETIC" in (out / "SYNTHETIC.txt").read_text()


def test_synth_refuses_to_overwrite_and_names_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    assert (
        _vfrisk("synth", str(out), "--patients", "5", "--tables-only", cwd=tmp_path).returncode == 0
    )
    result = _vfrisk("synth", str(out), "--patients", "5", "--tables-only", cwd=tmp_path)
    assert result.returncode == 2
    assert "error [output_exists]" in result.stderr and str(out) in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_site_is_a_clear_error(tmp_path: Path) -> None:
    result = _vfrisk("synth", str(tmp_path / "o"), "--patients", "5", "--sites", "dev,mars",
                     "--tables-only", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "[bad_sites_spec]" in result.stderr and "'mars'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "vfrisk.toml").write_text("[synth]\nseed = 'x'\n")
    result = _vfrisk("synth", str(tmp_path / "o"), "--patients", "5", "--tables-only", cwd=tmp_path)
    assert (
        result.returncode == 2 and "[bad_config]" in result.stderr and "synth.seed" in result.stderr
    )


def test_bad_patient_count_is_refused_by_the_parser(tmp_path: Path) -> None:
    result = _vfrisk("synth", str(tmp_path / "o"), "--patients", "0", cwd=tmp_path)
    assert result.returncode == 2 and "must be >= 1" in result.stderr


def test_demo_generates_once_then_indexes_and_scores_incrementally(tmp_path: Path) -> None:
    first = _vfrisk("demo", "--dir", "d", "--patients", "3", "--workers", "2", "--no-dashboard",
                    cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "SYNTHETIC cohort written" in first.stdout and "selected     3 series" in first.stdout
    # the shipped model scores the three series; the report evaluates it against FRAX
    assert "Scoring skipped" not in first.stdout
    assert "# vfrisk evaluation report" in first.stdout and "FRAX-only report" not in first.stdout
    assert "SYNTHETIC" in first.stdout and "vfrisk dashboard --db" in first.stdout
    again = _vfrisk("demo", "--dir", "d", "--patients", "3", "--no-dashboard", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Using the SYNTHETIC demo cohort" in again.stdout
    assert "0 new, 0 changed" in again.stdout
    from engine.store import Store

    store = Store(tmp_path / "d" / "vfrisk.duckdb")
    assert store.query("SELECT count(*) AS n FROM series WHERE selected")["n"].item() == 3
    scored = store.query("SELECT count(DISTINCT series_uid) AS n FROM predictions")
    assert scored["n"].item() == 3
    runs = store.query(
        "SELECT command, count(*) AS n FROM runs WHERE status = 'ok' GROUP BY command"
    )
    # every stage of both demo runs keeps its own provenance row
    assert dict(zip(runs["command"], runs["n"], strict=True)) == {
        "index": 2,
        "import-clinical": 2,
        "score": 2,
        "report": 2,
    }


def test_demo_ends_serving_the_dashboard(tmp_path: Path) -> None:
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "vfrisk.toml").write_text(f"[dashboard]\nport = {port}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "demo", "--dir", "d", "--patients", "3"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=2
                ) as r:
                    status = r.status
                    break
            except OSError:
                time.sleep(1)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "no answer"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert "Starting the dashboard on http://127.0.0.1:" in out
