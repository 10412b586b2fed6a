"""A small 2D U-Net that labels psoas and paraspinal muscles on axial CT slices.

Input: ``in_slices`` channels, the slice and its neighbours ~3 mm above and below,
resampled to 1.5 mm pixels and cropped around the vertebral column
(:mod:`engine.anatomy._muscles` does this). Output: logits of 5 classes, background and
the four muscles in the order of :data:`CLASS_LABELS`. The architecture follows
Ronneberger et al. 2015 (U-Net) with batch norm, scaled down to a few hundred thousand
parameters so it runs on one CPU in a fraction of a second per CT.

Training lives apart, in :mod:`engine.anatomy.train_muscles`. This module imports torch,
so import it lazily (the CLI must start without torch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "CLASS_LABELS",
    "MuscleNet",
    "MuscleNetConfig",
    "MuscleNetOutput",
    "load_muscle_net",
    "save_muscle_net",
]

#: Network class index -> label id of :data:`engine.anatomy.labels.MUSCLE_LABELS`
#: (0 background): psoas left/right, paraspinal (autochthon) left/right.
CLASS_LABELS: tuple[int, ...] = (0, 11, 12, 13, 14)


@dataclass(frozen=True)
class MuscleNetConfig:
    """Shape of the network; stored with the weights so a file rebuilds its own net.

    Attributes
    ----------
    in_slices : int
        Input channels: neighbouring axial slices (odd; the middle one is labelled).
    n_classes : int
        Output classes: background + 4 muscles.
    width : int
        Channels of the first level; each deeper level doubles it.
    depth : int
        Number of down-sampling steps (input size must be divisible by ``2**depth``).
    """

    in_slices: int = 3
    n_classes: int = 5
    width: int = 8
    depth: int = 3


class MuscleNetOutput(NamedTuple):
    """What :class:`MuscleNet` returns.

    Attributes
    ----------
    logits : torch.Tensor
        float, shape (batch, n_classes, H, W): unnormalized class scores per pixel.
    """

    logits: torch.Tensor


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MuscleNet(nn.Module):
    """2D U-Net: ``depth`` down steps (max pool), transposed-conv up steps, skips.

    Parameters
    ----------
    config : MuscleNetConfig
        Channels, classes, width and depth.
    """

    def __init__(self, config: MuscleNetConfig = MuscleNetConfig()) -> None:  # noqa: B008
        super().__init__()
        self.config = config
        w = [config.width * 2**d for d in range(config.depth + 1)]
        self.down = nn.ModuleList(
            [_block(config.in_slices, w[0])] + [_block(w[d - 1], w[d]) for d in range(1, len(w))]
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(w[d], w[d - 1], 2, stride=2) for d in range(len(w) - 1, 0, -1)]
        )
        self.merge = nn.ModuleList(
            [_block(2 * w[d - 1], w[d - 1]) for d in range(len(w) - 1, 0, -1)]
        )
        self.head = nn.Conv2d(w[0], config.n_classes, 1)

    def forward(self, x: torch.Tensor) -> MuscleNetOutput:
        """Class logits per pixel.

        Parameters
        ----------
        x : torch.Tensor
            float32, shape (batch, in_slices, H, W), normalized HU (see
            :func:`engine.anatomy._muscles.normalize_hu`); H and W divisible by
            ``2**depth``.

        Returns
        -------
        MuscleNetOutput
            ``logits`` of shape (batch, n_classes, H, W).
        """
        skips = []
        for d, block in enumerate(self.down):
            x = block(x if d == 0 else self.pool(x))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return MuscleNetOutput(logits=self.head(x))


def save_muscle_net(net: MuscleNet, path: Path | str) -> None:
    """Write ``net`` with its config, parameters as float16 (half the size, same labels).

    Parameters
    ----------
    net : MuscleNet
        The trained network.
    path : Path or str
        Output ``.pt`` file.
    """
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    torch.save({"config": dataclasses.asdict(net.config), "state_dict": state}, Path(path))


def load_muscle_net(path: Path | str, device: str | torch.device = "cpu") -> MuscleNet:
    """Rebuild a network written by :func:`save_muscle_net`, in eval mode, float32.

    Parameters
    ----------
    path : Path or str
        A ``.pt`` file from :func:`save_muscle_net`.
    device : str or torch.device
        Where to place it (``"cpu"``, ``"cuda"``).

    Returns
    -------
    MuscleNet
        Ready for inference (``eval()``; batch norm uses its running statistics).
    """
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    net = MuscleNet(MuscleNetConfig(**blob["config"]))
    net.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    )
    return net.to(device).eval()
