"""Feedforward U-Net baselines in 2D and 3D (anisotropic downsampling for EM volumes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from shared.backbones.base import Backbone, BackboneOutput
from shared.backbones.layers import ConvBlock, as_tuple, conv_nd, max_pool, resize_to
from shared.backbones.registry import register_backbone


@dataclass
class UNetConfig:
    """U-Net architecture.

    in_channels : input channels.
    out_channels : channels of the full-resolution output; None keeps ``features[0]`` (no readout conv).
    features : channels per level, coarse levels last.
    downsample : per-transition pooling factors (``len(features) - 1`` entries, one value per spatial axis);
        None means 2 on every axis. EM volumes use e.g. ``((1, 2, 2), (1, 2, 2), (2, 2, 2))``.
    kernel_size : convolution kernel per spatial axis (odd), e.g. ``(1, 3, 3)`` for thin sections.
    norm : ``group``, ``batch``, ``instance`` or ``none``.
    """

    in_channels: int = 1
    out_channels: int | None = None
    features: tuple[int, ...] = (16, 32, 64)
    downsample: tuple[tuple[int, ...], ...] | None = None
    kernel_size: tuple[int, ...] | int = 3
    norm: Literal["batch", "group", "instance", "none"] = "group"

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if not self.features or any(f < 1 for f in self.features):
            raise ValueError(f"features must be a non-empty tuple of positive ints, got {self.features}")
        if self.downsample is not None and len(self.downsample) != len(self.features) - 1:
            raise ValueError(
                f"downsample needs {len(self.features) - 1} entries (one per level transition), "
                f"got {len(self.downsample)}"
            )


class UNet(Backbone):
    """Encoder-decoder with skip connections; output at the input resolution."""

    def __init__(self, cfg: UNetConfig, spatial_dims: int) -> None:
        super().__init__()
        self.config, self.spatial_dims, self.in_channels = cfg, spatial_dims, cfg.in_channels
        d = spatial_dims
        k = as_tuple(cfg.kernel_size, d, name="kernel_size")
        self.factors = (
            [as_tuple(f, d, name="downsample") for f in cfg.downsample]
            if cfg.downsample
            else [(2,) * d] * (len(cfg.features) - 1)
        )
        chans = list(cfg.features)
        self.down = nn.ModuleList()
        prev = cfg.in_channels
        for c in chans:
            self.down.append(ConvBlock(d, prev, c, k, cfg.norm))
            prev = c
        self.up = nn.ModuleList(
            ConvBlock(d, chans[i] + chans[i + 1], chans[i], k, cfg.norm) for i in range(len(chans) - 1)
        )
        self.readout = conv_nd(d, chans[0], cfg.out_channels, 1) if cfg.out_channels else nn.Identity()
        self.out_channels = cfg.out_channels or chans[0]

    def forward_steps(self, x: torch.Tensor, return_steps: bool) -> BackboneOutput:
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = max_pool(x, self.factors[i - 1])
            x = block(x)
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = self.up[i](torch.cat([skips[i], resize_to(x, skips[i])], dim=1))
        y = self.readout(x)
        return BackboneOutput(y, [y] if return_steps else [], None)


@register_backbone("unet2d", UNetConfig, spatial_dims=2, recurrent=False, description="2D U-Net baseline")
def unet2d(cfg: UNetConfig) -> UNet:
    return UNet(cfg, 2)


@register_backbone(
    "unet3d", UNetConfig, spatial_dims=3, recurrent=False, description="3D U-Net baseline with anisotropic pooling"
)
def unet3d(cfg: UNetConfig) -> UNet:
    return UNet(cfg, 3)
