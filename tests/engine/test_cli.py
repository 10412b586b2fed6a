"""The ``vfrisk`` console script: real subprocesses, summaries, and clear errors."""

from __future__ import annotations

import json
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


def test_demo_generates_once_then_indexes_incrementally(tmp_path: Path) -> None:
    first = _vfrisk("demo", "--dir", "d", "--patients", "3", "--workers", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "SYNTHETIC cohort written" in first.stdout and "selected     3 series" in first.stdout
    # the report step: no predictions yet, so the cohort and FRAX alone, naming `vfrisk score`
    assert "# vfrisk evaluation report" in first.stdout and "FRAX-only report" in first.stdout
    assert "vfrisk score --db" in first.stdout and "SYNTHETIC" in first.stdout
    again = _vfrisk("demo", "--dir", "d", "--patients", "3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Using the SYNTHETIC demo cohort" in again.stdout
    assert "0 new, 0 changed" in again.stdout
    from engine.store import Store

    selected = Store(tmp_path / "d" / "vfrisk.duckdb").query(
        "SELECT count(*) AS n FROM series WHERE selected"
    )
    assert selected["n"].item() == 3
    runs = Store(tmp_path / "d" / "vfrisk.duckdb").query(
        "SELECT command, count(*) AS n FROM runs WHERE status = 'ok' GROUP BY command"
    )
    # every stage of both demo runs keeps its own provenance row
    assert dict(zip(runs["command"], runs["n"], strict=True)) == {
        "index": 2,
        "import-clinical": 2,
        "report": 2,
    }
