"""Shared builders of the scoring tests: a small indexed archive with bad series, a tiny
model checkpoint, and a comparison of every table scoring writes."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from engine.clinical import ImportRequest, import_clinical, settings_from_config
from engine.config import load_config
from engine.index import IndexRequest, index_archive, rules_from_config
from engine.store import Store
from engine.synth.cohort import SynthRequest, main_series, series_files, synthesize

#: Columns left out of comparisons between runs: when and by which run a row was written.
VOLATILE = {"run_id", "scored_at", "measured_at", "failed_at", "prepared_at", "created_at"}
#: Tables `vfrisk score` writes, with their key columns (the comparison's sort order).
SCORE_TABLES = {
    "predictions": ("series_uid", "model_id"),
    "prediction_horizons": ("series_uid", "model_id", "year"),
    "failures": ("series_uid", "model_id"),
    "biomarkers": ("series_uid", "level", "preprocessing_version"),
    "series_qa": ("series_uid", "preprocessing_version"),
    "models": ("model_id",),
}


def _no_spine_series(cohort: Path, source_uid: str) -> str:
    """Copy a series as a water phantom (0 HU everywhere) of a new patient and study."""
    out = cohort / "archive" / "NOSPINE"
    out.mkdir()
    series_uid, study_uid = generate_uid(), generate_uid()
    for i, path in enumerate(series_files(cohort, source_uid)):
        ds = pydicom.dcmread(path)
        ds.decompress() if ds.file_meta.TransferSyntaxUID.is_compressed else None
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        stored = np.full((ds.Rows, ds.Columns), round(-intercept / slope))
        ds.PixelData = stored.astype(ds.pixel_array.dtype).tobytes()
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, study_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = "NOSPINE01"
        ds.save_as(out / f"IM{i:04d}.dcm")
    return series_uid


@pytest.fixture(scope="session")
def score_cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """An indexed SYNTHETIC archive: 4 patients (dev site, low resolution) + 2 bad series.

    Bad series: ``no_spine`` (a water phantom, fails at anatomy) and ``truncated`` (a
    patient's series with one file cut short after indexing, fails at load). The template
    database is copied by :func:`score_db`; the archive is shared, read-only.
    """
    root = tmp_path_factory.mktemp("score_cohort")
    cohort = root / "cohort"
    synthesize(SynthRequest(out=cohort, patients=4, sites="dev:1", seed=11, resolution="low"))
    main = main_series(cohort).sort_values("patient_id")
    uids = list(main["series_uid"])
    no_spine = _no_spine_series(cohort, uids[0])
    config = load_config()
    db = root / "template.duckdb"
    store = Store(db)
    index_archive(
        store, IndexRequest(archive=cohort / "archive", workers=1, progress=False),
        rules_from_config(config), config_hash=config.hash(),
    )  # fmt: skip
    import_clinical(
        store, ImportRequest(file=cohort / "clinical.csv"), settings_from_config(config),
        config_hash=config.hash(),
    )  # fmt: skip
    truncated = uids[-1]
    victim = series_files(cohort, truncated)[len(series_files(cohort, truncated)) // 2]
    victim.write_bytes(victim.read_bytes()[:2000])  # cut after indexing: fails at load
    selected = set(store.query("SELECT series_uid FROM series WHERE selected")["series_uid"])
    assert {*uids, no_spine} <= selected
    return {
        "db": db, "cohort": cohort, "good": uids[:-1], "truncated": truncated,
        "no_spine": no_spine, "selected": sorted(selected),
    }  # fmt: skip


@pytest.fixture
def score_db(score_cohort: dict[str, object], tmp_path: Path) -> Path:
    """A fresh copy of the template database (nothing scored yet)."""
    db = tmp_path / "vfrisk.duckdb"
    shutil.copy(score_cohort["db"], db)
    return db


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random, tiny multitask checkpoint (seeded) for the engine's preprocessing."""
    import torch

    from engine.config import load_config
    from models.checkpoint import save_checkpoint
    from models.config import ModelConfig
    from models.network import FractureNet

    torch.manual_seed(0)
    config = ModelConfig(
        width=8, depth=(1, 1, 1), triplets_per_level=2, triplet_spacing=3, train_window=8,
        dropout=0.0, layer_scale_init=0.1, max_followup=7,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    version = load_config()["preprocessing"]["version"]
    save_checkpoint(FractureNet(config), path, preprocessing_version=version)
    return path


def read_tables(db: Path) -> dict[str, list[dict[str, object]]]:
    """Every row of the scoring tables, without the volatile columns, in key order."""
    out = {}
    with Store(db).read() as con:
        for table, key in SCORE_TABLES.items():
            cur = con.execute(f"SELECT * FROM {table} ORDER BY {', '.join(key)}")
            names = [d[0] for d in cur.description]
            # the QA picture lies beside each database: compare its name only
            out[table] = [
                {
                    n: Path(v).name if n == "qa_png" and v else v
                    for n, v in zip(names, row, strict=True)
                    if n not in VOLATILE
                }
                for row in cur.fetchall()
            ]
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        # CPU kernels may round differently with another batch composition: 1e-6 absolute.
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6
    return a == b


@pytest.fixture
def assert_same_tables() -> Callable[[Path, Path], None]:
    """Assert two databases hold the same scoring rows (volatile columns aside)."""

    def check(db_a: Path, db_b: Path) -> None:
        a, b = read_tables(db_a), read_tables(db_b)
        for table in SCORE_TABLES:
            assert len(a[table]) == len(b[table]), f"{table}: {len(a[table])} vs {len(b[table])}"
            for row_a, row_b in zip(a[table], b[table], strict=True):
                bad = [k for k in row_a if not _same(row_a[k], row_b[k])]
                assert not bad, f"{table} differs in {bad}: {row_a} vs {row_b}"

    return check
