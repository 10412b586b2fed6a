"""Killing `vfrisk score` (SIGKILL, also inside a write transaction) and rerunning it gives
exactly the tables of an uninterrupted run; a real reader process polling meanwhile never
errs and never sees half a batch."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config import load_config
from engine.score import ScoreRequest, score_archive
from engine.store import Store

BATCH = 2


def _cli(db: Path, model: Path, fault: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "VFRISK_FAULT": fault}
    cmd = [
        sys.executable, "-m", "engine.cli", "--log-file", str(db.with_suffix(".log")), "score",
        "--db", str(db), "--model", str(model), "--device", "cpu", "--workers", "2",
        "--batch-size", str(BATCH), "--no-progress",
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(db: Path) -> int:
    with Store(db).read() as con:
        return sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                   for t in ("predictions", "failures"))  # fmt: skip


@pytest.fixture(scope="module")
def reference_db(
    score_cohort: dict, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tables of one uninterrupted run (in this process, one worker)."""
    db = tmp_path_factory.mktemp("reference") / "vfrisk.duckdb"
    shutil.copy(score_cohort["db"], db)
    request = ScoreRequest(db=db, model_path=tiny_model, device="cpu", batch_size=BATCH,
                           workers=1, progress=False)  # fmt: skip
    summary = score_archive(request, load_config())
    assert summary.scored + summary.failed == len(score_cohort["selected"])
    return db


@pytest.mark.parametrize(
    ("fault", "committed"),
    [
        ("in_transaction:1", {0}),
        pytest.param("after_commit:2", {2 * BATCH}, marks=pytest.mark.slow),
        pytest.param("before_batch:2", {0, BATCH}, marks=pytest.mark.slow),
    ],
)
def test_rerun_after_sigkill_at_a_fault_point_completes_the_tables_exactly(
    fault: str,
    committed: set[int],
    score_db: Path,
    tiny_model: Path,
    reference_db: Path,
    assert_same_tables: Callable[[Path, Path], None],
) -> None:
    killed = _cli(score_db, tiny_model, fault)
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err
    assert _finished(score_db) in committed  # a killed transaction leaves nothing behind
    rerun = _cli(score_db, tiny_model)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert_same_tables(score_db, reference_db)
    request = ScoreRequest(db=score_db, model_path=tiny_model, device="cpu", dry_run=True)
    assert score_archive(request, load_config()).due == 0  # nothing left to do


@pytest.mark.slow
def test_rerun_after_sigkill_at_random_times_completes_the_tables_exactly(
    score_db: Path,
    tiny_model: Path,
    reference_db: Path,
    assert_same_tables: Callable[[Path, Path], None],
) -> None:
    rng = random.Random(7)
    for _ in range(2):
        run = _cli(score_db, tiny_model)
        time.sleep(rng.uniform(3.0, 8.0))  # startup ~3 s, a whole run ~10 s here
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=60)
    final = _cli(score_db, tiny_model)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert_same_tables(score_db, reference_db)


_READER = """
import json, sys, time
from pathlib import Path
from engine.store import Store
db, stop, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
seen, store = [], Store(db)
try:
    while not stop.exists():
        with store.read() as con:
            pred = {r[0] for r in con.execute("SELECT series_uid FROM predictions").fetchall()}
            fail = con.execute("SELECT count(*) FROM failures").fetchone()[0]
            bio = {r[0] for r in con.execute("SELECT series_uid FROM biomarkers").fetchall()}
            qa = {r[0] for r in con.execute("SELECT series_uid FROM series_qa").fetchall()}
        seen.append({"pred": len(pred), "fail": fail, "same": pred == bio == qa})
        time.sleep(0.05)
    out.write_text(json.dumps({"seen": seen}))
except Exception as exc:
    out.write_text(json.dumps({"seen": seen, "error": repr(exc)}))
"""


def test_a_reader_process_polling_during_the_run_never_errs_nor_sees_half_a_batch(
    score_db: Path, tiny_model: Path, score_cohort: dict, tmp_path: Path
) -> None:
    stop, report = tmp_path / "stop", tmp_path / "reader.json"
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_READER), str(score_db), str(stop), str(report)]
    )
    scorer = _cli(score_db, tiny_model)
    _, err = scorer.communicate(timeout=300)
    assert scorer.returncode == 0, err
    time.sleep(0.3)
    stop.touch()
    assert reader.wait(timeout=60) == 0
    result = json.loads(report.read_text())
    assert "error" not in result, result["error"]
    seen = result["seen"]
    total = len(score_cohort["selected"])
    assert len(seen) >= 10
    for s in seen:  # whole batches only: all 3 tables agree, counts in steps of BATCH
        assert s["same"], s
        assert (s["pred"] + s["fail"]) % BATCH == 0 or s["pred"] + s["fail"] == total, s
    assert seen[-1]["pred"] + seen[-1]["fail"] == total
