"""``vfrisk import-clinical`` through a subprocess: summary, report, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "VFRISK_CONFIG": ""}


def _vfrisk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True, text=True, check=False, cwd=ROOT, env=ENV,
    )  # fmt: skip


def test_cli_imports_and_prints_the_summary(cohort: Path, db: Path) -> None:
    out = _vfrisk("import-clinical", "--db", str(db), str(cohort / "clinical.csv"))
    assert out.returncode == 0, out.stderr
    assert "rows         6 read: 6 inserted, 0 updated, 0 unchanged" in out.stdout
    assert "linked       6 patients to their earliest selected scan" in out.stdout
    assert "no patient   0 selected scans" in out.stdout
    assert "missing      none" in out.stdout
    log = [json.loads(line) for line in (db.parent / "vfrisk.log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "clinical.imported" and e["inserted"] == 6 for e in log)


def test_cli_bad_file_exits_2_with_report_and_writes_nothing(
    cohort: Path,
    db: Path,
    clinical: pd.DataFrame,
    tmp_path: Path,
    snapshot: Callable[[Path], dict[str, pd.DataFrame]],
) -> None:
    before = snapshot(db)
    clinical.loc[2, "age"] = "seventy"
    clinical.loc[0, "followup_years"] = "-1"
    clinical.loc[1, "event_type"] = "7"
    clinical.to_csv(tmp_path / "bad.csv", index=False)
    out = _vfrisk(
        "import-clinical", "--db", str(db), "--max-problems", "2", str(tmp_path / "bad.csv")
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("vfrisk: error [clinical_invalid]")
    assert "3 problems" in out.stderr and "nothing was written" in out.stderr
    assert "row 2, column followup_years, value '-1': [out_of_range]" in out.stderr
    assert "row 3, column event_type, value '7': [not_allowed]" in out.stderr
    assert "... and 1 more (total 3)" in out.stderr
    after = snapshot(db)
    for table, rows in before.items():
        pd.testing.assert_frame_equal(rows, after[table], obj=table)


def test_cli_missing_file_is_a_clear_error(db: Path, tmp_path: Path) -> None:
    out = _vfrisk("import-clinical", "--db", str(db), str(tmp_path / "nope.csv"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "vfrisk: error [clinical_file_not_found]" in out.stderr and "nope.csv" in out.stderr


def test_cli_fraction_scale_from_config(db: Path, clinical: pd.DataFrame, tmp_path: Path) -> None:
    for column in ("frax_mof", "frax_hip"):
        clinical[column] = (clinical[column].astype(float) / 100).round(4).astype(str)
    clinical.to_csv(tmp_path / "fractions.csv", index=False)
    refused = _vfrisk("import-clinical", "--db", str(db), str(tmp_path / "fractions.csv"))
    assert refused.returncode == 2 and "[frax_scale]" in refused.stderr
    config = tmp_path / "vfrisk.toml"
    config.write_text('[clinical]\nfrax_scale = "fraction"\n')
    ok = _vfrisk(
        "--config", str(config), "import-clinical", "--db", str(db), str(tmp_path / "fractions.csv")
    )
    assert ok.returncode == 0, ok.stderr
    assert "file read as fraction" in ok.stdout


def test_cli_refuses_an_unknown_index_scan_rule(cohort: Path, db: Path, tmp_path: Path) -> None:
    config = tmp_path / "vfrisk.toml"
    config.write_text('[clinical]\nindex_scan = "middle"\n')
    out = _vfrisk(
        "--config", str(config), "import-clinical", "--db", str(db), str(cohort / "clinical.csv")
    )
    assert out.returncode == 2 and "[bad_config]" in out.stderr and "index_scan" in out.stderr


def test_demo_imports_the_clinical_table(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "demo",
        "--dir",
        str(tmp_path / "d"),
        "--no-dashboard",
    ]
    out = subprocess.run(
        [*cmd, "--patients", "3", "--workers", "2"],
        capture_output=True, text=True, check=False, cwd=ROOT, env=ENV,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "rows         3 read: 3 inserted" in out.stdout
    assert "linked       3 patients" in out.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT, env=ENV)
    assert "rows         3 read: 0 inserted, 0 updated, 3 unchanged" in again.stdout


def test_index_after_import_relinks_new_scans(tmp_path: Path) -> None:
    """A scan indexed after the clinical import is linked without a second import."""
    import shutil

    from engine.store import Store
    from engine.synth.cohort import SynthRequest, synthesize

    cohort = tmp_path / "c"
    synthesize(SynthRequest(cohort, patients=2, sites="dev", seed=4, resolution="low"))
    archive, db = tmp_path / "archive", tmp_path / "db.duckdb"
    first, second = sorted((cohort / "archive").iterdir())
    shutil.copytree(first, archive / first.name)
    run = [sys.executable, "-m", "engine.cli"]
    assert subprocess.run([*run, "index", str(archive), "--db", str(db), "--no-progress"],
                          capture_output=True, check=False).returncode == 0  # fmt: skip
    clinical = str(cohort / "clinical.csv")
    imported = subprocess.run([*run, "import-clinical", clinical, "--db", str(db)],
                              capture_output=True, text=True, check=False)  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    status = Store(db).query("SELECT status, count(*) AS n FROM clinical_links GROUP BY status")
    assert dict(zip(status["status"], status["n"], strict=True)) == {"linked": 1, "no_scan": 1}
    shutil.copytree(second, archive / second.name)
    indexed = subprocess.run([*run, "index", str(archive), "--db", str(db), "--no-progress"],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert indexed.returncode == 0 and "relinked: 2 patients linked" in indexed.stdout
    status = Store(db).query("SELECT status, count(*) AS n FROM clinical_links GROUP BY status")
    assert dict(zip(status["status"], status["n"], strict=True)) == {"linked": 2}
