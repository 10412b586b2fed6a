"""The shared 2D encoder: a ConvNeXt (Liu et al. 2022) in plain torch, width and depth free.

One slice triplet (3 adjacent axial slices as channels) in, one feature vector out. The
study uses ConvNeXt-Tiny (width 96, depth 3-3-9-3), ImageNet-pretrained; here it is
trained from scratch, which is why the default is much smaller (:mod:`models.config`).
Normalisation is LayerNorm, never BatchNorm: nothing mixes the samples of a batch, so a
masked (missing) level cannot leak into another patient's or level's features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvNeXtBlock", "ConvNeXtEncoder", "LayerNorm2d"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (batch, C, H, W) tensor (ConvNeXt's channels-first)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # free when x is channels_last in memory
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv, LayerNorm, 4x MLP with GELU, layer scale, residual.

    Parameters
    ----------
    dim : int
        Channels in and out.
    layer_scale_init : float
        Initial value of the per-channel residual scale (Liu et al. use 1e-6).
    """

    def __init__(self, dim: int, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (batch, dim, H, W) -> same shape."""
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXtEncoder(nn.Module):
    """Stem (4x4 conv, stride 4), stages of ConvNeXt blocks, global average pool, LayerNorm.

    Parameters
    ----------
    in_channels : int
        3: a slice triplet.
    width : int
        Channels of the first stage; each later stage doubles them.
    depth : tuple of int
        Blocks per stage; stages after the first start with a 2x2 stride-2 downsampling.
    layer_scale_init : float
        See :class:`ConvNeXtBlock`.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        depth: tuple[int, ...] = (1, 1, 2, 1),
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        dims = [width * 2**i for i in range(len(depth))]
        self.stages = nn.ModuleList()
        for i, (dim, n_blocks) in enumerate(zip(dims, depth, strict=True)):
            if i == 0:
                down = nn.Sequential(
                    nn.Conv2d(in_channels, dim, 4, stride=4), LayerNorm2d(dim, eps=1e-6)
                )
            else:
                down = nn.Sequential(
                    LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, stride=2)
                )
            blocks = [ConvNeXtBlock(dim, layer_scale_init) for _ in range(n_blocks)]
            self.stages.append(nn.Sequential(down, *blocks))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.out_dim = dims[-1]
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of each image.

        Parameters
        ----------
        x : torch.Tensor
            float, shape (n, in_channels, H, W), values in [0, 1]; H and W at least
            ``4 * 2 ** (stages - 1)``.

        Returns
        -------
        torch.Tensor
            shape (n, out_dim).
        """
        for stage in self.stages:
            x = stage(x)
        return self.norm(x.mean(dim=(2, 3)))


def _init_weights(module: nn.Module) -> None:
    # ConvNeXt's initialisation: truncated normal (std 0.02) weights, zero biases
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
