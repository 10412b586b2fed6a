"""Fixtures of the report tests: generated cohorts loaded into real DuckDB files.

The cohort is generated tables-only (fast) with a fixed seed; selected ``series`` rows
stand in for indexed scans so the real importer links every patient; ``models`` and
``predictions`` rows stand in for `vfrisk score`: risk_t = the simulation's oracle
``oracle_full_{t}y``, p_fracture = prevalent_vf plus seeded noise.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.clinical import ClinicalSettings, ImportRequest, import_clinical
from engine.report import ReportSettings, build_report
from engine.store import Store
from engine.synth.cohort import SynthRequest, synthesize

MODEL_ID = "abc123def456"
SITES = "dev:0.4,ext_a:0.3,ext_b:0.3"
#: Fewer resamples than the default 1,000 keeps the suite quick; same code paths.
FAST = ReportSettings(n_boot=200, seed=3)


def make_cohort(out: Path, patients: int, seed: int) -> Path:
    synthesize(SynthRequest(out=out, patients=patients, sites=SITES, seed=seed, tables_only=True))
    return out


def insert_series(store: Store, clinical: pd.DataFrame) -> pd.Series:
    """One selected series per patient (its index scan); returns the series uids."""
    uids = "1.2.826.0.1." + pd.Series(range(len(clinical)), index=clinical.index).astype(str)
    rows = pd.DataFrame(
        {
            "series_uid": uids,
            "study_uid": "1.2.826.0.2." + uids.str.rsplit(".", n=1).str[-1],
            "patient_id": clinical["patient_id"],
            "study_date": pd.to_datetime(clinical["scan_date"]).dt.date,
            "eligible": True,
            "selected": True,
            "content_hash": "h",
        }
    )
    with store.write() as con:
        con.register("_s", rows)
        con.execute("INSERT INTO series BY NAME SELECT * FROM _s")
        con.unregister("_s")
    return uids


def insert_model(store: Store, uids: pd.Series, clinical: pd.DataFrame, truth: pd.DataFrame,
                 seed: int = 0) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.2, len(clinical))
    rows = pd.DataFrame(
        {
            "series_uid": uids,
            "patient_id": clinical["patient_id"],
            "model_id": MODEL_ID,
            "p_fracture": np.clip(0.2 + 0.5 * clinical["prevalent_vf"] + noise, 0.0, 1.0),
            **{f"risk_{t}y": truth[f"oracle_full_{t}y"] for t in range(1, 6)},
            "content_hash": "h",
            "run_id": "score0",
            "scored_at": dt.datetime(2025, 1, 1),
        }
    )
    with store.write() as con:
        con.execute(
            "INSERT INTO models VALUES (?, 'oracle', '/weights/oracle.pt', ?, 'pp1', ?, ?)",
            [MODEL_ID, MODEL_ID + "0" * 52, '{"synthetic": true, "intended_use": "tests"}',
             dt.datetime(2025, 1, 1)],
        )  # fmt: skip
        con.register("_p", rows)
        con.execute("INSERT INTO predictions BY NAME SELECT * FROM _p")
        con.unregister("_p")


def build_db(folder: Path, patients: int, seed: int, *, scans: bool, model: bool) -> Path:
    cohort = make_cohort(folder / "cohort", patients, seed)
    clinical = pd.read_csv(cohort / "clinical.csv")
    truth = pd.read_csv(cohort / "truth" / "patients.csv")
    assert (clinical["patient_id"] == truth["patient_id"]).all()
    store = Store(folder / "vfrisk.duckdb")
    uids = insert_series(store, clinical) if scans else None
    if not scans:
        with store.write():
            pass  # an empty database, as `vfrisk index` of an empty archive leaves it
    import_clinical(store, ImportRequest(cohort / "clinical.csv"), ClinicalSettings())
    if model:
        insert_model(store, uids, clinical, truth)
    return folder / "vfrisk.duckdb"


@pytest.fixture(scope="session")
def scored_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 patients, 3 sites, seed 11, every patient scanned and scored by the oracle."""
    return build_db(tmp_path_factory.mktemp("scored"), 3000, 11, scans=True, model=True)


@pytest.fixture(scope="session")
def scored_report(scored_db: Path):  # noqa: ANN201 - engine.report.Report
    return build_report(Store(scored_db), FAST, run_id="fixture_run")
