"""engine.prepare: jobs from the database, one series or many in worker processes."""

from __future__ import annotations

import dataclasses
import multiprocessing
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from engine.anatomy import PreprocessingSettings
from engine.config import load_config
from engine.errors import VfriskError
from engine.index import IndexRequest, index_archive, rules_from_config
from engine.load import Volume, load_volume
from engine.prepare import (
    PreparedSeries,
    PrepareFailure,
    PreparePool,
    SeriesJob,
    jobs_for,
    prepare_job,
    prepare_many,
    qa_png_path,
    thick_view,
)
from engine.store import Store
from engine.synth.cohort import main_series

EXAMPLE = Path(__file__).parents[2] / "sample_data" / "example"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, list[str]]:
    """The committed 3-patient SYNTHETIC example archive, indexed."""
    config = load_config()
    store = Store(tmp_path_factory.mktemp("prepare") / "db.duckdb")
    index_archive(store, IndexRequest(archive=EXAMPLE / "archive", workers=1, progress=False),
                  rules_from_config(config), config_hash=config.hash())  # fmt: skip
    return store, sorted(main_series(EXAMPLE)["series_uid"])


def _args() -> tuple[dict, PreprocessingSettings]:
    config = load_config()
    return dict(config["loading"]), PreprocessingSettings.from_config(config)


def test_jobs_come_in_the_order_asked_with_files_patient_and_hash(indexed) -> None:
    store, uids = indexed
    with store.read() as con:
        jobs = jobs_for(con, [uids[2], "1.2.3.unknown", uids[0]])
        series = dict(con.execute("SELECT series_uid, content_hash FROM series").fetchall())
        n_files = dict(con.execute("SELECT series_uid, count(*) FROM instances GROUP BY ALL")
                       .fetchall())  # fmt: skip
    assert [j.series_uid for j in jobs] == [uids[2], "1.2.3.unknown", uids[0]]
    assert jobs[1].paths == () and jobs[1].content_hash == ""
    for job in (jobs[0], jobs[2]):
        assert len(job.paths) == n_files[job.series_uid]
        assert job.content_hash == series[job.series_uid] and job.patient_id
    failure = prepare_job(jobs[1], *_args())
    assert isinstance(failure, PrepareFailure)
    assert (failure.stage, failure.reason_code) == ("load", "series_not_found")


def test_a_truncated_file_fails_its_series_at_load_with_the_reason(indexed, tmp_path) -> None:
    store, uids = indexed
    with store.read() as con:
        job = jobs_for(con, [uids[0]])[0]
    copies = []
    for i, p in enumerate(job.paths):
        copies.append(shutil.copy(p, tmp_path / f"{i:04d}.dcm"))
    Path(copies[3]).write_bytes(Path(copies[3]).read_bytes()[:1500])
    result = prepare_job(SeriesJob(job.series_uid, tuple(map(str, copies))), *_args())
    assert isinstance(result, PrepareFailure)
    assert (result.stage, result.reason_code) == ("load", "truncated")


@pytest.mark.slow  # 20-80 s on 2 busy cores: two passes over 3 series plus worker start-up
def test_many_in_workers_equals_one_by_one_and_the_window_bounds_what_is_pulled(
    indexed, tmp_path: Path
) -> None:
    store, uids = indexed
    with store.read() as con:
        jobs = jobs_for(con, uids)
    serial = {r.series_uid: r for r in prepare_many(jobs, *_args(), qa_dir=tmp_path)}
    pulled = []

    def source():
        for job in jobs:
            pulled.append(job.series_uid)
            yield job

    parallel = {}
    for taken, r in enumerate(prepare_many(source(), *_args(), workers=2, window=1), start=1):
        assert len(pulled) <= taken + 1  # at most `window` ahead of the consumer
        parallel[r.series_uid] = r
    assert set(serial) == set(parallel) == set(uids)
    for uid in uids:
        a, b = serial[uid], parallel[uid]
        assert isinstance(a, PreparedSeries) and isinstance(b, PreparedSeries)
        assert np.array_equal(a.inputs.bone_muscle, b.inputs.bone_muscle)
        assert repr(a.biomarkers) == repr(b.biomarkers) and a.qa_flags == b.qa_flags  # NaN-safe
        assert a.qa_png == qa_png_path(tmp_path, uid) and a.qa_png.is_file()
        assert {"load", "anatomy", "inputs", "biomarkers", "qa"} <= set(a.seconds)
        # the inputs carry the bodies' trabecular HU as the biomarkers measured it
        measured = {lb.level: lb.trabecular_hu for lb in a.biomarkers.levels}
        expected = np.array([measured[lv] for lv in a.inputs.levels], np.float32)
        np.testing.assert_array_equal(a.inputs.trabecular_hu, expected)
        np.testing.assert_array_equal(b.inputs.trabecular_hu, expected)
        assert np.isfinite(expected[a.inputs.level_present]).any()
        # ... and their height loss, the largest of the three ratios (at least 0)
        losses = {
            lb.level: max(0.0, lb.wedge_loss, lb.biconcave_loss, lb.crush_loss)
            for lb in a.biomarkers.levels
            if lb.present and np.isfinite(lb.wedge_loss)
        }
        assert losses
        for i, lv in enumerate(a.inputs.levels):
            got = a.inputs.height_loss[i]
            assert got == pytest.approx(losses[lv]) if lv in losses else np.isnan(got)
        np.testing.assert_array_equal(b.inputs.height_loss, a.inputs.height_loss)


def test_a_pool_starts_its_workers_at_once_and_hands_out_jobs_before_it_is_iterated(
    indexed,
) -> None:
    store, uids = indexed
    with store.read() as con:
        jobs = jobs_for(con, uids)
    pulled = []

    def source():
        for job in jobs:
            pulled.append(job.series_uid)
            yield job

    before = set(multiprocessing.active_children())
    with PreparePool(*_args(), workers=2) as pool:
        # started by the constructor (from a thread, so it returns at once), before any
        # job: they start while the caller works
        deadline = time.monotonic() + 60
        while len(set(multiprocessing.active_children()) - before) < 2:
            assert time.monotonic() < deadline, "the pool did not start its 2 workers"
            time.sleep(0.05)
        assert not pulled
        pool.prepare(source(), window=2)
        assert pulled == uids[:2]  # submitted before the first result is asked for


def test_the_anatomy_device_reaches_the_muscle_network_in_process_and_in_workers(
    indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import engine.anatomy._muscles as muscles

    store, uids = indexed
    with store.read() as con:
        jobs = jobs_for(con, uids[:1])
    seen = []
    real = muscles._net

    def spy(path: str, device: str):
        seen.append(device)
        return real(path, device)

    monkeypatch.setattr(muscles, "_net", spy)
    (done,) = prepare_many(jobs, *_args(), anatomy_device="cpu")
    assert isinstance(done, PreparedSeries) and seen == ["cpu"]
    if torch.cuda.is_available():
        return
    # in worker processes (no spy there): asking for CUDA where there is none fails the
    # series at the anatomy stage, so the option travelled with the job
    (failed,) = prepare_many(jobs, *_args(), workers=2, anatomy_device="cuda")
    assert isinstance(failed, PrepareFailure) and failed.stage == "anatomy"
    assert "cuda" in failed.error.lower()


def test_score_config_names_the_anatomy_device() -> None:
    import torch

    from engine.errors import VfriskError
    from engine.score.model import anatomy_device

    assert anatomy_device({"score": {"anatomy_device": "auto"}}) is None
    assert anatomy_device({"score": {"anatomy_device": "cpu"}}) == "cpu"
    assert anatomy_device(load_config()) == "cpu"  # the default (measured on an H100 machine)
    with pytest.raises(VfriskError) as err:
        anatomy_device({"score": {"anatomy_device": "gpu"}})
    assert err.value.code == "bad_config" and "anatomy_device" in err.value.message
    if not torch.cuda.is_available():
        with pytest.raises(VfriskError, match="no CUDA device"):
            anatomy_device({"score": {"anatomy_device": "cuda"}})


def test_a_thick_view_job_prepares_the_series_as_thick_slabs(indexed) -> None:
    store, uids = indexed
    with store.read() as con:
        job = jobs_for(con, [uids[0]])[0]
    loading, settings = _args()
    native = prepare_job(job, loading, settings)
    same = prepare_job(dataclasses.replace(job, thick_mm=3.0), loading, settings)  # < 2 slices
    thick = prepare_job(dataclasses.replace(job, thick_mm=5.0), loading, settings)
    assert all(isinstance(r, PreparedSeries) for r in (native, same, thick))
    np.testing.assert_array_equal(same.inputs.bone_muscle, native.inputs.bone_muscle)
    assert thick.inputs.level_present.sum() >= native.inputs.level_present.sum() - 1
    assert not np.array_equal(thick.inputs.bone_muscle, native.inputs.bone_muscle)
    # the same levels, read from 5 mm slabs: the trabecular HU agrees within a few HU
    both = native.inputs.level_present & thick.inputs.level_present
    diff = np.abs(thick.inputs.trabecular_hu[both] - native.inputs.trabecular_hu[both])
    assert both.any() and np.nanmax(diff) < 15

    volume = load_volume(list(job.paths), **loading)
    view = thick_view(volume, 5.0, job.series_uid)
    assert view.grid.spacing_zyx[0] == pytest.approx(2 * volume.grid.spacing_zyx[0])
    phase = zlib.crc32(job.series_uid.encode()) % 2
    np.testing.assert_allclose(view.hu[0], volume.hu[phase : phase + 2].mean(axis=0), atol=1e-3)
    assert thick_view(volume, 3.0, job.series_uid) is volume
    short = Volume(
        volume.hu[:3].copy(),
        dataclasses.replace(volume.grid, shape_zyx=(3, *volume.hu.shape[1:])),
        (),
        "x",
    )
    with pytest.raises(VfriskError) as err:
        thick_view(short, 5.0, job.series_uid)
    assert err.value.code == "too_few_slices" and job.series_uid in err.value.message
