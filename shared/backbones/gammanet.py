"""gamma-Net in 2D and 3D: a U-Net-like hierarchy of horizontal and top-down fGRUs, full-resolution readout.

After Linsley et al. ("Recurrent neural circuits for contour detection", ICLR 2020, and the EM gamma-Net of
arXiv 1811.11356). The state is one tensor per level, ``(h_0, ..., h_{L-1})``, level ``l`` at the resolution
after ``l`` poolings. One timestep, given the front-end drive Z (computed once)::

    bottom-up:  s_0 = hfGRU_0(Z, h_0)
                s_l = hfGRU_l(E_l(pool(s_{l-1})), h_l)                  l = 1 .. L-1
    top-down:   s_l <- s_l + tdfGRU_l(Z = s_l, H = up(R_l(s_{l+1})))   l = L-2 .. 0
    new state:  (s_0, ..., s_{L-1})

``E_l`` is an encoder convolution -> norm -> ReLU (part of the recurrent step, as the VGG layers are in
gamma-Net), ``R_l`` a 1x1 reduction to the lower level's channels -> ReLU, ``up`` bilinear/trilinear
resizing (the BSDS model; the EM model used transposed convolutions), and the top-down fGRUs have 1x1(x1)
kernels. The initial state is one feed-forward pass (h_0 = Z, h_l = E_l(pool(h_{l-1}))), so "the first
hidden state equals the drive". The readout is a 1x1 convolution of h_0 at the input resolution.

The fGRUs follow serre-lab/gammanet_pytorch ``fGRUCell2`` by default (normalised kernel outputs, gate
biases before the gate norms, its scalar initialisation, affine instance norms at scale 0.1), with GALA
attention in every gain gate in 2D (``attention``; the default of that port's ``models/base_gammanet.py``)
and none in 3D (the EM gamma-Net of drewlinsley/ffn_membrane has none); see
:mod:`shared.backbones.cells` for the remaining differences.

Not reproduced: the VGG16 ImageNet front end of the BSDS model; the learned sigmoid mixing of bottom-up
and top-down states of the EM model (the residual add follows the BSDS description and
``models/base_gammanet.py``); that file's top-down step, which mixes towards the low-level state
(``fGRUCell2_td``: ``(1 - G2) . Z + G2 . H~``) where ours mixes towards the top-down hidden state; and its
norm before the readout. Per-timestep BN (the EM model) is available as ``norm="batch_per_step"`` for
BPTT only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from shared.backbones.cells import FGRUCell, StepNorm
from shared.backbones.fgru import FGRUCellConfig, check_odd_kernel
from shared.backbones.layers import as_tuple, conv_nd, max_pool, resize_to
from shared.backbones.recurrent import RecurrentBackbone
from shared.backbones.registry import register_backbone

Kernel = int | tuple[int, ...]


@dataclass
class GammaNetConfig(FGRUCellConfig):
    """gamma-Net (see :class:`shared.backbones.fgru.FGRUCellConfig` for the fGRU options and
    :class:`shared.backbones.recurrent.RecurrentConfig` for the shared keys).

    features : channels per level, fine to coarse (>= 1 level).
    downsample : pooling factor per level transition (``len(features) - 1`` entries, one value per axis,
        e.g. ``((1, 2, 2), (1, 2, 2), (2, 2, 2))`` for anisotropic EM); None: 2 per axis in 2D, (1, 2, 2)
        in 3D.
    kernel_sizes : odd horizontal fGRU kernel per level; None: 7, 5, 3, 3, ... in 2D and (1, 9, 9),
        (3, 7, 7), (3, 5, 5), (3, 3, 3), ... in 3D (the EM gamma-Net).
    frontend_kernel : odd front-end kernel; None: 5 in 2D, (1, 5, 5) in 3D.
    encoder_kernel : odd kernel of the encoder convolution entering each coarser level; None: 3 in 2D,
        (1, 3, 3) in 3D.
    """

    features: tuple[int, ...] = (16, 32, 48)
    downsample: tuple[tuple[int, ...], ...] | None = None
    kernel_sizes: tuple[Kernel, ...] | None = None
    frontend_kernel: Kernel | None = None
    encoder_kernel: Kernel | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.features or any(f < 1 for f in self.features):
            raise ValueError(f"features must be a non-empty tuple of positive ints, got {self.features}")
        levels = len(self.features)
        if self.downsample is not None:
            if len(self.downsample) != levels - 1:
                raise ValueError(
                    f"downsample needs {levels - 1} entries (one per level transition), got {len(self.downsample)}"
                )
            if any(f < 1 for factor in self.downsample for f in factor):
                raise ValueError(f"downsample factors must be >= 1, got {self.downsample}")
        if self.kernel_sizes is not None:
            if len(self.kernel_sizes) != levels:
                raise ValueError(f"kernel_sizes needs {levels} entries (one per level), got {len(self.kernel_sizes)}")
            for i, k in enumerate(self.kernel_sizes):
                check_odd_kernel(k, f"kernel_sizes[{i}]")
        check_odd_kernel(self.frontend_kernel, "frontend_kernel")
        check_odd_kernel(self.encoder_kernel, "encoder_kernel")


def _default_kernels(levels: int, dims: int) -> list[tuple[int, ...]]:
    if dims == 2:
        return [(max(3, 7 - 2 * i),) * 2 for i in range(levels)]
    published = [(1, 9, 9), (3, 7, 7), (3, 5, 5)]
    return [published[i] if i < len(published) else (3, 3, 3) for i in range(levels)]


class GammaNet(RecurrentBackbone):
    """Hierarchy of horizontal fGRUs with top-down fGRUs; output (batch, out_channels, *input spatial)."""

    def __init__(self, cfg: GammaNetConfig, spatial_dims: int) -> None:
        super().__init__(cfg, spatial_dims)
        d, feats, T = spatial_dims, list(cfg.features), cfg.timesteps
        levels = len(feats)
        aniso = (1,) + (2,) * (d - 1) if d == 3 else (2,) * d
        self.factors = (
            [as_tuple(f, d, name="downsample") for f in cfg.downsample] if cfg.downsample else [aniso] * (levels - 1)
        )
        kernels = (
            [as_tuple(k, d, name="kernel_sizes") for k in cfg.kernel_sizes]
            if cfg.kernel_sizes
            else _default_kernels(levels, d)
        )
        front = cfg.frontend_kernel if cfg.frontend_kernel is not None else (5 if d == 2 else (1, 5, 5))
        enc = cfg.encoder_kernel if cfg.encoder_kernel is not None else (3 if d == 2 else (1, 3, 3))
        self.frontend = conv_nd(d, cfg.in_channels, feats[0], as_tuple(front, d, name="frontend_kernel"))
        self.encoders = nn.ModuleList(
            conv_nd(d, feats[i - 1], feats[i], as_tuple(enc, d, name="encoder_kernel"), bias=False)
            for i in range(1, levels)
        )
        fgru = cfg.cell_options(d)
        self.encoder_norms = nn.ModuleList(StepNorm(cfg.norm, feats[i], d, T) for i in range(1, levels))
        self.horizontal = nn.ModuleList(
            FGRUCell(d, feats[i], kernel_size=kernels[i], timesteps=T, **fgru) for i in range(levels)
        )
        self.reductions = nn.ModuleList(conv_nd(d, feats[i + 1], feats[i], 1) for i in range(levels - 1))
        self.topdown = nn.ModuleList(
            FGRUCell(d, feats[i], kernel_size=1, timesteps=T, **fgru) for i in range(levels - 1)
        )
        self.head = conv_nd(d, feats[0], cfg.out_channels, 1) if cfg.out_channels else nn.Identity()
        self.out_channels = cfg.out_channels or feats[0]

    def encode(self, level: int, finer: torch.Tensor, t: int) -> torch.Tensor:
        """Drive of ``level`` >= 1 from the finer level's state: pool -> conv -> norm -> ReLU."""
        y = self.encoders[level - 1](max_pool(finer, self.factors[level - 1]))
        return torch.relu(self.encoder_norms[level - 1](y, t))

    def make_drive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.frontend(x))

    def initial_state(self, drive: torch.Tensor) -> tuple[torch.Tensor, ...]:
        states = [drive]
        for level in range(1, len(self.horizontal)):
            states.append(self.encode(level, states[-1], 0))
        return tuple(states)

    def step(self, drive: torch.Tensor, h: tuple[torch.Tensor, ...], t: int) -> tuple[torch.Tensor, ...]:
        s: list[torch.Tensor] = []
        for level, cell in enumerate(self.horizontal):
            z = drive if level == 0 else self.encode(level, s[-1], t)
            s.append(cell(z, h[level], t))
        for level in reversed(range(len(self.topdown))):
            top = resize_to(torch.relu(self.reductions[level](s[level + 1])), s[level])
            s[level] = s[level] + self.topdown[level](s[level], top, t)
        return tuple(s)

    def readout(self, h: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.head(h[0])


@register_backbone(
    "gammanet2d",
    GammaNetConfig,
    spatial_dims=2,
    recurrent=True,
    description="2D gamma-Net: horizontal + top-down fGRU hierarchy, full-resolution readout",
)
def gammanet2d(cfg: GammaNetConfig) -> GammaNet:
    """Create a 2D :class:`GammaNet`.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("gammanet2d", features=(4, 8), timesteps=3, out_channels=2)
    >>> net(torch.rand(1, 1, 16, 16)).shape
    torch.Size([1, 2, 16, 16])
    """
    return GammaNet(cfg, 2)


@register_backbone(
    "gammanet3d",
    GammaNetConfig,
    spatial_dims=3,
    recurrent=True,
    description="3D gamma-Net with anisotropic kernels/pooling for EM volumes",
)
def gammanet3d(cfg: GammaNetConfig) -> GammaNet:
    """Create a 3D :class:`GammaNet`.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("gammanet3d", features=(4, 8, 8), downsample=((1, 2, 2), (2, 2, 2)), timesteps=2)
    >>> net(torch.rand(1, 1, 4, 16, 16)).shape
    torch.Size([1, 4, 4, 16, 16])
    """
    return GammaNet(cfg, 3)
