"""Benchmark: patients/s of the fracture network, inference and training step.

Random weights and inputs at the default ``network_zyx`` (each patient: 5 levels x
``triplets_per_level`` triplets of 3 x 64 x 112); the default :class:`ModelConfig` unless
``--convnext-tiny`` (the study's encoder). A training step is forward, both losses
(multitask), backward through the configured weighting and an Adam step. On CPU: float32,
all cores torch uses. On CUDA (when present): bf16 autocast and channels_last, as the
trainer will run it. Best of ``--repeats`` timed runs after a warm-up.

Usage: python bench/model_speed.py [--convnext-tiny] [--cpu-batch 16] [--gpu-batch 256]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable

import numpy as np
import torch

from models.config import ModelConfig
from models.losses import detection_loss, survival_labels, survival_loss
from models.network import FractureNet
from models.weighting import make_weighting, multitask_backward


def _best_of(n: int, fn: Callable[[], object], sync: Callable[[], None]) -> float:
    fn()  # warm-up (allocator, kernels)
    sync()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def _measure(config: ModelConfig, device: str, batch: int, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    cuda = device == "cuda"
    net = FractureNet(config).to(device)
    if cuda:
        net.to_channels_last()
    weighting = make_weighting(config)
    params = list(net.parameters())
    if isinstance(weighting, torch.nn.Module):
        weighting.to(device)
        params += list(weighting.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    k = config.triplets_per_level
    images = torch.rand(batch, config.n_levels, k, 3, 64, 112, device=device)
    present = torch.ones(batch, config.n_levels, dtype=torch.bool, device=device)
    rng = np.random.default_rng(0)
    prevalent = torch.from_numpy(rng.integers(0, 2, batch).astype(np.float32)).to(device)
    lab = survival_labels(rng.uniform(0, 6, batch), rng.integers(0, 3, batch), config.max_followup)
    y_seq, mask = torch.from_numpy(lab.y_seq).to(device), torch.from_numpy(lab.mask).to(device)

    def autocast() -> contextlib.AbstractContextManager[object]:
        if cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def infer() -> None:
        net.eval()
        with torch.inference_mode(), autocast():
            net(images, present)

    def train_step() -> None:
        net.train()
        with autocast():
            out = net(images, present)
            losses = []
            if out.fracture_logit is not None:
                losses.append(detection_loss(out.fracture_logit, prevalent))
            if out.risk_logit is not None:
                losses.append(survival_loss(out.risk_logit, y_seq, mask))
        opt.zero_grad(set_to_none=True)
        multitask_backward(weighting, losses, net)
        opt.step()

    t_infer = _best_of(repeats, infer, sync)
    t_train = _best_of(repeats, train_step, sync)
    return batch / t_infer, batch / t_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convnext-tiny", action="store_true", help="the study's encoder")
    parser.add_argument("--cpu-batch", type=int, default=16)
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = ModelConfig.convnext_tiny() if args.convnext_tiny else ModelConfig()
    n_params = sum(p.numel() for p in FractureNet(config).parameters())
    print(
        f"config: width {config.width}, depth {config.depth}, {config.n_levels} levels x "
        f"{config.triplets_per_level} triplets of 3x64x112, task {config.task}, "
        f"weighting {config.weighting}; {n_params / 1e6:.2f} M parameters"
    )
    runs = [("cpu", args.cpu_batch, f"float32, {torch.get_num_threads()} threads")]
    if torch.cuda.is_available():
        runs.append(("cuda", args.gpu_batch, f"bf16 autocast, channels_last, {_gpu_name()}"))
    for device, batch, how in runs:
        infer, train = _measure(config, device, batch, args.repeats)
        print(
            f"{device} ({how}), batch {batch}: inference {infer:,.1f} patients/s, "
            f"training step {train:,.1f} patients/s"
        )
    if not torch.cuda.is_available():
        print("cuda: not available on this machine")


def _gpu_name() -> str:
    return torch.cuda.get_device_name(0)


if __name__ == "__main__":
    main()
