"""The Ray backend (a local Ray on 2 CPUs) writes the rows the local backend writes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config import load_config
from engine.score import ScoreRequest, score_archive

pytest.importorskip("ray", reason="the optional `ray` extra (.ci/run installs it)")


@pytest.mark.slow
def test_ray_backend_gives_the_rows_of_the_local_backend(
    score_db: Path,
    tiny_model: Path,
    tmp_path: Path,
    assert_same_tables: Callable[[Path, Path], None],
) -> None:
    local_db = tmp_path / "local" / "vfrisk.duckdb"
    local_db.parent.mkdir()
    shutil.copy(score_db, local_db)
    common = dict(model_path=tiny_model, device="cpu", batch_size=2, workers=2, progress=False)
    local = score_archive(ScoreRequest(db=local_db, **common), load_config())
    ray = score_archive(ScoreRequest(db=score_db, backend="ray", **common), load_config())
    assert (ray.scored, ray.failed) == (local.scored, local.failed)
    assert ray.failures_by_reason == local.failures_by_reason
    assert_same_tables(score_db, local_db)
    again = score_archive(ScoreRequest(db=score_db, backend="ray", **common), load_config())
    assert (again.due, again.scored) == (0, 0)  # the same idempotence as the local backend
