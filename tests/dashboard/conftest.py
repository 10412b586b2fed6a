"""A real scored database of the committed sample cohort, built once per test session.

``vfrisk index`` and ``vfrisk import-clinical`` (through ``engine.cli.main``) on
``sample_data/example``; the selected series prepared by ``engine.prepare.prepare_many``
(QA pictures beside the database); a tiny randomly initialised FractureNet saved as a
checkpoint, loaded back and run by ``models.inference.predict``; everything written
through ``engine.store.score_tables`` as ``vfrisk score`` writes it, plus one real
failure (a scout series prepared and refused); then ``vfrisk report``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import load_config
from engine.store import Store

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_data" / "example"


@dataclass(frozen=True)
class ScoredDb:
    """The session's database and what the fixture put into it."""

    db: Path
    model_id: str


def _score(db: Path, tmp: Path) -> str:
    import torch

    from engine.anatomy.inputs import PreprocessingSettings
    from engine.prepare import PreparedSeries, jobs_for, prepare_many
    from engine.score.pipeline import qa_dir_for
    from engine.store import score_tables
    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.config import ModelConfig
    from models.inference import predict
    from models.network import FractureNet

    config = load_config(None)
    settings = PreprocessingSettings.from_config(config)
    store = Store(db)
    with store.read() as con:
        selected = [
            r[0]
            for r in con.execute(
                "SELECT series_uid FROM series WHERE selected ORDER BY series_uid"
            ).fetchall()
        ]
        scout = con.execute(
            "SELECT series_uid FROM series WHERE reason_code = 'localizer' ORDER BY series_uid "
            "LIMIT 1"
        ).fetchone()[0]
        jobs = jobs_for(con, [*selected, scout])
    qa_dir = qa_dir_for(db)
    results = list(prepare_many(jobs, dict(config["loading"]), settings, workers=1, qa_dir=qa_dir))
    prepared = [r for r in results if isinstance(r, PreparedSeries)]
    failed = [r for r in results if not isinstance(r, PreparedSeries)]
    assert {p.series_uid for p in prepared} == set(selected)
    assert [f.series_uid for f in failed] == [scout]

    torch.manual_seed(0)
    net = FractureNet(ModelConfig(width=8, depth=(1, 1, 1), triplets_per_level=2,
                                  triplet_spacing=3, train_window=8, dropout=0.0,
                                  layer_scale_init=0.1))  # fmt: skip
    ckpt = tmp / "tiny.pt"
    model_id = save_checkpoint(net, ckpt, preprocessing_version=settings.version)
    loaded = load_checkpoint(ckpt, preprocessing_version=settings.version)
    preds = predict(loaded.model, [p.inputs for p in prepared], device="cpu")
    with store.read() as con:
        meta = {
            uid: (pid, h)
            for uid, pid, h in con.execute(
                "SELECT series_uid, patient_id, content_hash FROM series"
            ).fetchall()
        }
    with store.write() as con:
        score_tables.register_model(
            con, model_id=model_id, name="tiny random test net", path=str(ckpt),
            sha256="", preprocessing_version=settings.version, card=None,
        )  # fmt: skip
        score_tables.write_batch(
            con,
            model_id=model_id,
            preprocessing_version=settings.version,
            run_id="fixture",
            predictions=[
                score_tables.PredictionRow(p.series_uid, meta[p.series_uid][0], p.p_fracture,
                                           p.risk, meta[p.series_uid][1])
                for p in preds
            ],
            biomarkers=[p.biomarkers for p in prepared],
            qa=[
                score_tables.QaRow(p.series_uid, p.segmentation_source, p.qa_flags,
                                   str(p.qa_png) if p.qa_png else None)
                for p in prepared
            ],
            failures=[
                score_tables.FailureRow(f.series_uid, f.stage, f.reason_code, f.error,
                                        meta[f.series_uid][1])
                for f in failed
            ],
        )  # fmt: skip
    return model_id


@pytest.fixture(scope="session")
def scored_db(tmp_path_factory: pytest.TempPathFactory) -> ScoredDb:
    """The sample cohort indexed, linked, scored by a tiny random model and reported."""
    tmp = tmp_path_factory.mktemp("dash")
    archive = tmp / "archive"
    shutil.copytree(SAMPLE / "archive", archive)
    db = tmp / "vfrisk.duckdb"
    log = str(tmp / "log.jsonl")
    assert main(["--log-file", log, "index", str(archive), "--db", str(db), "--workers", "1",
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["--log-file", log, "import-clinical", str(SAMPLE / "clinical.csv"),
                 "--db", str(db)]) == 0  # fmt: skip
    model_id = _score(db, tmp)
    assert main(["--log-file", log, "report", "--db", str(db)]) == 0
    return ScoredDb(db=db, model_id=model_id)


@pytest.fixture
def empty_db(tmp_path: Path) -> Path:
    """A database with the schema and no rows."""
    db = tmp_path / "empty.duckdb"
    with Store(db).write():
        pass
    return db


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clear Streamlit's data cache around a test (each test gets fresh queries)."""
    import streamlit as st

    monkeypatch.delenv("VFRISK_CONFIG", raising=False)
    st.cache_data.clear()
    yield
    st.cache_data.clear()
