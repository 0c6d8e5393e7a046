"""fGRU backbones in 2D and 3D: a front-end convolution and one horizontal fGRU layer, dense readout.

The smallest gamma-Net building block on its own (Linsley et al., ICLR 2020): the front end computes the
drive Z once, the horizontal :class:`shared.backbones.cells.FGRUCell` (anisotropic kernels such as 1x9x9 or
3x7x7 in 3D) iterates on it for T steps starting from H = Z, and a 1x1 convolution reads out every voxel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn

from shared.backbones.cells import FGRUCell, check_fgru_options
from shared.backbones.layers import as_tuple, conv_nd
from shared.backbones.recurrent import RecurrentBackbone, RecurrentConfig
from shared.backbones.registry import register_backbone


def check_odd_kernel(value: int | tuple[int, ...] | None, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless every entry of a kernel size is a positive odd int."""
    if value is None:
        return
    sizes = (value,) if isinstance(value, int) else value
    if not sizes or any(s < 1 or s % 2 == 0 for s in sizes):
        raise ValueError(f"{name} must be positive odd integer(s), got {value}")


@dataclass
class FGRUCellConfig(RecurrentConfig):
    """The fGRU options shared by the fGRU and gamma-Net backbones (see :class:`FGRUCell`).

    attention : gain-gate input, ``"gala"`` (GALA attention) or ``"none"`` (a 1x1 convolution). None:
        ``"gala"`` in 2D (the default of serre-lab/gammanet_pytorch), ``"none"`` in 3D (the EM gamma-Net of
        drewlinsley/ffn_membrane has no attention).
    norm_order : ``"output"`` (``C = N(W * x)``, both references) or ``"input"`` (``C = W * N(x)``).
    gate_bias : ``"before_norm"`` (both references) or ``"after_norm"``.
    scalar_init : ``"gammanet_pytorch"`` (alpha 0.1, mu 1, kappa 0.5, omega 0.5) or ``"htdfgru"``
        (alpha 1, mu 0, kappa 0, omega 1).
    """

    attention: Literal["gala", "none"] | None = None
    norm_order: Literal["output", "input"] = "output"
    gate_bias: Literal["before_norm", "after_norm"] = "before_norm"
    scalar_init: Literal["gammanet_pytorch", "htdfgru"] = "gammanet_pytorch"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fgru_options(
            norm_order=self.norm_order,
            gate_bias=self.gate_bias,
            scalar_init=self.scalar_init,
            attention=self.attention or "none",
        )

    def cell_options(self, dims: int) -> dict[str, Any]:
        """Keyword arguments of :class:`FGRUCell` for a ``dims``-D model."""
        attention = self.attention or ("gala" if dims == 2 else "none")
        return {
            "norm": self.norm,
            "norm_order": self.norm_order,
            "gate_bias": self.gate_bias,
            "scalar_init": self.scalar_init,
            "attention": attention,
        }


@dataclass
class FGRUConfig(FGRUCellConfig):
    """fGRU backbone (see :class:`FGRUCellConfig` and :class:`shared.backbones.recurrent.RecurrentConfig`).

    hidden_channels : channels of the front end and the fGRU.
    frontend_kernel : odd front-end kernel per axis; None: 5 in 2D, (1, 5, 5) in 3D (the EM gamma-Net).
    kernel_size : odd horizontal kernel per axis; None: 9 in 2D, (3, 7, 7) in 3D.
    norm : default ``"instance"`` (parameter-free, as in gamma-Net).
    """

    hidden_channels: int = 16
    frontend_kernel: int | tuple[int, ...] | None = None
    kernel_size: int | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_channels < 1:
            raise ValueError(f"hidden_channels must be >= 1, got {self.hidden_channels}")
        check_odd_kernel(self.frontend_kernel, "frontend_kernel")
        check_odd_kernel(self.kernel_size, "kernel_size")


class FGRUNet(RecurrentBackbone):
    """Front end -> horizontal fGRU for T steps -> optional 1x1 readout, at the input resolution."""

    def __init__(self, cfg: FGRUConfig, spatial_dims: int) -> None:
        super().__init__(cfg, spatial_dims)
        d, k = spatial_dims, cfg.hidden_channels
        front = cfg.frontend_kernel if cfg.frontend_kernel is not None else (5 if d == 2 else (1, 5, 5))
        horizontal = cfg.kernel_size if cfg.kernel_size is not None else (9 if d == 2 else (3, 7, 7))
        self.frontend = conv_nd(d, cfg.in_channels, k, as_tuple(front, d, name="frontend_kernel"))
        self.cell = FGRUCell(
            d,
            k,
            kernel_size=as_tuple(horizontal, d, name="kernel_size"),
            timesteps=cfg.timesteps,
            **cfg.cell_options(d),
        )
        self.head = conv_nd(d, k, cfg.out_channels, 1) if cfg.out_channels else nn.Identity()
        self.out_channels = cfg.out_channels or k

    def make_drive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.frontend(x))

    def initial_state(self, drive: torch.Tensor) -> torch.Tensor:
        return drive  # gamma-Net: the first hidden state equals the drive

    def step(self, drive: torch.Tensor, h: torch.Tensor, t: int) -> torch.Tensor:
        return self.cell(drive, h, t)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)


@register_backbone(
    "fgru2d",
    FGRUConfig,
    spatial_dims=2,
    recurrent=True,
    description="2D front end + one horizontal fGRU, dense readout",
)
def fgru2d(cfg: FGRUConfig) -> FGRUNet:
    return FGRUNet(cfg, 2)


@register_backbone(
    "fgru3d",
    FGRUConfig,
    spatial_dims=3,
    recurrent=True,
    description="3D front end + one horizontal fGRU (anisotropic kernels), dense readout",
)
def fgru3d(cfg: FGRUConfig) -> FGRUNet:
    """Create a 3D :class:`FGRUNet`.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("fgru3d", hidden_channels=4, kernel_size=(1, 5, 5), timesteps=2, out_channels=3)
    >>> net(torch.rand(1, 1, 4, 12, 12)).shape
    torch.Size([1, 3, 4, 12, 12])
    """
    return FGRUNet(cfg, 3)
