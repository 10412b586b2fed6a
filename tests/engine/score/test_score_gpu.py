"""`vfrisk score` on CUDA (bf16) stores the predictions of the CPU run within tolerance."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.config import load_config
from engine.score import ScoreRequest, score_archive
from engine.store import Store


@pytest.mark.gpu
def test_cuda_and_cpu_runs_store_the_same_predictions_within_bf16_tolerance(
    score_db: Path, tiny_model: Path, tmp_path: Path
) -> None:
    cpu_db = tmp_path / "cpu" / "vfrisk.duckdb"
    cpu_db.parent.mkdir()
    shutil.copy(score_db, cpu_db)
    for db, device in ((cpu_db, "cpu"), (score_db, "cuda")):
        request = ScoreRequest(db=db, model_path=tiny_model, device=device, workers=2,
                               batch_size=4, progress=False, qa_png=False)  # fmt: skip
        assert score_archive(request, load_config()).device == device
    sql = "SELECT * FROM predictions ORDER BY series_uid"
    cpu, gpu = Store(cpu_db).query(sql), Store(score_db).query(sql)
    assert list(cpu["series_uid"]) == list(gpu["series_uid"]) and len(cpu) > 0
    for col in ["p_fracture", *(f"risk_{t}y" for t in range(1, 6))]:
        # bf16 autocast keeps 8 mantissa bits: probabilities agree to about 1e-2
        assert (cpu[col] - gpu[col]).abs().max() < 2e-2, col
