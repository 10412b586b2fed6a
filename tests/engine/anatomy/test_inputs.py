"""Model inputs: shapes and dtypes from the config, masking, missing levels, intensity, cache."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from engine.anatomy.inputs import (
    PreprocessingSettings,
    build_inputs,
    cache_path,
    level_patch,
    load_inputs,
    save_inputs,
)
from engine.anatomy.labels import Segmentation
from engine.anatomy.masks import load_masks
from engine.config import load_config
from engine.errors import VfriskError
from engine.load import load_volume
from engine.synth.cohort import SynthRequest, synthesize

SEED = 5


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    root = tmp_path_factory.mktemp("inputs")
    out = root / "cohort"
    synthesize(SynthRequest(out, patients=3, sites="dev:1,ext_a:1,ext_b:1", seed=SEED))
    series = pd.read_csv(out / "truth" / "series.csv")
    soft = series[(series["kind"] == "axial") & series["description"].str.contains("SOFT")]
    result = []
    for _, row in soft.iterrows():
        files = [p for p in (out / "archive" / row["folder"]).iterdir() if p.is_file()]
        if len(files) != row["n_files"]:
            files = [
                p for p in files
                if pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID
                == row["series_uid"]
            ]  # fmt: skip
        vol = load_volume(files)
        shutil.copy(out / "truth" / row["patient_id"] / "segmentation.nii.gz",
                    root / f"{row['series_uid']}.nii.gz")  # fmt: skip
        result.append((row["series_uid"], vol, load_masks(root, row["series_uid"], vol.grid)))
    return result


@pytest.fixture(scope="module")
def settings() -> PreprocessingSettings:
    return PreprocessingSettings.from_config(load_config())


def test_inputs_have_the_configured_shapes_and_dtypes(cases: list[tuple], settings) -> None:
    for uid, vol, seg in cases:
        inputs = build_inputs(vol.hu, seg, uid, settings)
        assert inputs.bone.shape == (5, 32, 64, 112) == inputs.bone_muscle.shape
        assert inputs.bone.dtype == np.float16 and inputs.level_present.dtype == bool
        assert inputs.level_present.tolist() == [lv in seg.levels for lv in inputs.levels]
        assert float(inputs.bone.min()) >= 0.0 and float(inputs.bone_muscle.max()) <= 1.0
        assert inputs.spacing_zyx_mm == pytest.approx((2.25, 2.0, 2.0))
    # sizes come from the config, not constants
    small = replace(settings, crop_zyx=(12, 64, 96), network_zyx=(16, 32, 48), dtype="uint8")
    uid, vol, seg = cases[0]
    inputs = build_inputs(vol.hu, seg, uid, small)
    assert inputs.bone.shape == (5, 16, 32, 48) and inputs.bone.dtype == np.uint8


def test_bone_is_zero_outside_the_body_and_bone_muscle_outside_body_and_muscle(
    cases: list[tuple], settings
) -> None:
    for uid, vol, seg in cases:
        inputs = build_inputs(vol.hu, seg, uid, settings)
        for row, level in enumerate(inputs.levels):
            patch = level_patch(vol.hu, seg, level, settings)
            if patch is None:
                continue
            bone = inputs.bone[row].astype(np.float32)
            both = inputs.bone_muscle[row].astype(np.float32)
            assert not bone[~patch.body].any()
            assert not both[~(patch.body | patch.muscle)].any()
            assert patch.body.sum() > 500 and patch.muscle.sum() > 500
            assert np.array_equal(bone[patch.body], patch.image[patch.body].astype(np.float16))
            assert bone[patch.body].mean() > 0.15  # bone in the -200..1000 HU window


def test_missing_levels_are_masked_not_zero_filled(cases: list[tuple], settings) -> None:
    uid, vol, seg = cases[0]
    labels = seg.labels.copy()
    labels[labels == 1] = 0  # no T12
    no_t12 = Segmentation(labels, seg.grid, seg.levels[1:], ("missing_T12",), seg.source)
    inputs = build_inputs(vol.hu, no_t12, uid, settings)
    assert inputs.level_present.tolist() == [False, True, True, True, True]
    assert not inputs.bone[0].any() and not inputs.bone_muscle[0].any()
    assert np.isnan(inputs.centres_xyz[0]).all()
    with pytest.raises(ValueError):
        replace(inputs, level_present=np.zeros(5, dtype=bool))


def test_inputs_are_deterministic(cases: list[tuple], settings) -> None:
    uid, vol, seg = cases[1]
    a, b = build_inputs(vol.hu, seg, uid, settings), build_inputs(vol.hu, seg, uid, settings)
    assert np.array_equal(a.bone, b.bone) and np.array_equal(a.bone_muscle, b.bone_muscle)


def test_fixed_window_keeps_absolute_hu_and_study_option_rescales_per_patch(
    cases: list[tuple], settings
) -> None:
    uid, vol, seg = cases[0]
    denser = vol.hu.copy()
    denser[seg.labels == 4] += 100.0  # a denser L3 body
    base = level_patch(vol.hu, seg, "L3", settings)
    dense = level_patch(denser, seg, "L3", settings)
    inner = base.body
    # fixed window: +100 HU = +100/1200 of the -200..1000 window inside the body
    gain = float((dense.image[inner] - base.image[inner]).mean())
    assert gain == pytest.approx(100.0 / 1200.0, abs=0.01)
    # study option: clip to [0, 1000] then min-max per patch, so any linear change of HU
    # that keeps 0 (air outside the scan) and stays in [0, 1000] gives the same patch
    study = replace(settings, intensity="study_minmax")
    clipped = np.clip(vol.hu, 0.0, 1000.0)
    squeezed = (0.5 * clipped).astype(np.float32)
    a = level_patch(clipped, seg, "L3", study)
    b = level_patch(squeezed, seg, "L3", study)
    assert float(a.image.min()) == 0.0
    assert np.allclose(a.image, b.image, atol=1e-5)
    fixed_a = level_patch(clipped, seg, "L3", settings)
    fixed_b = level_patch(squeezed, seg, "L3", settings)
    assert not np.allclose(fixed_a.image, fixed_b.image, atol=1e-2)


def test_cache_round_trip_and_version_mismatch_refused(
    cases: list[tuple], settings, tmp_path: Path
) -> None:
    uid, vol, seg = cases[2]
    inputs = build_inputs(vol.hu, seg, uid, settings)
    assert np.isnan(inputs.trabecular_hu).all()  # until the biomarkers are measured
    trabecular = np.where(inputs.level_present, 150.0 + np.arange(5), np.nan).astype(np.float32)
    assert np.isnan(inputs.height_loss).all()
    loss = np.where(inputs.level_present, 0.05 * np.arange(5), np.nan).astype(np.float32)
    inputs = replace(inputs, trabecular_hu=trabecular, height_loss=loss)
    path = save_inputs(inputs, tmp_path)
    assert path == cache_path(tmp_path, uid, settings.version)
    again = load_inputs(path, settings)
    assert np.array_equal(again.bone, inputs.bone)
    assert np.array_equal(again.level_present, inputs.level_present)
    assert again.series_uid == uid and again.preprocessing_version == settings.version
    # the canal readings (the model's HU reference) and the window travel with the file
    assert np.isfinite(inputs.canal_hu[inputs.level_present]).any()
    np.testing.assert_array_equal(again.canal_hu, inputs.canal_hu)
    np.testing.assert_array_equal(again.trabecular_hu, trabecular)
    np.testing.assert_array_equal(again.height_loss, loss)
    assert again.hu_window == settings.hu_window == inputs.hu_window
    with pytest.raises(VfriskError) as err:
        load_inputs(path, replace(settings, intensity="study_minmax"))
    assert err.value.code == "preprocessing_mismatch"
    # a file of an earlier format (no canal reading): refused by version, not a KeyError,
    # and read without settings as "not measured"
    old = tmp_path / "old.npz"
    meta = {"series_uid": uid, "preprocessing_version": "pp4", "settings_digest": "x",
            "levels": list(inputs.levels), "spacing_zyx_mm": list(inputs.spacing_zyx_mm),
            "intensity": inputs.intensity}  # fmt: skip
    np.savez_compressed(old, meta=np.array(json.dumps(meta)), bone=inputs.bone,
                        bone_muscle=inputs.bone_muscle, level_present=inputs.level_present,
                        centres_xyz=inputs.centres_xyz)  # fmt: skip
    with pytest.raises(VfriskError) as err:
        load_inputs(old, settings)
    assert err.value.code == "preprocessing_mismatch" and "pp4" in err.value.message
    legacy = load_inputs(old)
    assert np.isnan(legacy.canal_hu).all() and legacy.hu_window is None
    assert np.isnan(legacy.trabecular_hu).all() and np.isnan(legacy.height_loss).all()
    with pytest.raises(ValueError, match="trabecular_hu must have shape"):
        replace(inputs, trabecular_hu=np.zeros(3, np.float32))


def _resample_whole_axes(data, scale, offset, shape, order, cval):
    """The resampling of ``_resample`` one whole axis at a time (its implementation before
    issue 7): the slow, obviously correct version it must equal bit for bit."""
    from engine.anatomy.inputs import _axis_map

    maps = [_axis_map(n, m, float(s), float(o), order)
            for n, m, s, o in zip(data.shape, shape, scale, offset, strict=True)]  # fmt: skip
    lo = [int(i0.min()) for i0, _, _ in maps]
    hi = [min(n, int(i0.max()) + 1 + order) for n, (i0, _, _) in zip(data.shape, maps, strict=True)]
    out = data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    for axis, (i0, w, _) in enumerate(maps):
        i0 = i0 - lo[axis]
        if w is None:
            out = np.take(out, i0, axis=axis)
            continue
        i1 = np.minimum(i0 + 1, out.shape[axis] - 1)
        wt = w.reshape([-1 if a == axis else 1 for a in range(3)])
        out = np.take(out, i0, axis=axis) * (1.0 - wt) + np.take(out, i1, axis=axis) * wt
    inside = maps[0][2][:, None, None] & maps[1][2][None, :, None] & maps[2][2][None, None, :]
    out = out.astype(data.dtype, copy=False)
    return out if inside.all() else np.where(inside, out, np.asarray(cval, dtype=data.dtype))


#: (scale, offset) pairs: a crop-like zoom reaching past the edges, a 2x downsizing with
#: centres aligned, and a shrink-and-shift entirely inside.
_WARPS = [
    ((2.5, 1.4, 1.4), (-6.0, 3.3, -9.7)),
    ((0.75, 2.0, 2.0), (-0.125, 0.5, 0.5)),
    ((1.3, 0.7, 1.1), (2.2, 4.9, 0.3)),
]


@pytest.mark.parametrize(("scale", "offset"), _WARPS)
def test_resample_against_scipy_affine_transform(scale, offset) -> None:
    from scipy.ndimage import affine_transform

    from engine.anatomy.inputs import _resample

    rng = np.random.default_rng(SEED)
    hu = rng.normal(100.0, 400.0, size=(30, 41, 37)).astype(np.float32)
    labels = rng.integers(0, 15, size=hu.shape, dtype=np.uint8)
    shape = (24, 32, 28)
    for data, order, cval in ((hu, 1, -1024.0), (labels, 0, 0)):
        got = _resample(data, np.array(scale), np.array(offset), shape, order, cval)
        # reference: affine_transform(data, scale, offset, shape, order=order,
        # mode="constant", cval=cval, prefilter=False); float64 inside, float32 out
        ref = affine_transform(data, np.array(scale), np.array(offset), shape, order=order,
                               mode="constant", cval=cval, prefilter=False)  # fmt: skip
        assert got.dtype == data.dtype and got.shape == shape
        if order == 0:
            assert np.array_equal(got, ref)
        else:  # float32 rounding of values up to ~2,000 HU
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(("scale", "offset"), _WARPS)
def test_resample_against_whole_axis_passes_bit_for_bit(scale, offset) -> None:
    from engine.anatomy.inputs import _resample

    rng = np.random.default_rng(SEED + 1)
    hu = rng.normal(100.0, 400.0, size=(30, 41, 37)).astype(np.float32)
    labels = rng.integers(0, 15, size=hu.shape, dtype=np.uint8)
    shape = (24, 32, 28)
    for data, order, cval in ((hu, 1, -1024.0), (labels, 0, 0)):
        args = (data, np.array(scale), np.array(offset), shape, order, cval)
        got, ref = _resample(*args), _resample_whole_axes(*args)
        assert got.dtype == ref.dtype and np.array_equal(got, ref)  # same to the bit
