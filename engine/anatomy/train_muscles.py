"""Train the muscle network on the generator's ground truth (``vfrisk train-anatomy``).

The cohort is generated here with fixed seeds (development seeds only: the benchmark
``bench/anatomy_accuracy.py`` uses seed 9001 and the tests 4242-4244, so those patients
stay unseen): ``patients`` low-resolution patients of the sites dev, ext_a and ext_b
(2.5, 1 and 5 mm slices) with seed ``seed``, plus one sixth as many full-size CTs (512 x
512, whole trunk in the field of view) with seed ``seed + 1``, so the network sees both
the tight low-resolution crops and a full field of view. Every sixth series is held out for
validation.

Each sample is one slice inside the true T12-L4 extent, cropped around the true body
centre (:func:`engine.anatomy._muscles.crop_stack` with a margin, from which training
takes random 80 x 112 windows: shifts of up to +-16 mm). Light augmentation: Gaussian
noise (sigma up to 15 HU), HU offset (+-20 HU), left-right flip with the left and right
labels swapped. Loss: cross-entropy plus soft Dice of the four muscles (Milletari et al.
2016). Adam, one-cycle learning rate, seeded; torch runs on 2 threads with deterministic
algorithms, so the same command gives the same weights on the same machine.

Writes the weights (float16) and a JSON model card beside them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BENCH_SEEDS", "TrainRequest", "TrainSummary", "train_muscles"]

#: Seeds of the unseen-seed evaluations (bench/anatomy_accuracy.py and the tests).
BENCH_SEEDS = frozenset({9001, 4242, 4243, 4244})
#: TotalSegmentator id in truth/segmentation.nii.gz -> network class.
_TRUTH_CLASS = {88: 1, 89: 2, 86: 3, 87: 4}
#: Class swap of a left-right flip: psoas L <-> R, paraspinal L <-> R.
_FLIP = np.array([0, 2, 1, 4, 3])
_MARGIN_PX = 8
_SLICE_MM = 2.0  # training slices at least this far apart (1 mm scans give half)


@dataclass(frozen=True)
class TrainRequest:
    """What ``vfrisk train-anatomy`` asks for.

    Attributes
    ----------
    out : Path
        Weights file to write (``.pt``); the card goes beside it (``.json``).
    patients : int
        Low-resolution patients generated (plus ``patients // 6`` full-size CTs).
    epochs : int
        Passes over the training slices.
    seed : int
        Cohort and training seed (the full-size part uses ``seed + 1``).
    width : int
        Channels of the network's first level.
    batch : int
        Slices per step.
    lr : float
        Peak learning rate of the one-cycle schedule.
    """

    out: Path
    patients: int = 36
    epochs: int = 8
    seed: int = 7
    width: int = 8
    batch: int = 16
    lr: float = 3e-3


@dataclass(frozen=True)
class TrainSummary:
    """What training produced.

    Attributes
    ----------
    weights : Path
        The weights file.
    card : Path
        The JSON model card.
    val_dice : dict of str to float
        Validation Dice per muscle (window pixels of held-out patients).
    seconds : float
        Wall time, s.
    """

    weights: Path
    card: Path
    val_dice: dict[str, float]
    seconds: float


def _check(req: TrainRequest) -> None:
    from engine.errors import VfriskError

    bad = {req.seed, req.seed + 1} & BENCH_SEEDS
    if bad:
        raise VfriskError(
            "bad_argument",
            f"seed {sorted(bad)[0]} is reserved for the unseen-seed evaluation "
            f"({sorted(BENCH_SEEDS)}); train with another --seed",
        )
    if req.out.suffix != ".pt":
        raise VfriskError("bad_argument", f"--out {req.out} must end in .pt")


def _samples(cohort: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(patient, inputs (n, 3, H+2m, W+2m), targets (n, H+2m, W+2m)) per soft series."""
    from engine.anatomy._muscles import column_centre, crop_labels, crop_stack
    from engine.load import load_nifti, load_volume
    from engine.synth.cohort import main_series, series_files

    out = []
    for row in main_series(cohort).itertuples():
        vol = load_volume(series_files(cohort, row.series_uid))
        truth = cohort / "truth" / row.patient_id
        bodies = load_nifti(truth / "bodies.nii.gz", labels=True).hu > 0
        tseg = load_nifti(truth / "segmentation.nii.gz", labels=True).hu.astype(np.int32)
        classes = np.zeros(tseg.shape, np.uint8)
        for tid, c in _TRUTH_CLASS.items():
            classes[tseg == tid] = c
        zs = np.nonzero(bodies.any(axis=(1, 2)))[0]
        step = max(1, int(round(_SLICE_MM / vol.grid.spacing_zyx[0])))
        ks = np.arange(zs[0], zs[-1] + 1, step)
        centre = column_centre(bodies)
        x = crop_stack(vol.hu, vol.grid, ks, centre, _MARGIN_PX)
        y = crop_labels(classes, vol.grid, ks, centre, _MARGIN_PX)
        out.append((f"{row.site}/{row.patient_id}", x.astype(np.float16), y.astype(np.uint8)))
    return out


def _generate(req: TrainRequest, root: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from engine.synth.cohort import SynthRequest, synthesize

    parts = [(root / "low", req.patients, req.seed, "low")]
    if req.patients // 6:
        parts.append((root / "full", req.patients // 6, req.seed + 1, "full"))
    samples = []
    for out, n, seed, res in parts:
        synthesize(
            SynthRequest(
                out=out, patients=n, sites="dev,ext_a,ext_b", seed=seed, resolution=res, workers=2
            )
        )
        samples += [(f"{res}:{p}", x, y) for p, x, y in _samples(out)]
    return samples


def _dice_per_class(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dice of classes 1-4 over all pixels given, shape (4,)."""
    d = []
    for c in range(1, 5):
        a, b = pred == c, target == c
        s = int(a.sum()) + int(b.sum())
        d.append(2.0 * int((a & b).sum()) / s if s else 1.0)
    return np.array(d)


def _code_version() -> str:
    from engine import __version__

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = "unknown"
    return f"vfrisk {__version__} (git {head}, working tree may differ)"


def command_line(req: TrainRequest) -> str:
    """The ``vfrisk`` command that reproduces ``req``."""
    return (
        f"vfrisk train-anatomy --out {req.out} --patients {req.patients} "
        f"--epochs {req.epochs} --seed {req.seed} --width {req.width}"
    )


def train_muscles(req: TrainRequest, log: Callable[[str], None] = lambda _: None) -> TrainSummary:
    """Generate the cohort, train the network, write weights and card.

    Parameters
    ----------
    req : TrainRequest
        Output path, cohort size, epochs, seed.
    log : callable, optional
        Receives one progress line per epoch.

    Returns
    -------
    TrainSummary
        Paths written and the validation Dice per muscle.

    Raises
    ------
    VfriskError
        ``bad_argument`` for a reserved seed or an output that is not ``.pt``.
    """
    import torch
    import torch.nn.functional as F

    from engine.anatomy._muscles import window_px
    from engine.anatomy.muscle_net import MuscleNet, MuscleNetConfig, save_muscle_net

    _check(req)
    t_start = time.perf_counter()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(req.seed)
    rng = np.random.default_rng(req.seed)
    with tempfile.TemporaryDirectory(prefix="vfrisk-train-") as tmp:
        samples = _generate(req, Path(tmp))
    # every sixth series is held out (low and full resolution alike)
    train = [s for n, s in enumerate(samples) if n % 6 != 5 or len(samples) == 1]
    val = [s for n, s in enumerate(samples) if n % 6 == 5] or train[-1:]
    xs = torch.from_numpy(np.concatenate([s[1] for s in train]))
    ys = torch.from_numpy(np.concatenate([s[2] for s in train]).astype(np.int64))
    h, w = window_px()
    net = MuscleNet(MuscleNetConfig(width=req.width))
    opt = torch.optim.Adam(net.parameters(), lr=req.lr, weight_decay=1e-5)
    steps = req.epochs * max(1, (len(xs) + req.batch - 1) // req.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=req.lr, total_steps=steps)
    flip = torch.from_numpy(_FLIP)
    for epoch in range(req.epochs):
        net.train()
        order = torch.from_numpy(rng.permutation(len(xs)))
        total = 0.0
        for s in range(0, len(xs), req.batch):
            idx = order[s : s + req.batch]
            n = len(idx)
            dj, di = rng.integers(0, 2 * _MARGIN_PX + 1, size=2)
            x = xs[idx, :, dj : dj + h, di : di + w].float()
            y = ys[idx, dj : dj + h, di : di + w]
            # HU offset +-20 HU and noise up to 15 HU (inputs are HU / 150)
            x = x + torch.from_numpy(rng.uniform(-20, 20, (n, 1, 1, 1)).astype(np.float32)) / 150
            sigma = torch.from_numpy(rng.uniform(0, 15, (n, 1, 1, 1)).astype(np.float32)) / 150
            x = x + sigma * torch.randn(x.shape)
            fl = torch.from_numpy(rng.random(n) < 0.5)
            x[fl] = x[fl].flip(-1)
            y[fl] = flip[y[fl].flip(-1)]
            logits = net(x).logits
            prob = torch.softmax(logits, 1)[:, 1:]
            onehot = F.one_hot(y, 5).permute(0, 3, 1, 2)[:, 1:].float()
            inter = (prob * onehot).sum((0, 2, 3))
            dice = (2 * inter + 1.0) / (prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1.0)
            loss = F.cross_entropy(logits, y) + (1.0 - dice).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * n
        val_d = _validate(net, val, h, w)
        log(
            f"epoch {epoch + 1}/{req.epochs}: loss {total / len(xs):.4f}, "
            f"val Dice {np.round(val_d, 3).tolist()} ({time.perf_counter() - t_start:.0f} s)"
        )
    names = ("psoas_left", "psoas_right", "paraspinal_left", "paraspinal_right")
    val_dice = dict(zip(names, (round(float(v), 4) for v in val_d), strict=True))
    req.out.parent.mkdir(parents=True, exist_ok=True)
    save_muscle_net(net.eval(), req.out)
    seconds = time.perf_counter() - t_start
    card = _write_card(req, net, train, val, val_dice, seconds)
    return TrainSummary(weights=req.out, card=card, val_dice=val_dice, seconds=seconds)


def _validate(net, val: list, h: int, w: int) -> np.ndarray:  # noqa: ANN001 - MuscleNet
    """Mean over held-out patients of the per-muscle Dice on their centre windows."""
    import torch

    net.eval()
    m = _MARGIN_PX
    per = []
    with torch.inference_mode():
        for _, x, y in val:
            xt = torch.from_numpy(x[:, :, m : m + h, m : m + w].astype(np.float32))
            pred = torch.cat([net(xt[s : s + 64]).logits.argmax(1) for s in range(0, len(xt), 64)])
            per.append(_dice_per_class(pred.numpy(), y[:, m : m + h, m : m + w]))
    return np.mean(per, axis=0)


def _write_card(req, net, train, val, val_dice, seconds) -> Path:  # noqa: ANN001
    """The JSON model card beside the weights: how they were made, and how well they do."""
    from engine.anatomy._muscles import NEIGHBOUR_MM, PIXEL_MM, WINDOW_MM

    card = {
        "model": "muscle_net: 2D U-Net, psoas and paraspinal muscles (SYNTHETIC training data)",
        "weights": req.out.name,
        "weights_sha256": hashlib.sha256(req.out.read_bytes()).hexdigest(),
        "command": command_line(req),
        "code_version": _code_version(),
        "config": {
            "in_slices": net.config.in_slices,
            "n_classes": net.config.n_classes,
            "width": net.config.width,
            "depth": net.config.depth,
            "parameters": int(sum(p.numel() for p in net.parameters())),
            "pixel_mm": PIXEL_MM,
            "window_mm": list(WINDOW_MM),
            "neighbour_mm": NEIGHBOUR_MM,
        },
        "cohort": {
            "generator": "engine.synth.cohort.synthesize",
            "sites": "dev,ext_a,ext_b",
            "low_resolution": {"patients": req.patients, "seed": req.seed},
            "full_resolution": {"patients": req.patients // 6, "seed": req.seed + 1},
            "unseen_evaluation_seeds": sorted(BENCH_SEEDS),
            "train_series": [s[0] for s in train],
            "validation_series": [s[0] for s in val],
            "train_slices": int(sum(len(s[1]) for s in train)),
        },
        "training": {
            "seed": req.seed,
            "epochs": req.epochs,
            "batch": req.batch,
            "lr": req.lr,
            "optimizer": "Adam + OneCycleLR, weight decay 1e-5",
            "loss": "cross-entropy + soft Dice (muscles)",
            "augmentation": "random shift +-16 mm, HU offset +-20, noise <= 15 HU, "
            "left-right flip with label swap",
            "torch_threads": 2,
            "seconds": round(seconds, 1),
        },
        "validation_dice": val_dice,
        "validation_note": "Dice per muscle over the 2 mm window pixels of the held-out "
        "series (crop centred on the true bodies, slices within T12-L4); the end-to-end "
        "figure on unseen seeds is bench/anatomy_accuracy.py",
    }
    path = req.out.with_suffix(".json")
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path
