"""A small 2D ResNet: the feedforward classification baseline (Pathfinder, image encoders)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.backbones.base import Backbone, BackboneOutput
from shared.backbones.layers import make_norm
from shared.backbones.registry import register_backbone


@dataclass
class ResNetConfig:
    """Small ResNet.

    in_channels : input channels.
    stem_channels : channels of the 7x7 stride-2 stem.
    widths : channels per stage; every stage after the first halves the resolution.
    blocks_per_stage : basic residual blocks per stage.
    norm : normalisation layer kind.
    """

    in_channels: int = 3
    stem_channels: int = 16
    widths: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 1
    norm: Literal["batch", "group", "instance", "none"] = "batch"

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.stem_channels < 1 or self.blocks_per_stage < 1:
            raise ValueError("in_channels, stem_channels and blocks_per_stage must be >= 1")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty tuple of positive ints, got {self.widths}")


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = make_norm(norm, out_ch, 2)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = make_norm(norm, out_ch, 2)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), make_norm(norm, out_ch, 2))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class ResNet(Backbone):
    """Stem (stride 2) and residual stages; ``output_stride`` = 2 * 2**(len(widths) - 1)."""

    spatial_dims = 2

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.config, self.in_channels = cfg, cfg.in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem_channels, 7, 2, 3, bias=False),
            make_norm(cfg.norm, cfg.stem_channels, 2),
            nn.ReLU(inplace=True),
        )
        layers, prev = [], cfg.stem_channels
        for i, w in enumerate(cfg.widths):
            for b in range(cfg.blocks_per_stage):
                layers.append(BasicBlock(prev, w, 2 if (i > 0 and b == 0) else 1, cfg.norm))
                prev = w
        self.stages = nn.Sequential(*layers)
        self.out_channels = prev
        self.output_stride = 2 * 2 ** (len(cfg.widths) - 1)

    def forward_steps(self, x: torch.Tensor, return_steps: bool) -> BackboneOutput:
        y = self.stages(self.stem(x))
        return BackboneOutput(y, [y] if return_steps else [], None)


@register_backbone(
    "resnet_small", ResNetConfig, spatial_dims=2, recurrent=False, description="small 2D ResNet feedforward baseline"
)
def resnet_small(cfg: ResNetConfig) -> ResNet:
    return ResNet(cfg)
