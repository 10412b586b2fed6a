"""Training data: the input cache on a real indexed cohort, its reuse and invalidation,
failures, and the stratified batches."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.anatomy.inputs import PreprocessingSettings, load_inputs
from engine.cli import main
from engine.config import load_config
from engine.errors import VfriskError
from engine.store import Store
from engine.store.biomarker_tables import read_biomarkers
from models.config import ModelConfig
from models.data import (
    Example,
    build_cache,
    build_thick_cache,
    load_examples,
    make_batch,
    stratified_batches,
)
from models.losses import survival_labels

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "example"


def _indexed_copy(folder: Path) -> Path:
    """Copy the sample cohort, index it and import its clinical table with the CLI."""
    cohort = folder / "cohort"
    shutil.copytree(SAMPLE, cohort)
    db = folder / "vf.duckdb"
    assert main(["index", str(cohort / "archive"), "--db", str(db), "--workers", "1",
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["import-clinical", str(cohort / "clinical.csv"), "--db", str(db)]) == 0
    return db


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _indexed_copy(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def config():  # noqa: ANN201 - engine.config.Config
    return load_config()


def test_build_cache_on_sample_cohort(sample_db: Path, config, tmp_path: Path) -> None:  # noqa: ANN001
    store = Store(sample_db)
    settings = PreprocessingSettings.from_config(config)
    result = build_cache(store, config, tmp_path / "cache", workers=1)
    clinical = pd.read_csv(SAMPLE / "clinical.csv").set_index("patient_id")
    assert not result.failures
    assert (result.prepared, result.reused) == (3, 0)
    assert [e.patient_id for e in result.examples] == sorted(clinical.index)
    for ex in result.examples:
        row = clinical.loc[ex.patient_id]
        assert (ex.site, ex.prevalent_vf, ex.event) == (
            row["site"],
            int(row["prevalent_vf"]),
            int(row["event_type"]),
        )
        assert ex.followup_years == pytest.approx(row["followup_years"])
        assert ex.cache_path.is_file() and ex.content_hash
        inputs = load_inputs(ex.cache_path, settings)
        assert inputs.series_uid == ex.series_uid and inputs.level_present.any()
    with store.read() as con:
        measured = read_biomarkers(con, preprocessing_version=settings.version)
    assert sorted(b.series_uid for b in measured) == sorted(e.series_uid for e in result.examples)
    only_dev = build_cache(store, config, tmp_path / "cache", sites=["dev"])
    assert [e.site for e in only_dev.examples] == ["dev"] and only_dev.prepared == 0


def test_cache_reuse_and_invalidation(sample_db: Path, config, tmp_path: Path) -> None:  # noqa: ANN001
    store = Store(sample_db)
    cache = tmp_path / "cache"
    first = build_cache(store, config, cache)
    again = build_cache(store, config, cache)
    assert (again.prepared, again.reused) == (0, 3)
    assert [e.cache_path for e in again.examples] == [e.cache_path for e in first.examples]

    # other preprocessing: a new key, prepared again; the old files are refused by it
    settings = PreprocessingSettings.from_config(config)
    other = dataclasses.replace(settings, version="pp-test")
    rebuilt = build_cache(store, config, cache, settings=other)
    assert (rebuilt.prepared, rebuilt.reused) == (3, 0)
    with pytest.raises(VfriskError) as err:
        load_inputs(first.examples[0].cache_path, other)
    assert err.value.code == "preprocessing_mismatch"
    with pytest.raises(VfriskError):
        load_examples(rebuilt.examples, settings)

    # a series whose content changed (re-indexed with other slices): prepared again, and
    # its superseded file of the same settings removed
    uid = first.examples[0].series_uid
    with store.write() as con:
        con.execute("UPDATE series SET content_hash = 'feedbeef' WHERE series_uid = ?", [uid])
    changed = build_cache(store, config, cache)
    assert (changed.prepared, changed.reused) == (1, 2)
    new_path = next(e.cache_path for e in changed.examples if e.series_uid == uid)
    assert new_path != first.examples[0].cache_path and new_path.is_file()
    assert not first.examples[0].cache_path.exists()
    assert all(e.cache_path.exists() for e in first.examples[1:])


def _cut_off_a_file(store: Store, patient_id: str) -> str:
    """Cut the first file of the patient's index scan in half after indexing (its pixels
    cannot be decoded any more); return that series' UID."""
    with store.read() as con:
        uid, path = con.execute(
            "SELECT l.series_uid, min(i.path) FROM clinical_links l JOIN instances i "
            "USING (series_uid) WHERE l.patient_id = ? GROUP BY l.series_uid",
            [patient_id],
        ).fetchone()
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return uid


def test_bad_series_is_recorded_and_skipped(config, tmp_path: Path) -> None:  # noqa: ANN001
    db = _indexed_copy(tmp_path)
    store = Store(db)
    uid = _cut_off_a_file(store, "VFDEV000001")
    result = build_cache(store, config, tmp_path / "cache")
    assert [f.series_uid for f in result.failures] == [uid]
    assert result.failures[0].stage == "load" and result.failures[0].reason_code
    assert sorted(e.patient_id for e in result.examples) == ["VFEXTB000001", "VFEXTB000002"]


def test_thick_views_are_cached_beside_the_series_and_a_bad_one_is_named(
    config,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    db = _indexed_copy(tmp_path)
    store = Store(db)
    examples = build_cache(store, config, tmp_path / "cache").examples
    bad_uid = _cut_off_a_file(store, "VFEXTB000002")
    files, failures = build_thick_cache(store, config, tmp_path / "cache", examples, 5.0)
    assert [(f.series_uid, f.stage) for f in failures] == [(bad_uid, "load")]
    assert sorted(files) == sorted(e.series_uid for e in examples if e.series_uid != bad_uid)
    dev = next(e for e in examples if e.site == "dev")
    view = load_inputs(files[dev.series_uid])
    assert files[dev.series_uid].name.endswith(f".thick5.{dev.content_hash[:16]}.npz")
    assert view.series_uid == dev.series_uid
    assert not np.array_equal(view.bone_muscle, load_inputs(dev.cache_path).bone_muscle)
    assert dev.cache_path.is_file()  # the series' own inputs stay


def _examples(n: int, seed: int) -> list[Example]:
    rng = np.random.default_rng(seed)
    return [
        Example(
            patient_id=f"P{i:03d}",
            series_uid=f"1.2.{i}",
            site="dev",
            cache_path=Path(f"/nowhere/{i}.npz"),
            prevalent_vf=int(rng.random() < 0.25),
            followup_years=float(rng.uniform(0.2, 7)),
            event=int(rng.choice([0, 1, 2], p=[0.7, 0.2, 0.1])),
        )  # fmt: skip
        for i in range(n)
    ]


def test_stratified_batches_cover_the_epoch_and_mix_the_strata() -> None:
    examples = _examples(160, seed=1)
    batches = stratified_batches(examples, 16, 5, np.random.default_rng(7))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(160))
    prevalent = np.array([e.prevalent_vf for e in examples])
    incident = np.array([e.event == 1 and e.followup_years < 5 for e in examples])
    for batch in batches:
        # systematic sampling: each stratum's count per batch is within 1 of its share
        for flag in (prevalent, incident):
            share = flag.mean() * len(batch)
            assert abs(flag[batch].sum() - share) <= 2
    again = stratified_batches(examples, 16, 5, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = stratified_batches(examples, 16, 5, np.random.default_rng(8))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=True))


def test_load_examples_keeps_one_variant_and_make_batch_labels(
    tmp_path: Path, make_inputs: Callable, tiny_config: ModelConfig
) -> None:
    from engine.anatomy.inputs import save_inputs

    examples = []
    for i, ex in enumerate(_examples(6, seed=3)):
        path = save_inputs(make_inputs(i, shape=(12, 32, 48)), tmp_path)
        examples.append(dataclasses.replace(ex, series_uid=f"1.2.3.{i}", cache_path=path))
    loaded = load_examples(examples)
    assert loaded.features is None
    both = loaded.inputs
    bone_config = dataclasses.replace(tiny_config, input_variant="bone")
    bone_only = load_examples(examples, config=bone_config)
    assert bone_only.features is None  # no intensity branch: nothing measured
    for a, b in zip(both, bone_only.inputs, strict=True):
        assert np.array_equal(a.bone, b.bone)
        assert b.bone_muscle.strides == (0,) * 4 and not b.bone_muscle.any()
    examples[2] = dataclasses.replace(examples[2], prevalent_vf=None)
    tb = make_batch(examples, both, np.array([0, 2, 5]), tiny_config, np.random.default_rng(0))
    chosen = [examples[i] for i in (0, 2, 5)]
    expected = survival_labels(
        [e.followup_years for e in chosen], [e.event for e in chosen], tiny_config.max_followup
    )
    assert np.array_equal(tb.y_seq.numpy(), expected.y_seq)
    assert np.array_equal(tb.mask.numpy(), expected.mask)
    assert tb.prevalent_known.tolist() == [True, False, True]
    assert tb.prevalent.tolist() == [
        float(chosen[0].prevalent_vf),
        0.0,
        float(chosen[2].prevalent_vf),
    ]
    assert tuple(tb.batch.images.shape[:3]) == (3, 5, tiny_config.triplets_per_level)
