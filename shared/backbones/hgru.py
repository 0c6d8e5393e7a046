"""The hGRU backbone (2D): a convolutional front end, one hGRU layer, a dense readout at input resolution.

Follows the Pathfinder model of Linsley et al. (NeurIPS 2018): a 7x7 front end (published: 25
Gabor-initialised filters, squared) drives one hGRU with a large horizontal kernel (published 15x15, T 8);
the cell is the C-RBP-era form of :class:`shared.backbones.cells.HGRUCell` (separate inhibitory and
excitatory kernels, softplus, zero initial state). Classification heads (global pooling) belong to the
task, e.g. :mod:`shared.pathfinder`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from shared.backbones.cells import HGRUCell
from shared.backbones.gabor import gabor_bank
from shared.backbones.layers import conv_nd
from shared.backbones.recurrent import RecurrentBackbone, RecurrentConfig, RecurrentNorm
from shared.backbones.registry import register_backbone


@dataclass
class HGRUConfig(RecurrentConfig):
    """hGRU backbone (see :class:`shared.backbones.recurrent.RecurrentConfig` for the shared keys).

    hidden_channels : K, the front-end and hGRU channels (published 25).
    frontend_kernel : odd size of the front-end convolution (published 7).
    frontend : front-end nonlinearity: ``"square"`` (the published energy model) or ``"relu"``.
    frontend_init : ``"gabor"`` (default, the published front end: :func:`shared.backbones.gabor.gabor_bank`,
        oriented zero-mean unit-norm Gabors plus a luminance filter) or ``"random"`` (PyTorch's default
        convolution init). With ``"gabor"`` and several input channels each filter sees the channel mean.
    frontend_bias : give the front-end convolution a bias (the reference ports keep PyTorch's default
        bias; with ``frontend_init="gabor"`` it starts at zero, as in hgru-pytorch). Default False: with
        ``frontend="square"`` a bias b turns into a constant drive b^2 everywhere, plus a 2bw cross term,
        which can flood the background and swamp the contours.
    frontend_padding : ``"reflect"`` (default) or ``"zeros"``. With zero padding the front end sees an
        artificial edge at the image border that the square turns into strong drive, and the hGRU then
        spreads and integrates that frame instead of the contours (visible in ``return_steps`` figures).
    kernel_size : odd horizontal kernel size (published 15).
    horizontal_padding : ``"reflect"`` (default) or ``"zeros"`` (the references) at the border of the
        horizontal convolutions; see :class:`shared.backbones.cells.HGRUCell` for why and the measurement.
    share_kernel : one horizontal kernel for inhibition and excitation (the 2018 cell) instead of two;
        None: True for ``variant="2018"``, else False.
    nonlinearity : ``"softplus"`` (C-RBP cell), ``"relu"`` (hgru-pytorch) or ``"tanh"`` (2018 TF cell);
        None: tanh for ``variant="2018"``, else softplus.
    variant : ``"crbp"`` (the C-RBP-era cell) or ``"2018"`` (serre-lab/hgru_share: tanh, one shared
        kernel, a learned ``eta_t`` per timestep; see :class:`shared.backbones.cells.HGRUCell`). The
        per-step eta is not C-RBP-compatible, so ``"2018"`` is rejected with ``mode="crbp"``.
    norm_scale : initial scale of the C1/C2 norms (default 0.1, the TF hGRU's and c-rbp's). At 0.1 the
        normalised horizontal maps start about ten times weaker than the Gabor drive, so the untrained
        circuit is nearly feed-forward (measured on the demo's Pathfinder images: mean |C2| 0.06 against
        mean |H1| 0.42). The demo uses 0.5, a measured difference from the references: 3 seeds reach test
        accuracy 0.86-0.90 in its 800 steps, against 0.66-0.86 at 0.1 (BENCHMARKS.md, "Pathfinder demo").
    norm : default ``"batch_stats"``: the C-RBP cell normalises C1 and C2 with BatchNorm that keeps no
        running statistics (``track_running_stats=False`` in c-rbp ``hgrucleanSEG.py``), so training and
        evaluation both use the batch's statistics. ``"batch"`` (running statistics shared across
        timesteps) gives a train/test mismatch: the states' statistics change from step to step.
    """

    hidden_channels: int = 25
    frontend_kernel: int = 7
    frontend: Literal["square", "relu"] = "square"
    frontend_init: Literal["gabor", "random"] = "gabor"
    frontend_bias: bool = False
    frontend_padding: Literal["reflect", "zeros"] = "reflect"
    kernel_size: int = 15
    horizontal_padding: Literal["reflect", "zeros"] = "reflect"
    share_kernel: bool | None = None
    nonlinearity: Literal["softplus", "relu", "tanh"] | None = None
    variant: Literal["crbp", "2018"] = "crbp"
    norm_scale: float = 0.1
    norm: RecurrentNorm = "batch_stats"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.norm_scale > 0:
            raise ValueError(f"norm_scale must be > 0, got {self.norm_scale}")
        if self.hidden_channels < 1:
            raise ValueError(f"hidden_channels must be >= 1, got {self.hidden_channels}")
        if self.frontend_init not in ("gabor", "random"):
            raise ValueError(f"frontend_init must be 'gabor' or 'random', got {self.frontend_init!r}")
        if self.frontend_padding not in ("reflect", "zeros"):
            raise ValueError(f"frontend_padding must be 'reflect' or 'zeros', got {self.frontend_padding!r}")
        if self.horizontal_padding not in ("reflect", "zeros"):
            raise ValueError(f"horizontal_padding must be 'reflect' or 'zeros', got {self.horizontal_padding!r}")
        if self.variant not in ("crbp", "2018"):
            raise ValueError(f"variant must be 'crbp' or '2018', got {self.variant!r}")
        if self.variant == "2018" and self.mode == "crbp":
            raise ValueError(
                "variant='2018' scales the state by a learned eta per timestep, so the step is not "
                "the same map at every timestep; mode='crbp' needs variant='crbp' (use "
                "mode='bptt' or 'truncated' for the 2018 hGRU)"
            )
        for name in ("frontend_kernel", "kernel_size"):
            value = getattr(self, name)
            if value < 1 or value % 2 == 0:
                raise ValueError(f"{name} must be a positive odd integer, got {value}")


class HGRUNet(RecurrentBackbone):
    """Front end -> hGRU for T steps -> optional 1x1 readout; output (batch, out_channels, row, column)."""

    def __init__(self, cfg: HGRUConfig) -> None:
        super().__init__(cfg, 2)
        k = cfg.hidden_channels
        self.frontend = nn.Conv2d(
            cfg.in_channels,
            k,
            cfg.frontend_kernel,
            padding=cfg.frontend_kernel // 2,
            bias=cfg.frontend_bias,
            padding_mode=cfg.frontend_padding,
        )
        if cfg.frontend_init == "gabor":
            with torch.no_grad():
                bank = gabor_bank(k, cfg.frontend_kernel, luminance=k > 1)
                self.frontend.weight.copy_(bank.expand(-1, cfg.in_channels, -1, -1) / cfg.in_channels)
                if self.frontend.bias is not None:
                    self.frontend.bias.zero_()
        self.square = cfg.frontend == "square"
        self.cell = HGRUCell(
            k,
            kernel_size=cfg.kernel_size,
            timesteps=cfg.timesteps,
            norm=cfg.norm,
            share_kernel=cfg.share_kernel,
            nonlinearity=cfg.nonlinearity,
            variant=cfg.variant,
            padding=cfg.horizontal_padding,
            norm_scale=cfg.norm_scale,
        )
        self.head = conv_nd(2, k, cfg.out_channels, 1) if cfg.out_channels else nn.Identity()
        self.out_channels = cfg.out_channels or k

    def make_drive(self, x: torch.Tensor) -> torch.Tensor:
        y = self.frontend(x)
        return y * y if self.square else torch.relu(y)

    def initial_state(self, drive: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(drive)

    def step(self, drive: torch.Tensor, h: torch.Tensor, t: int) -> torch.Tensor:
        return self.cell(drive, h, t)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)


@register_backbone(
    "hgru",
    HGRUConfig,
    spatial_dims=2,
    recurrent=True,
    description="2D hGRU: conv front end, one hGRU layer, dense readout",
)
def hgru(cfg: HGRUConfig) -> HGRUNet:
    """Create an :class:`HGRUNet`.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("hgru", hidden_channels=4, kernel_size=5, timesteps=3)
    >>> net(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2, 4, 16, 16])
    """
    return HGRUNet(cfg)
