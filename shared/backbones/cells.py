"""hGRU and fGRU cells: one step ``cell(drive, h, t) -> h`` of a circuit with horizontal connections.

All cells follow ONE gate convention, the one of the PyTorch ports (hgru-pytorch, c-rbp, gammanet_pytorch)
and of gamma-Net::

    H[t] = (1 - G2) . H[t-1] + G2 . H~          (G2: the "mix" gate, 0 keeps the old state)

and share these construction rules:

* **Channel-symmetric horizontal kernels by parameterisation.** Each horizontal kernel is stored as a free
  tensor ``A`` of shape (out, in, *kernel) and used as ``W = 1/2 (A + A^T)`` (transpose over the out/in
  channel axes; the spatial layout is not mirrored). W stays symmetric after any optimiser step; the TF code
  symmetrised the gradient of a symmetric-initialised W instead, and the PyTorch ports initialise W
  orthogonally and never symmetrise the weight itself.
* **Chrono gate-bias initialisation with the real T** (Tallec & Ollivier 2018): ``b = log U[1, T - 1]``.
  Gain gate ``b_gain = -log U`` and mix gate ``b_mix = -log U`` (under our convention a negative mix bias
  starts the cell near keeping its state, which is what TF's ``b2 = +log U`` does under the TF
  convention). The bias tensor is overwritten in place; the PyTorch ports discard a non-in-place
  ``.log()`` and hard-code T = 8, so their chrono init is a no-op.
* **Time-invariant normalisation** (``norm``): ``"batch"`` (one BatchNorm shared by all steps),
  ``"group"``, ``"instance"`` (parameter-free) or ``"none"`` compute the same map at every step, as C-RBP
  requires. ``"batch_per_step"`` keeps one BatchNorm per timestep, as in hgru-pytorch and the TF
  ``hgru_bn_for``/EM gamma-Net, for BPTT fidelity only; the recurrent backbones reject it in C-RBP mode.

Mapping published checkpoints onto these cells
----------------------------------------------
No converter ships here (no public weights can be downloaded in this environment); this is the recipe.

* **Gate flip, TF -> ours.** TF code (serre-lab/hgru_share, drewlinsley/htdfgru_disentangling) updates
  ``H = G2 . H_old + (1 - G2) . H~``, so ``G2_ours = 1 - G2_tf``: negate the mix-gate kernel ``U2`` and its
  bias ``b2`` (``sigma(-z) = 1 - sigma(z)``). Where TF normalises the mix-gate pre-activation with a
  scale-only BN, negate that BN's scale instead of ``U2`` (``BN`` without centring is odd in its input).
  The gain gate G1 needs no flip.
* **Kernels.** TF stores HWIO ``(k, k, in, out)`` (3D: DHWIO); transpose to ``(out, in, *k)`` and load it
  as ``A``. A kernel that is already channel-symmetric loads exactly (``1/2 (A + A^T) = A``). PyTorch
  ports do not guarantee a symmetric W, so loading their ``w_gate_inh``/``w_gate_exc`` as ``A`` projects
  them onto the symmetric part: compare outputs after loading. The 2018 hGRU shares one W
  (``share_kernel=True``).
* **Names, PyTorch -> ours** (c-rbp ``hgrucleanSEG.py``, rnn_rts, hgru-pytorch, gammanet_pytorch use our
  convention): ``u1_gate`` -> ``gain``, ``u2_gate`` -> ``mix`` (their conv biases -> ``gain_bias`` /
  ``mix_bias``), ``w_gate_inh`` / ``w_gate_exc`` -> ``inh.A`` / ``exc.A``, ``alpha, mu, gamma, kappa, w``
  -> ``alpha, mu, gamma, kappa, omega``, their BNs on C1/C2 -> ``norm_inh`` / ``norm_exc``.
* **What does not map.** The TF hGRU's per-timestep ``eta_t`` and per-timestep BN make the step differ
  across time (no fixed point); load such BN statistics into ``norm="batch_per_step"`` (BPTT only) and
  there is no slot for ``eta_t``. The TF hGRU also normalises the gate pre-activations and uses tanh for
  xi/zeta, while :class:`HGRUCell` is the C-RBP-era cell (no gate norm, softplus), so a TF hGRU
  checkpoint is only approximately reproduced. The fGRU of gamma-Net normalises gates and kernel inputs
  like :class:`FGRUCell`; the TD+H-CNN fGRU additionally has gamma and scale-only BN (not modelled).

Unverified against the papers (checked against the public code only): the exact letter/parameter
scaling C2 in the hGRU candidate (code: gamma), tanh vs ReLU/softplus in the reported hGRU, the sign of
the gamma-Net mix-gate chrono bias (the reference lists ``+log U`` under the (1 - G2) convention, which
would favour the candidate; we follow Tallec & Ollivier and start near "keep"), and the gamma-Net
defaults alpha 1, mu 0, kappa 0, omega 1.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.backbones.layers import as_tuple, make_norm

CELL_NORMS = ("batch", "batch_stats", "group", "instance", "none", "batch_per_step")


def conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """'Same' convolution of (batch, channel, *spatial) ``x`` with an odd kernel (out, in, *kernel)."""
    padding = tuple(k // 2 for k in weight.shape[2:])
    fn = F.conv2d if x.ndim == 4 else F.conv3d
    return fn(x, weight, padding=padding)


class SymmetricConv(nn.Module):
    """Channel-symmetric 'same' convolution without bias: ``W = 1/2 (A + A^T)`` over the channel axes.

    Parameters
    ----------
    dims : 2 or 3 spatial dimensions.
    channels : input = output channels.
    kernel_size : odd size per spatial axis, e.g. 15 or (3, 7, 7).
    """

    def __init__(self, dims: int, channels: int, kernel_size: int | Sequence[int]) -> None:
        super().__init__()
        k = as_tuple(kernel_size, dims, name="kernel_size")
        if any(s % 2 == 0 or s < 1 for s in k):
            raise ValueError(f"horizontal kernel_size must be odd and positive on every axis, got {k}")
        self.A = nn.Parameter(torch.empty(channels, channels, *k))
        nn.init.xavier_normal_(self.A)

    @property
    def weight(self) -> torch.Tensor:
        """The symmetric kernel (channels, channels, *kernel)."""
        return 0.5 * (self.A + self.A.transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv(x, self.weight)


def chrono_bias_(bias: torch.Tensor, timesteps: int, *, sign: float) -> torch.Tensor:
    """Chrono initialisation in place: ``bias = sign * log U[1, T - 1]`` (all zeros when T <= 2).

    Examples
    --------
    >>> import math
    >>> b = torch.empty(1000)
    >>> _ = chrono_bias_(b, 8, sign=-1.0)
    >>> bool((b <= 0).all()) and float(b.min()) >= -math.log(7)
    True
    """
    upper = max(timesteps - 1, 1)
    with torch.no_grad():
        bias.copy_(sign * torch.empty_like(bias).uniform_(1.0, float(upper)).log_())
    return bias


class StepNorm(nn.Module):
    """A normalisation called as ``norm(x, t)``: one shared map, or one BatchNorm per timestep.

    ``init_scale`` (when given) makes the norm affine with its scale initialised to that value and its
    shift to 0. The published cells start every norm inside the circuit at scale 0.1 (TF hGRU: scale-only
    BN at 0.1; the gamma-Net PyTorch port: affine instance norms at 0.1): with unit-variance maps the
    quadratic excitation ``omega . H1 . C2`` multiplies the state by O(1) per step, and gamma-Net's state
    then grows ~1e9-fold in 6 steps at initialisation (overflowing float16 under AMP).
    """

    def __init__(self, kind: str, channels: int, dims: int, timesteps: int, *,
                 init_scale: float | None = None) -> None:
        super().__init__()
        if kind not in CELL_NORMS:
            raise ValueError(f"norm must be one of {', '.join(map(repr, CELL_NORMS))}; got {kind!r}")
        self.per_step = kind == "batch_per_step"
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.norms = nn.ModuleList(
            [bn(channels) for _ in range(timesteps)] if self.per_step
            else [make_norm(kind, channels, dims, affine=init_scale is not None)])
        if init_scale is not None:
            for norm in self.norms:
                if getattr(norm, "weight", None) is not None:
                    nn.init.constant_(norm.weight, init_scale)
                    nn.init.zeros_(norm.bias)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.norms[min(t, len(self.norms) - 1) if self.per_step else 0](x)


def _channel_param(channels: int, dims: int, value: float) -> nn.Parameter:
    return nn.Parameter(torch.full((1, channels) + (1,) * dims, float(value)))


def _one_by_one(dims: int, channels: int) -> nn.Module:
    layer = (nn.Conv2d if dims == 2 else nn.Conv3d)(channels, channels, 1, bias=False)
    nn.init.xavier_normal_(layer.weight)
    return layer


class _GatedCell(nn.Module, abc.ABC):
    """Shared plumbing: gates, chrono biases, per-channel parameters, norms."""

    def __init__(self, dims: int, channels: int, timesteps: int) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        if channels < 1 or timesteps < 1:
            raise ValueError(f"channels and timesteps must be >= 1, got {channels}, {timesteps}")
        self.dims, self.channels, self.timesteps = dims, channels, timesteps
        self.gain = _one_by_one(dims, channels)
        self.mix = _one_by_one(dims, channels)
        self.gain_bias = nn.Parameter(torch.empty(channels))
        self.mix_bias = nn.Parameter(torch.empty(channels))
        self.reset_chrono(timesteps)

    def reset_chrono(self, timesteps: int) -> None:
        """Re-draw the chrono gate biases for ``timesteps`` steps (gain and mix both ``-log U[1, T-1]``)."""
        chrono_bias_(self.gain_bias, timesteps, sign=-1.0)
        chrono_bias_(self.mix_bias, timesteps, sign=-1.0)

    def _bias(self, b: torch.Tensor) -> torch.Tensor:
        return b.view((1, -1) + (1,) * self.dims)

    def forward(self, drive: torch.Tensor, h: torch.Tensor, t: int = 0) -> torch.Tensor:
        """One step: drive and state (batch, channels, *spatial) -> new state, same shape."""
        return self.step(drive, h, t)[0]

    @abc.abstractmethod
    def step(self, drive: torch.Tensor, h: torch.Tensor, t: int = 0) -> tuple[torch.Tensor, dict]:
        """One step returning the new state and a dict of named intermediate maps (gates, H1/S)."""


class HGRUCell(_GatedCell):
    """The hGRU (Linsley et al. 2018) in its C-RBP-era form (c-rbp ``hgrucleanSEG.py``, 2D).

    One step, with ``sp`` the nonlinearity (softplus by default) and N the normalisation::

        G1 = sigma(U1 * H + b_gain)
        C1 = N(W_inh * (H . G1))
        H1 = sp(X - sp(C1 . (alpha . H + mu)))              # suppression
        G2 = sigma(U2 * H1 + b_mix)
        C2 = N(W_exc * H1)
        H~ = sp(kappa . H1 + gamma . C2 + omega . H1 . C2)  # facilitation
        H  = sp((1 - G2) . H + G2 . H~)

    ``share_kernel=True`` uses one W for inhibition and excitation (the 2018 TF cell). Per-channel
    parameters start at the PyTorch port's constants alpha 0.1, mu 1, gamma 1, kappa 0.5, omega 0.5.

    Parameters
    ----------
    channels : K, the drive and state channels.
    kernel_size : odd horizontal kernel size (published 15).
    timesteps : T, for the chrono initialisation and ``batch_per_step``.
    norm : see :data:`CELL_NORMS`.
    share_kernel : one W for both horizontal convolutions.
    nonlinearity : ``"softplus"`` (C-RBP) or ``"relu"`` (hgru-pytorch).
    norm_scale : initial scale of the C1/C2 norms (TF hGRU: 0.1; see :class:`StepNorm`).

    Examples
    --------
    >>> cell = HGRUCell(4, kernel_size=5, timesteps=6)
    >>> h = cell(torch.rand(2, 4, 16, 16), torch.zeros(2, 4, 16, 16), 0)
    >>> h.shape
    torch.Size([2, 4, 16, 16])
    """

    def __init__(self, channels: int, *, kernel_size: int | Sequence[int] = 15, timesteps: int = 8,
                 norm: str = "batch", share_kernel: bool = False, nonlinearity: str = "softplus",
                 norm_scale: float = 0.1) -> None:
        super().__init__(2, channels, timesteps)
        if nonlinearity not in ("softplus", "relu"):
            raise ValueError(f"nonlinearity must be 'softplus' or 'relu', got {nonlinearity!r}")
        self.act = F.softplus if nonlinearity == "softplus" else F.relu
        self.inh = SymmetricConv(2, channels, kernel_size)
        self.exc = self.inh if share_kernel else SymmetricConv(2, channels, kernel_size)
        self.norm_inh = StepNorm(norm, channels, 2, timesteps, init_scale=norm_scale)
        self.norm_exc = StepNorm(norm, channels, 2, timesteps, init_scale=norm_scale)
        self.alpha = _channel_param(channels, 2, 0.1)
        self.mu = _channel_param(channels, 2, 1.0)
        self.gamma = _channel_param(channels, 2, 1.0)
        self.kappa = _channel_param(channels, 2, 0.5)
        self.omega = _channel_param(channels, 2, 0.5)

    def step(self, drive: torch.Tensor, h: torch.Tensor, t: int = 0) -> tuple[torch.Tensor, dict]:
        """One step; also returns the gates and H1 (``g1, c1, h1, g2, c2, candidate``) for figures."""
        act = self.act
        g1 = torch.sigmoid(self.gain(h) + self._bias(self.gain_bias))
        c1 = self.norm_inh(self.inh(h * g1), t)
        h1 = act(drive - act(c1 * (self.alpha * h + self.mu)))
        g2 = torch.sigmoid(self.mix(h1) + self._bias(self.mix_bias))
        c2 = self.norm_exc(self.exc(h1), t)
        candidate = act(self.kappa * h1 + self.gamma * c2 + self.omega * h1 * c2)
        new = act((1 - g2) * h + g2 * candidate)
        return new, {"g1": g1, "c1": c1, "h1": h1, "g2": g2, "c2": c2, "candidate": candidate}


class FGRUCell(_GatedCell):
    """The fGRU of gamma-Net (Linsley et al. 2020), 2D or 3D, horizontal or top-down.

    One step, with N the normalisation and ``[.]+`` ReLU::

        G1 = sigma(N(U1 * H) + b_gain)
        C1 = W_inh * N(H . G1)
        S  = [[Z]+ - [(alpha . H + mu) . C1]+]+
        G2 = sigma(N(U2 * S) + b_mix)
        C2 = W_exc * N(S)
        H~ = [kappa . (S + C2) + omega . (S . C2)]+
        H  = (1 - G2) . H + G2 . H~

    A *horizontal* fGRU carries H across time (its kernel is spatial, e.g. 1x9x9, 3x7x7, 3x5x5). A
    *top-down* fGRU (kernel 1) is called once per step with Z = the low-level state and H = the upsampled
    high-level state; gamma-Net adds its output to the low-level state.

    Parameters
    ----------
    dims : 2 or 3.
    channels : drive and state channels.
    kernel_size : odd horizontal kernel size per spatial axis.
    timesteps : T, for the chrono initialisation and ``batch_per_step``.
    norm : see :data:`CELL_NORMS` (gamma-Net: ``"instance"``).
    norm_scale : initial scale of the four norms (gamma-Net PyTorch port: 0.1; see :class:`StepNorm`).

    Examples
    --------
    >>> cell = FGRUCell(3, 4, kernel_size=(1, 5, 5), timesteps=4, norm="group")
    >>> z = torch.rand(1, 4, 3, 8, 8)
    >>> cell(z, z, 0).shape
    torch.Size([1, 4, 3, 8, 8])
    """

    def __init__(self, dims: int, channels: int, *, kernel_size: int | Sequence[int] = 3, timesteps: int = 8,
                 norm: str = "instance", norm_scale: float = 0.1) -> None:
        super().__init__(dims, channels, timesteps)
        self.inh = SymmetricConv(dims, channels, kernel_size)
        self.exc = SymmetricConv(dims, channels, kernel_size)
        self.norm_gain = StepNorm(norm, channels, dims, timesteps, init_scale=norm_scale)
        self.norm_inh = StepNorm(norm, channels, dims, timesteps, init_scale=norm_scale)
        self.norm_mix = StepNorm(norm, channels, dims, timesteps, init_scale=norm_scale)
        self.norm_exc = StepNorm(norm, channels, dims, timesteps, init_scale=norm_scale)
        self.alpha = _channel_param(channels, dims, 1.0)
        self.mu = _channel_param(channels, dims, 0.0)
        self.kappa = _channel_param(channels, dims, 0.0)
        self.omega = _channel_param(channels, dims, 1.0)

    def step(self, drive: torch.Tensor, h: torch.Tensor, t: int = 0) -> tuple[torch.Tensor, dict]:
        """One step; also returns the gates and S (``g1, c1, s, g2, c2, candidate``) for figures."""
        g1 = torch.sigmoid(self.norm_gain(self.gain(h), t) + self._bias(self.gain_bias))
        c1 = self.inh(self.norm_inh(h * g1, t))
        s = F.relu(F.relu(drive) - F.relu((self.alpha * h + self.mu) * c1))
        g2 = torch.sigmoid(self.norm_mix(self.mix(s), t) + self._bias(self.mix_bias))
        c2 = self.exc(self.norm_exc(s, t))
        candidate = F.relu(self.kappa * (s + c2) + self.omega * (s * c2))
        new = (1 - g2) * h + g2 * candidate
        return new, {"g1": g1, "c1": c1, "s": s, "g2": g2, "c2": c2, "candidate": candidate}


def has_per_step_norm(module: nn.Module) -> bool:
    """Whether any :class:`StepNorm` inside ``module`` keeps per-timestep statistics."""
    return any(isinstance(m, StepNorm) and m.per_step for m in module.modules())
