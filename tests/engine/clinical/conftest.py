"""Fixtures for the clinical import tests: a generated, indexed cohort and private copies.

Helpers reach tests as fixtures (``snapshot``): test modules cannot import a conftest.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from engine.index import IndexRequest, Rules, index_archive
from engine.store import Store

COHORT_SEED = 5  # 6 patients, two per site, one selected series each


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 6-patient, 3-site low-resolution cohort (read-only: copy to modify)."""
    from engine.synth.cohort import SynthRequest, synthesize

    out = tmp_path_factory.mktemp("clinical_cohort") / "c"
    synthesize(
        SynthRequest(out, patients=6, sites="dev,ext_a,ext_b", seed=COHORT_SEED, resolution="low")
    )
    return out


@pytest.fixture(scope="session")
def indexed_db(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cohort's archive indexed once with the default rules (read-only: copy it)."""
    db = tmp_path_factory.mktemp("clinical_index") / "index.duckdb"
    index_archive(Store(db), IndexRequest(cohort / "archive", workers=2, progress=False), Rules())
    return db


@pytest.fixture
def db(indexed_db: Path, tmp_path: Path) -> Path:
    """A private copy of the indexed database that a test may write."""
    dest = tmp_path / "db" / "vfrisk.duckdb"
    dest.parent.mkdir()
    shutil.copy(indexed_db, dest)
    return dest


@pytest.fixture
def clinical(cohort: Path) -> pd.DataFrame:
    """The cohort's clinical table, every cell as text (as a hospital CSV is read)."""
    return pd.read_csv(cohort / "clinical.csv", dtype=str, keep_default_na=False)


def _snapshot(db: Path) -> dict[str, pd.DataFrame]:
    store = Store(db)
    return {
        table: store.query(f"SELECT * FROM {table} ORDER BY ALL")
        for table in ("clinical", "clinical_links", "runs", "series")
    }


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, pd.DataFrame]]:
    """Every table the import touches (and ``series``), sorted, for before/after checks."""
    return _snapshot
