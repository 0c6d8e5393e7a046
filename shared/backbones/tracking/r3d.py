"""A small 3D ResNet video classifier: the feedforward baseline of the tracking papers at small size.

The papers use torchvision's ``r3d_18`` (pathtracker-models ``utils/engine.py``: ``video.r3d_18`` with a
``Linear(512, 1)`` head). This keeps its design at a width that matches the circuits' parameter counts:
a (3, 7, 7) stem with spatial stride 2, stages of ``BasicBlock3d`` (two 3x3x3 convolutions with
BatchNorm and an identity or 1x1x1 projection shortcut), stride 2 in frame, row and column at the start of
every stage after the first, global average pooling and ``Linear(width, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.backbones.base import Backbone, BackboneOutput
from shared.backbones.registry import register_backbone


@dataclass
class R3DConfig:
    """Small 3D ResNet.

    in_channels : input channels (RGB: 3).
    stem_channels : channels of the (3, 7, 7) stem (r3d_18: 64).
    widths : channels per stage, the width knob (r3d_18: 64, 128, 256, 512).
    blocks_per_stage : ``BasicBlock3d`` per stage (r3d_18: 2).
    """

    in_channels: int = 3
    stem_channels: int = 16
    widths: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 1

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.stem_channels < 1 or self.blocks_per_stage < 1:
            raise ValueError(
                f"stem_channels and blocks_per_stage must be >= 1, got {self.stem_channels}, {self.blocks_per_stage}"
            )
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty tuple of positive ints, got {self.widths}")


class BasicBlock3d(nn.Module):
    """conv3x3x3-BN-ReLU-conv3x3x3-BN plus shortcut, then ReLU (torchvision ``video.resnet.BasicBlock``)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = nn.BatchNorm3d(out_ch)
        self.conv2 = nn.Conv3d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm3d(out_ch)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else nn.Sequential(nn.Conv3d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm3d(out_ch))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class R3D(Backbone):
    """Video (batch, in_channels, frame, row, column) -> logits (batch, 1)."""

    spatial_dims = 3
    input_kind = "video"
    out_channels = 1

    def __init__(self, cfg: R3DConfig) -> None:
        super().__init__()
        self.config, self.in_channels = cfg, cfg.in_channels
        self.stem = nn.Sequential(
            nn.Conv3d(cfg.in_channels, cfg.stem_channels, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
            nn.BatchNorm3d(cfg.stem_channels),
            nn.ReLU(inplace=True),
        )
        blocks, prev = [], cfg.stem_channels
        for i, width in enumerate(cfg.widths):
            for b in range(cfg.blocks_per_stage):
                blocks.append(BasicBlock3d(prev, width, 2 if i > 0 and b == 0 else 1))
                prev = width
        self.stages = nn.Sequential(*blocks)
        self.fc = nn.Linear(prev, 1)

    def forward_steps(self, x: torch.Tensor, return_steps: bool) -> BackboneOutput:
        y = self.fc(self.stages(self.stem(x)).mean(dim=(2, 3, 4)))
        return BackboneOutput(y, [y] if return_steps else [], None)


@register_backbone(
    "r3d_small",
    R3DConfig,
    spatial_dims=3,
    recurrent=False,
    input_kind="video",
    description="small 3D ResNet (r3d_18 design) video classifier",
)
def r3d_small(cfg: R3DConfig) -> R3D:
    """Create an :class:`R3D`.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("r3d_small", stem_channels=4, widths=(4, 8))
    >>> net(torch.rand(2, 3, 4, 16, 16)).shape
    torch.Size([2, 1])
    """
    return R3D(cfg)
