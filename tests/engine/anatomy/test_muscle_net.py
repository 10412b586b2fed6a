"""The muscle network: its outputs, the shipped weights, inference and the training command.

Data come from the project's generator into ``tmp_path`` with unseen seeds (the shipped
weights were trained on seeds 7 and 8, see their card).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.anatomy import _muscles
from engine.anatomy._muscles import segment_muscles
from engine.anatomy.muscle_net import (
    MuscleNet,
    MuscleNetConfig,
    MuscleNetOutput,
    load_muscle_net,
    save_muscle_net,
)
from engine.cli import main
from engine.errors import VfriskError
from engine.geometry import Grid
from engine.load import load_nifti, load_volume
from engine.synth.cohort import SynthRequest, main_series, series_files, synthesize

SEED = 4243  # an evaluation seed: never used for training


def _case(tmp_path: Path) -> tuple[np.ndarray, Grid, np.ndarray, np.ndarray]:
    """HU, grid, true bodies (bool) and true segmentation of one 5 mm patient."""

    cohort = tmp_path / "c"
    synthesize(SynthRequest(out=cohort, patients=1, sites="ext_b", seed=SEED))
    row = next(main_series(cohort).itertuples())
    vol = load_volume(series_files(cohort, row.series_uid))
    truth = cohort / "truth" / row.patient_id
    bodies = load_nifti(truth / "bodies.nii.gz", labels=True).hu > 0
    tseg = load_nifti(truth / "segmentation.nii.gz", labels=True).hu.astype(np.uint8)
    return vol.hu, vol.grid, bodies, tseg


def _k_range(bodies: np.ndarray) -> tuple[int, int]:
    ks = np.nonzero(bodies.any(axis=(1, 2)))[0]
    return int(ks[0]), int(ks[-1]) + 1


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def test_muscle_net_output_is_named_logits_of_input_size() -> None:
    torch.manual_seed(0)
    net = MuscleNet(MuscleNetConfig(width=4)).eval()
    with torch.inference_mode():
        out = net(torch.zeros(2, 3, 80, 112))
    assert isinstance(out, MuscleNetOutput)
    assert out.logits.shape == (2, 5, 80, 112) and out.logits is out[0]


def test_muscle_net_save_load_round_trip_in_float16(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = MuscleNet(MuscleNetConfig(width=4)).eval()
    save_muscle_net(net, tmp_path / "m.pt")
    back = load_muscle_net(tmp_path / "m.pt")
    x = torch.randn(1, 3, 80, 112)
    with torch.inference_mode():
        # float16 storage: parameters agree to ~1e-3 relative
        np.testing.assert_allclose(back(x).logits, net(x).logits, rtol=0.05, atol=0.05)
    assert back.config == net.config and not back.training


def test_shipped_weights_load_from_the_package_with_their_card() -> None:
    folder = resources.files("engine.anatomy") / "weights"
    weights, card_path = folder / "muscles.pt", folder / "muscles.json"
    assert weights.is_file() and card_path.is_file()
    data = weights.read_bytes()
    assert len(data) < 2_000_000
    card = json.loads(card_path.read_text())
    assert card["weights_sha256"] == hashlib.sha256(data).hexdigest()
    assert card["command"].startswith("vfrisk train-anatomy ")
    seeds = {card["cohort"]["low_resolution"]["seed"], card["cohort"]["full_resolution"]["seed"]}
    assert not seeds & set(card["cohort"]["unseen_evaluation_seeds"])
    assert 9001 in card["cohort"]["unseen_evaluation_seeds"]  # bench/anatomy_accuracy.py
    assert min(card["validation_dice"].values()) > 0.8
    net = load_muscle_net(Path(str(weights)))
    assert net.config.in_slices == 3 and net.config.n_classes == 5


def test_segment_muscles_against_generator_truth_is_deterministic(tmp_path: Path) -> None:
    hu, grid, bodies, tseg = _case(tmp_path)
    a = segment_muscles(hu, grid, bodies, _k_range(bodies), device="cpu")
    b = segment_muscles(hu, grid, bodies, _k_range(bodies), device="cpu")
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == grid.shape_zyx
    assert set(np.unique(a)) == {0, 11, 12, 13, 14}
    assert not a[bodies].any()
    k0, k1 = _k_range(bodies)
    for ours, theirs in ((11, 88), (12, 89), (13, 86), (14, 87)):
        # the slow segment test holds the 0.85 median; one patient, looser bound
        assert _dice(a[k0:k1] == ours, tseg[k0:k1] == theirs) > 0.75, ours


def test_segment_muscles_left_right_follow_a_flipped_input(tmp_path: Path) -> None:
    hu, grid, bodies, _ = _case(tmp_path)
    kr = _k_range(bodies)
    a = segment_muscles(hu, grid, bodies, kr, device="cpu")
    f = segment_muscles(hu[:, :, ::-1].copy(), grid, bodies[:, :, ::-1].copy(), kr, device="cpu")
    swap = np.array([0] * 11 + [12, 11, 14, 13], np.uint8)
    back = swap[f[:, :, ::-1]]
    _, _, ib = np.nonzero(bodies)
    for lab in (11, 12, 13, 14):
        assert _dice(back == lab, a == lab) > 0.9, lab
    # patient left is +x: left muscles lie at larger column index than the bodies
    for left, right in ((11, 12), (13, 14)):
        assert np.nonzero(a == left)[2].mean() > ib.mean() > np.nonzero(a == right)[2].mean()


def test_segment_muscles_without_weights_is_muscle_weights_missing(tmp_path: Path) -> None:
    grid = Grid((0.0, 0.0, 0.0), (5.0, 1.0, 1.0), (8, 32, 32))
    bodies = np.zeros(grid.shape_zyx, bool)
    bodies[2:6, 10:20, 10:20] = True
    with pytest.raises(VfriskError) as err:
        segment_muscles(
            np.zeros(grid.shape_zyx, np.float32), grid, bodies, (2, 6),
            weights=tmp_path / "none.pt",
        )  # fmt: skip
    assert err.value.code == "muscle_weights_missing"


def test_train_anatomy_help_states_the_request_defaults(capsys) -> None:  # noqa: ANN001
    import dataclasses
    import re

    from engine.anatomy.train_muscles import TrainRequest

    with pytest.raises(SystemExit):
        main(["train-anatomy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("patients", "epochs", "seed", "width"):
        default = next(f.default for f in dataclasses.fields(TrainRequest) if f.name == name)
        assert re.search(rf"--{name} \w+ (?:(?!--).)*\(default {default}\)", text), name


def test_train_anatomy_command_writes_weights_and_card(tmp_path: Path) -> None:
    out = tmp_path / "w" / "m.pt"
    argv = ["train-anatomy", "--out", str(out), "--patients", "1", "--epochs", "1"]
    argv += ["--seed", "11", "--width", "4"]
    assert main(["--log-file", str(tmp_path / "log.jsonl"), *argv]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["command"] == " ".join(["vfrisk", *argv])
    assert card["weights_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert card["cohort"]["low_resolution"] == {"patients": 1, "seed": 11}
    assert card["training"]["epochs"] == 1 and card["training"]["seed"] == 11
    assert set(card["validation_dice"]) == {
        "psoas_left", "psoas_right", "paraspinal_left", "paraspinal_right",
    }  # fmt: skip
    assert card["config"]["width"] == 4 and card["code_version"].startswith("vfrisk ")
    net = load_muscle_net(out)
    assert net.config.width == 4


def test_train_anatomy_same_command_gives_same_weights(tmp_path: Path) -> None:
    from engine.anatomy.train_muscles import TrainRequest, train_muscles

    digests = []
    for name in ("a", "b"):
        req = TrainRequest(out=tmp_path / name / "m.pt", patients=1, epochs=1, seed=12, width=4)
        digests.append(hashlib.sha256(train_muscles(req).weights.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_train_anatomy_refuses_an_evaluation_seed(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "m.pt"
    argv = ["--log-file", str(tmp_path / "l.jsonl"), "train-anatomy", "--out", str(out)]
    assert main([*argv, "--seed", "9001", "--patients", "1", "--epochs", "1"]) == 2
    assert "bad_argument" in capsys.readouterr().err and not out.exists()


@pytest.mark.gpu
def test_segment_muscles_on_cuda_matches_cpu(tmp_path: Path) -> None:
    hu, grid, bodies, _ = _case(tmp_path)
    kr = _k_range(bodies)
    cpu = segment_muscles(hu, grid, bodies, kr, device="cpu")
    gpu = segment_muscles(hu, grid, bodies, kr, device="cuda")
    assert (cpu == gpu).mean() > 0.999


def test_segment_muscles_empty_range_is_empty() -> None:
    grid = Grid((0.0, 0.0, 0.0), (5.0, 1.0, 1.0), (4, 16, 16))
    out = segment_muscles(
        np.zeros(grid.shape_zyx, np.float32), grid, np.zeros(grid.shape_zyx, bool), (2, 2)
    )
    assert out.shape == grid.shape_zyx and not out.any()
    assert _muscles.PIXEL_MM > 0


@pytest.mark.parametrize("n_processed", [1, 4])
def test_blended_upsample_argmax_against_interpolate(n_processed: int) -> None:
    # reference: blend every native slice, F.interpolate(bilinear, align_corners=False),
    # argmax (first maximum), crop, class -> label: what _upsample_argmax skips where the
    # answer is known (agreeing slices along z, agreeing corners in-plane); exact equality
    rng = np.random.default_rng(11)
    coarse = rng.normal(size=(n_processed, 5, 4, 5)).astype(np.float32)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(8, 10), mode="bicubic")
    prob = torch.softmax(3.0 * smooth, dim=1).contiguous()
    ks = np.linspace(0, 9, n_processed).round().astype(int)
    kk = np.arange(10)
    hi = np.clip(np.searchsorted(ks, kk), 1, n_processed - 1) if n_processed > 1 else 0 * kk
    lo = np.maximum(hi - 1, 0)
    t = np.clip((kk - ks[lo]) / np.maximum(ks[hi] - ks[lo], 1), 0, 1).astype(np.float32)
    lut = np.array([0, 11, 12, 13, 14], np.uint8)
    blend = _muscles._Blend(prob.permute(0, 2, 3, 1).contiguous().numpy(), lo, hi, t)
    size, rows, cols = (29, 37), (3, 29), (0, 31)
    got = _muscles._upsample_argmax(blend, size, rows, cols, lut)
    t_t = torch.from_numpy(t)[:, None, None, None]
    dense = prob[torch.from_numpy(lo)] * (1.0 - t_t) + prob[torch.from_numpy(hi)] * t_t
    up = torch.nn.functional.interpolate(dense, size=size, mode="bilinear", align_corners=False)
    want = lut[up.argmax(dim=1).numpy()[:, rows[0] : rows[1], cols[0] : cols[1]]]
    assert got.shape == want.shape and len(np.unique(want)) >= 3
    np.testing.assert_array_equal(got, want)
