"""bench/anatomy_ab.py: two checkouts timed in turn on the same series, and its refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.synth.cohort import SynthRequest, synthesize

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "anatomy_ab.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


def test_a_checkout_against_itself_gives_the_same_outputs_and_a_ratio_per_series(
    tmp_path: Path,
) -> None:
    cohort = tmp_path / "c"
    synthesize(SynthRequest(out=cohort, patients=1, sites="dev", seed=3, resolution="low"))
    done = _run("--old", str(ROOT), "--cohort", str(cohort), "--rounds", "2", "--core", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "2 alternating rounds" in lines[0] and "SYNTHETIC" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("dev: segment old ")
    assert "ratio" in lines[1] and "OUTPUTS DIFFER" not in lines[1]


def test_what_is_not_a_checkout_or_a_cohort_is_refused_by_name(tmp_path: Path) -> None:
    done = _run("--old", str(tmp_path))
    assert done.returncode == 2 and f"--old {tmp_path}: not a vfrisk checkout" in done.stderr
    done = _run("--old", str(ROOT), "--rounds", "0")
    assert done.returncode == 2 and "--rounds 0: at least 1" in done.stderr
    done = _run("--old", str(ROOT), "--core", "4096")
    assert done.returncode == 2 and "--core 4096: not one of" in done.stderr
    done = _run("--old", str(ROOT), "--cohort", str(tmp_path))
    assert done.returncode == 2 and "not a `vfrisk synth` folder" in done.stderr
