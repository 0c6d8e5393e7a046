"""A ConvGRU over frames: the gated recurrent baseline of the tracking papers at small size.

A per-frame convolutional encoder (3x3 conv + ReLU, applied to every frame) drives a convolutional GRU,
one step per frame (pathtracker-models lists ConvGRU/ConvLSTM baselines, e.g. ``models/kys.py``; their
exact configuration is not reproduced)::

    z_t = sigma(W_z * [x_t, h_{t-1}]),  r_t = sigma(W_r * [x_t, h_{t-1}])
    h^  = tanh(W_h * [x_t, r_t . h_{t-1}]);  h_t = (1 - z_t) . h_{t-1} + z_t . h^

``readout="goal"`` (default) reads the last state with InT's published readout
(:class:`~shared.backbones.tracking.base.GoalReadout`, which also sees the goal marker of frame 0), so a
comparison with InT differs only in the recurrent circuit; ``readout="pool"`` is global average pooling
and ``Linear(hidden, 1)``. Training modes (and C-RBP with ``settle_steps``) as in
:mod:`shared.backbones.tracking.base`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from shared.backbones.registry import register_backbone
from shared.backbones.tracking.base import GoalReadout, RecurrentVideoBackbone, TrackingRecurrentConfig, VideoDrive


@dataclass
class ConvGRUConfig(TrackingRecurrentConfig):
    """ConvGRU (the shared keys are in :class:`~shared.backbones.tracking.base.TrackingRecurrentConfig`).

    channels : encoder channels.
    hidden_channels : GRU state channels, the width knob.
    kernel_size : odd size of the GRU convolutions.
    readout : ``"goal"`` (InT's readout; needs RGB input) or ``"pool"``.
    """

    channels: int = 16
    hidden_channels: int = 32
    kernel_size: int = 5
    readout: Literal["goal", "pool"] = "goal"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channels < 1 or self.hidden_channels < 1:
            raise ValueError(f"channels and hidden_channels must be >= 1, got {self.channels}, {self.hidden_channels}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {self.kernel_size}")
        if self.readout not in ("goal", "pool"):
            raise ValueError(f"readout must be 'goal' or 'pool', got {self.readout!r}")
        if self.readout == "goal" and self.in_channels < 3:
            raise ValueError(
                f"in_channels must be >= 3 with readout='goal' (it reads the blue goal marker), got {self.in_channels}"
            )


class ConvGRU(RecurrentVideoBackbone):
    """Video (batch, in_channels, frame, row, column) -> logits (batch, 1)."""

    def __init__(self, cfg: ConvGRUConfig) -> None:
        super().__init__(cfg)
        c, h, k = cfg.channels, cfg.hidden_channels, cfg.kernel_size
        self.encoder = nn.Conv3d(cfg.in_channels, c, (1, 3, 3), padding=(0, 1, 1))
        self.gates = nn.Conv2d(c + h, 2 * h, k, padding=k // 2)
        self.candidate = nn.Conv2d(c + h, h, k, padding=k // 2)
        self.hidden_channels = h
        self.head = GoalReadout(h, 1) if cfg.readout == "goal" else nn.Linear(h, 1)

    def make_drive(self, video: torch.Tensor) -> VideoDrive:
        return VideoDrive(torch.relu(self.encoder(video)), video)

    def initial_state(self, drive: VideoDrive) -> torch.Tensor:
        x = drive.frame(0)
        return x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])

    def step(self, drive: VideoDrive, h: torch.Tensor, t: int) -> torch.Tensor:
        x = drive.frame(t)
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * candidate

    def readout(self, h: torch.Tensor, drive: VideoDrive) -> torch.Tensor:
        if isinstance(self.head, GoalReadout):
            return self.head(h, drive.goal)
        return self.head(h.mean(dim=(2, 3)))


@register_backbone(
    "convgru",
    ConvGRUConfig,
    spatial_dims=3,
    recurrent=True,
    input_kind="video",
    description="ConvGRU over frames with InT's goal readout (tracking baseline)",
)
def convgru(cfg: ConvGRUConfig) -> ConvGRU:
    """Create a :class:`ConvGRU`.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("convgru", channels=4, hidden_channels=4, kernel_size=3)
    >>> net(torch.rand(2, 3, 3, 12, 12)).shape
    torch.Size([2, 1])
    """
    return ConvGRU(cfg)
