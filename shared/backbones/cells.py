"""hGRU and fGRU cells: one step ``cell(drive, h, t) -> h`` of a circuit with horizontal connections.

All cells follow ONE gate convention, the one of the PyTorch ports (hgru-pytorch, c-rbp, gammanet_pytorch's
``fGRUCell2``) and of gamma-Net::

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
  convention). The bias tensor is overwritten in place; the hGRU PyTorch ports (hgru-pytorch, c-rbp)
  discard a non-in-place ``.log()`` and hard-code T = 8, so their chrono init is a no-op.
  gammanet_pytorch's ``fGRUCell2`` applies it (gain ``+log U``, mix ``-log U``, T = 8 because its
  ``BaseGN`` never passes ``timesteps``), but before the gate norm, where it cancels (see below).
* **Time-invariant normalisation** (``norm``): ``"batch"`` (one BatchNorm shared by all steps, running
  statistics at test time), ``"batch_stats"`` (BatchNorm with batch statistics in training and testing,
  c-rbp's choice), ``"group"``, ``"instance"`` (per-sample statistics, gammanet_pytorch's choice) or
  ``"none"`` compute the same map at every step, as C-RBP requires. ``"batch_per_step"`` keeps one
  BatchNorm per timestep, as in hgru-pytorch and the TF ``hgru_bn_for``/EM gamma-Net, for BPTT fidelity
  only; the recurrent backbones reject it in C-RBP mode.

Fidelity to the reference code
------------------------------
Checked against serre-lab/gammanet_pytorch ``layers/fgru_base.py`` (``fGRUCell2``, used by
``models/base_gammanet.py``), drewlinsley/ffn_membrane
``membrane/layers/recurrent/feedback_hgru_constrained_3l.py`` (TF, 3D EM) and serre-lab/hgru_share
``layers/recurrent/hgru.py`` (2018 hGRU). Where :class:`FGRUCell` follows them by default:

* **Norm order.** Both references normalise the *output* of each horizontal convolution,
  ``C = N(W * x)``; so do we (``norm_order="output"``). ``"input"`` (``C = W * N(x)``) is kept as an
  option: it was this cell's earlier form, and no reference uses it.
* **Gate bias before the gate norm**, ``sigma(N(U * x + b))``, in both references (``gate_bias=
  "before_norm"``). A per-channel bias is removed by any norm that subtracts a per-channel mean
  (instance, batch, batch_stats), so the chrono bias has no effect there; ``"after_norm"`` keeps it.
* **Scalars** alpha 0.1, mu 1, kappa 0.5, omega 0.5 (``fGRUCell2``); ``scalar_init="htdfgru"`` gives
  alpha 1, mu 0, kappa 0, omega 1 (our earlier default, taken from the notes on htdfgru_disentangling,
  unverified), which switches the additive facilitation off at initialisation. ffn_membrane draws them
  Xavier-random (not modelled).
* **Norm kind.** ``fGRUCell2`` uses affine InstanceNorm2d at scale 0.1 with ``track_running_stats=False``
  (per-sample statistics in training and testing) on gates and C1/C2: ``norm="instance"``, the default of
  the fGRU and gamma-Net backbones. ffn_membrane uses scale-only BatchNorm with running statistics, one per
  timestep (``"batch_per_step"``, BPTT only).
* **GALA** in the gain gate (``attention="gala"``, :mod:`shared.backbones.gala`), the default of
  ``fGRUCell2`` and of the 2D gamma-Net backbones; ffn_membrane has none (3D default ``"none"``).

Differences that remain, by name: W is channel-symmetric by parameterisation (``fGRUCell2`` initialises
it orthogonally and leaves it free; ffn_membrane symmetrises the gradient); the fGRU's horizontal
convolutions pad with zeros (``fGRUCell2``: reflect; the :class:`HGRUCell` takes ``padding`` and reflects by
default, a measured difference from its zero-padding references); S keeps the ``[Z]+`` of the gamma-Net
equations (``fGRUCell2`` computes ``[Z - [.]+]+``, the same for the non-negative drives our backbones give
it); alpha is not squashed; chrono signs are ``-log U`` for both gates (``fGRUCell2``: gain ``+log U``, mix ``-log U``;
both cancelled by the default gate norm); the top-down fGRU mixes towards its hidden state H (the
upsampled high level) where ``fGRUCell2_td`` uses ``(1 - G2) . Z`` (see :mod:`shared.backbones.gammanet`);
no gamma on C2 (as in ``fGRUCell2``; the TF cells have one). The hGRU differences are in
:class:`HGRUCell`.

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
  across time (no fixed point); load such BN statistics into ``norm="batch_per_step"`` and ``eta_t`` into
  the ``eta`` of ``variant="2018"`` (both BPTT only). The TF ``hgru_bn*`` cells also normalise the gate
  pre-activations (not modelled), so their checkpoints are only approximately reproduced; the plain
  ``variant="2018"`` step with ``norm="none"`` is the one of
  ``layers/recurrent/hgru.py``. gammanet_pytorch's ``fGRUCell2`` maps onto
  :class:`FGRUCell` with its defaults (``conv_g1_w``/``conv_g2_w`` -> ``gain``/``mix``, ``bn_g1, bn_c1,
  bn_g2, bn_c2`` -> ``norm_gain, norm_inh, norm_mix, norm_exc``, ``attention.se``/``attention.sa`` ->
  ``gain.feature``/``gain.spatial``); the TD+H-CNN fGRU additionally has gamma and scale-only BN (not
  modelled).

Unverified against the papers (checked against the public code only): the exact letter/parameter
scaling C2 in the hGRU candidate (code: gamma), tanh vs ReLU/softplus in the reported hGRU, the sign of
the gamma-Net mix-gate chrono bias (the reference notes list ``+log U`` under the (1 - G2) convention,
which would favour the candidate; we follow Tallec & Ollivier and start near "keep"), and the
htdfgru_disentangling scalars alpha 1, mu 0, kappa 0, omega 1 (``scalar_init="htdfgru"``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.backbones.gala import GALAAttention
from shared.backbones.layers import as_tuple, make_norm

CELL_NORMS = ("batch", "group", "instance", "none", "batch_stats", "batch_per_step")


PADDINGS = ("zeros", "reflect")


def conv(x: torch.Tensor, weight: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """'Same' convolution of (batch, channel, *spatial) ``x`` with an odd kernel (out, in, *kernel).

    ``padding`` is ``"zeros"`` or ``"reflect"``; an axis too short to reflect (size <= half the kernel)
    is replicated instead.
    """
    half = tuple(k // 2 for k in weight.shape[2:])
    fn = F.conv2d if x.ndim == 4 else F.conv3d
    same: tuple[int, ...] | int = half
    if padding != "zeros" and any(half):
        mode = "reflect" if all(s > h for s, h in zip(x.shape[2:], half)) else "replicate"
        x, same = F.pad(x, [p for h in reversed(half) for p in (h, h)], mode=mode), 0  # last axis first
    if x.ndim == 4 and x.device.type == "cpu":
        # oneDNN's channels-last kernels: forward + backward of the demo hGRU's 8-channel 7x7 convolution
        # in about 0.8x the time of the default layout, conversions included (BENCHMARKS.md, "Pathfinder demo")
        return fn(x.contiguous(memory_format=torch.channels_last), weight, padding=same).contiguous()
    return fn(x, weight, padding=same)


class SymmetricConv(nn.Module):
    """Channel-symmetric 'same' convolution without bias: ``W = 1/2 (A + A^T)`` over the channel axes.

    Parameters
    ----------
    dims : 2 or 3 spatial dimensions.
    channels : input = output channels.
    kernel_size : odd size per spatial axis, e.g. 15 or (3, 7, 7).
    padding : ``"zeros"`` or ``"reflect"`` (see :func:`conv`).
    """

    def __init__(self, dims: int, channels: int, kernel_size: int | Sequence[int], padding: str = "zeros") -> None:
        super().__init__()
        k = as_tuple(kernel_size, dims, name="kernel_size")
        if any(s % 2 == 0 or s < 1 for s in k):
            raise ValueError(f"horizontal kernel_size must be odd and positive on every axis, got {k}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(map(repr, PADDINGS))}, got {padding!r}")
        self.padding = padding
        self.A = nn.Parameter(torch.empty(channels, channels, *k))
        nn.init.xavier_normal_(self.A)

    @property
    def weight(self) -> torch.Tensor:
        """The symmetric kernel (channels, channels, *kernel)."""
        return 0.5 * (self.A + self.A.transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv(x, self.weight, self.padding)


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

    def __init__(self, kind: str, channels: int, dims: int, timesteps: int, *, init_scale: float | None = None) -> None:
        super().__init__()
        if kind not in CELL_NORMS:
            raise ValueError(f"norm must be one of {', '.join(map(repr, CELL_NORMS))}; got {kind!r}")
        self.per_step = kind == "batch_per_step"
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.norms = nn.ModuleList(
            [bn(channels) for _ in range(timesteps)]
            if self.per_step
            else [make_norm(kind, channels, dims, affine=init_scale is not None)]
        )
        if init_scale is not None:
            for norm in self.norms:
                if getattr(norm, "weight", None) is not None:
                    nn.init.constant_(norm.weight, init_scale)
                    nn.init.zeros_(norm.bias)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.norms[min(t, len(self.norms) - 1) if self.per_step else 0](x)


def _channel_param(channels: int, dims: int, value: float) -> nn.Parameter:
    return nn.Parameter(torch.full((1, channels) + (1,) * dims, float(value)))


class _ChannelMatmul:
    """A bias-free 1x1 convolution computed as a matrix product over the channel axis.

    Same parameters and result as the convolution it subclasses; on the CPU the product runs the gate
    convolutions of the demo hGRU (8 channels) in about a quarter of the time of oneDNN's 1x1 convolution,
    forward and backward (BENCHMARKS.md, "Pathfinder demo"; measured in 2D only).
    """

    weight: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oi,bi...->bo...", self.weight.flatten(1), x)


class _ChannelMatmul2d(_ChannelMatmul, nn.Conv2d):
    """The 2-D gate convolution (state-dict keys of ``nn.Conv2d``)."""


class _ChannelMatmul3d(_ChannelMatmul, nn.Conv3d):
    """The 3-D gate convolution (state-dict keys of ``nn.Conv3d``)."""


def _one_by_one(dims: int, channels: int) -> nn.Module:
    layer = (_ChannelMatmul2d if dims == 2 else _ChannelMatmul3d)(channels, channels, 1, bias=False)
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


HGRU_NONLINEARITIES = {"softplus": F.softplus, "relu": F.relu, "tanh": torch.tanh}
HGRU_VARIANTS = ("crbp", "2018")


class HGRUCell(_GatedCell):
    """The hGRU (Linsley et al. 2018): its C-RBP-era form (default) or the 2018 TF form.

    ``variant="crbp"`` (c-rbp ``hgrucleanSEG.py``, 2D), with ``sp`` the nonlinearity (softplus by default)
    and N the normalisation::

        G1 = sigma(U1 * H + b_gain)
        C1 = N(W_inh * (H . G1))
        H1 = sp(X - sp(C1 . (alpha . H + mu)))              # suppression
        G2 = sigma(U2 * H1 + b_mix)
        C2 = N(W_exc * H1)
        H~ = sp(kappa . H1 + gamma . C2 + omega . H1 . C2)  # facilitation
        H  = sp((1 - G2) . H + G2 . H~)

    ``variant="2018"`` (serre-lab/hgru_share ``layers/recurrent/hgru.py``), with ``xi`` the nonlinearity
    (tanh there) and one learned scalar ``eta_t`` per timestep::

        C1 = N(W * (H . G1))
        H1 = xi(X - (alpha . H + mu) . C1)
        C2 = N(W * H1)
        H~ = xi(kappa . (H1 + gamma . C2) + omega . (H1 . gamma . C2))
        H  = eta_t . ((1 - G2) . H + G2 . H~)

    with the gates as above, written in our gate convention (TF: ``G2 H + (1 - G2) H~``; see the
    checkpoint notes of this module). N is the identity in that file (``norm="none"``); ``hgru_bn`` shares
    BatchNorms across steps (``"batch"``) and ``hgru_bn_for`` keeps one per step (``"batch_per_step"``);
    their scale-only BN of the gate pre-activations is not modelled. ``eta`` starts at U[0, 1) as in the
    TF code; alpha, mu, gamma, kappa, omega are Xavier-random there (not modelled); steps past
    the trained T reuse ``eta_{T-1}``. Per-step eta makes the step differ across time, so the 2018 form
    cannot be trained with C-RBP.

    Per-channel parameters start at the PyTorch port's constants alpha 0.1, mu 1, gamma 1, kappa 0.5,
    omega 0.5 in both variants.

    Parameters
    ----------
    channels : K, the drive and state channels.
    kernel_size : odd horizontal kernel size (published 15).
    timesteps : T, for the chrono initialisation, ``batch_per_step`` and the 2018 eta.
    norm : see :data:`CELL_NORMS`.
    share_kernel : one W for both horizontal convolutions; None: True for ``"2018"``, else False.
    nonlinearity : ``"softplus"`` (C-RBP), ``"relu"`` (hgru-pytorch) or ``"tanh"`` (2018 TF); None:
        tanh for ``"2018"``, softplus for ``"crbp"``.
    norm_scale : initial scale of the C1/C2 norms (TF hGRU: 0.1; see :class:`StepNorm`).
    variant : ``"crbp"`` or ``"2018"``.
    padding : border handling of the horizontal convolutions, ``"reflect"`` (default) or ``"zeros"``.
        A difference from the PyTorch references, which zero-pad (c-rbp ``hgrucleanSEG.py``,
        hgru-pytorch): the softplus state has a positive background (about log 2), so zero padding makes
        the image border look like an edge that the circuit then spreads and integrates. Measured on the
        demo's Pathfinder task (BENCHMARKS.md, "Pathfinder demo"): one seed at 400 steps reached 0.78 test
        accuracy with reflect padding against 0.59 with zeros.

    Examples
    --------
    >>> cell = HGRUCell(4, kernel_size=5, timesteps=6)
    >>> h = cell(torch.rand(2, 4, 16, 16), torch.zeros(2, 4, 16, 16), 0)
    >>> h.shape
    torch.Size([2, 4, 16, 16])
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int | Sequence[int] = 15,
        timesteps: int = 8,
        norm: str = "batch",
        share_kernel: bool | None = None,
        nonlinearity: str | None = None,
        norm_scale: float = 0.1,
        variant: str = "crbp",
        padding: str = "reflect",
    ) -> None:
        super().__init__(2, channels, timesteps)
        if variant not in HGRU_VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(map(repr, HGRU_VARIANTS))}; got {variant!r}")
        self.variant = variant
        is_2018 = variant == "2018"
        nonlinearity = nonlinearity or ("tanh" if is_2018 else "softplus")
        if nonlinearity not in HGRU_NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {', '.join(map(repr, HGRU_NONLINEARITIES))}, got {nonlinearity!r}"
            )
        self.act = HGRU_NONLINEARITIES[nonlinearity]
        self.inh = SymmetricConv(2, channels, kernel_size, padding)
        shared = is_2018 if share_kernel is None else share_kernel
        self.exc = self.inh if shared else SymmetricConv(2, channels, kernel_size, padding)
        self.norm_inh = StepNorm(norm, channels, 2, timesteps, init_scale=norm_scale)
        self.norm_exc = StepNorm(norm, channels, 2, timesteps, init_scale=norm_scale)
        self.alpha = _channel_param(channels, 2, 0.1)
        self.mu = _channel_param(channels, 2, 1.0)
        self.gamma = _channel_param(channels, 2, 1.0)
        self.kappa = _channel_param(channels, 2, 0.5)
        self.omega = _channel_param(channels, 2, 0.5)
        # read by the recurrent backbones' C-RBP check, like StepNorm.per_step
        self.per_step = is_2018
        if is_2018:
            self.eta = nn.Parameter(torch.rand(timesteps))

    def step(self, drive: torch.Tensor, h: torch.Tensor, t: int = 0) -> tuple[torch.Tensor, dict]:
        """One step; also returns the gates and H1 (``g1, c1, h1, g2, c2, candidate``) for figures."""
        act = self.act
        g1 = torch.sigmoid(self.gain(h) + self._bias(self.gain_bias))
        c1 = self.norm_inh(self.inh(h * g1), t)
        if self.variant == "2018":
            h1 = act(drive - (self.alpha * h + self.mu) * c1)
        else:
            h1 = act(drive - act(c1 * (self.alpha * h + self.mu)))
        g2 = torch.sigmoid(self.mix(h1) + self._bias(self.mix_bias))
        c2 = self.norm_exc(self.exc(h1), t)
        if self.variant == "2018":
            excitation = self.gamma * c2
            candidate = act(self.kappa * (h1 + excitation) + self.omega * (h1 * excitation))
            new = self.eta[min(t, len(self.eta) - 1)] * ((1 - g2) * h + g2 * candidate)
        else:
            candidate = act(self.kappa * h1 + self.gamma * c2 + self.omega * h1 * c2)
            new = act((1 - g2) * h + g2 * candidate)
        return new, {"g1": g1, "c1": c1, "h1": h1, "g2": g2, "c2": c2, "candidate": candidate}


FGRU_SCALAR_INITS = {
    # gammanet_pytorch layers/fgru_base.py, fGRUCell2 (the cell its BaseGN uses)
    "gammanet_pytorch": {"alpha": 0.1, "mu": 1.0, "kappa": 0.5, "omega": 0.5},
    # the gamma-Net defaults listed for drewlinsley/htdfgru_disentangling in our reference notes (unverified
    # against that code); kappa 0 switches the additive facilitation off at initialisation
    "htdfgru": {"alpha": 1.0, "mu": 0.0, "kappa": 0.0, "omega": 1.0},
}


class FGRUCell(_GatedCell):
    """The fGRU of gamma-Net (Linsley et al. 2020), 2D or 3D, horizontal or top-down.

    One step with the defaults (serre-lab/gammanet_pytorch ``fGRUCell2``), N the normalisation, ``[.]+``
    ReLU, A(H) the gain-gate input (``U1 * H``, or ``GALA(H)`` with ``attention="gala"``)::

        G1 = sigma(N(A(H) + b_gain))
        C1 = N(W_inh * (H . G1))
        S  = [[Z]+ - [(alpha . H + mu) . C1]+]+
        G2 = sigma(N(U2 * S + b_mix))
        C2 = N(W_exc * S)
        H~ = [kappa . (S + C2) + omega . (S . C2)]+
        H  = (1 - G2) . H + G2 . H~

    ``norm_order="input"`` normalises the kernel inputs instead (``C1 = W_inh * N(H . G1)``,
    ``C2 = W_exc * N(S)``, this cell's earlier form); ``gate_bias="after_norm"`` adds the gate biases after
    the gate norms (``sigma(N(A(H)) + b_gain)``). With the default ``"before_norm"`` and a norm that
    subtracts a per-channel mean (instance, batch, batch_stats), the bias is cancelled by the norm, so the
    chrono initialisation has no effect and the gates start close to ``sigma(0) = 0.5`` (norm scale 0.1);
    this is what the reference computes.

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
    norm_order : ``"output"`` (normalise the horizontal convolutions' outputs, both references) or
        ``"input"``.
    gate_bias : ``"before_norm"`` (both references) or ``"after_norm"``.
    scalar_init : initial alpha, mu, kappa, omega, a key of :data:`FGRU_SCALAR_INITS`
        (``"gammanet_pytorch"``: 0.1, 1, 0.5, 0.5; ``"htdfgru"``: 1, 0, 0, 1).
    attention : ``"none"`` (a 1x1 gain convolution) or ``"gala"`` (:class:`GALAAttention`, the default of
        gammanet_pytorch).
    saliency_kernel : odd kernel of GALA's spatial branch; None: 5 in 2D, (1, 5, 5) in 3D.

    Examples
    --------
    >>> cell = FGRUCell(3, 4, kernel_size=(1, 5, 5), timesteps=4, norm="group")
    >>> z = torch.rand(1, 4, 3, 8, 8)
    >>> cell(z, z, 0).shape
    torch.Size([1, 4, 3, 8, 8])
    """

    def __init__(
        self,
        dims: int,
        channels: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        timesteps: int = 8,
        norm: str = "instance",
        norm_scale: float = 0.1,
        norm_order: str = "output",
        gate_bias: str = "before_norm",
        scalar_init: str = "gammanet_pytorch",
        attention: str = "none",
        saliency_kernel: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(dims, channels, timesteps)
        check_fgru_options(norm_order=norm_order, gate_bias=gate_bias, scalar_init=scalar_init, attention=attention)
        self.norm_output, self.bias_before_norm = norm_order == "output", gate_bias == "before_norm"
        if attention == "gala":
            self.gain = GALAAttention(
                dims, channels, saliency_kernel if saliency_kernel is not None else (5 if dims == 2 else (1, 5, 5))
            )
        self.inh = SymmetricConv(dims, channels, kernel_size)
        self.exc = SymmetricConv(dims, channels, kernel_size)
        self.norm_gain = StepNorm(norm, channels, dims, timesteps, init_scale=norm_scale)
        self.norm_inh = StepNorm(norm, channels, dims, timesteps, init_scale=norm_scale)
        self.norm_mix = StepNorm(norm, channels, dims, timesteps, init_scale=norm_scale)
        self.norm_exc = StepNorm(norm, channels, dims, timesteps, init_scale=norm_scale)
        scalars = FGRU_SCALAR_INITS[scalar_init]
        self.alpha = _channel_param(channels, dims, scalars["alpha"])
        self.mu = _channel_param(channels, dims, scalars["mu"])
        self.kappa = _channel_param(channels, dims, scalars["kappa"])
        self.omega = _channel_param(channels, dims, scalars["omega"])

    def _gate(self, pre: torch.Tensor, bias: torch.Tensor, norm: StepNorm, t: int) -> torch.Tensor:
        b = self._bias(bias)
        return torch.sigmoid(norm(pre + b, t) if self.bias_before_norm else norm(pre, t) + b)

    def _horizontal(self, x: torch.Tensor, kernel: SymmetricConv, norm: StepNorm, t: int) -> torch.Tensor:
        return norm(kernel(x), t) if self.norm_output else kernel(norm(x, t))

    def step(self, drive: torch.Tensor, h: torch.Tensor, t: int = 0) -> tuple[torch.Tensor, dict]:
        """One step; also returns the gates and S (``g1, c1, s, g2, c2, candidate``) for figures."""
        g1 = self._gate(self.gain(h), self.gain_bias, self.norm_gain, t)
        c1 = self._horizontal(h * g1, self.inh, self.norm_inh, t)
        s = F.relu(F.relu(drive) - F.relu((self.alpha * h + self.mu) * c1))
        g2 = self._gate(self.mix(s), self.mix_bias, self.norm_mix, t)
        c2 = self._horizontal(s, self.exc, self.norm_exc, t)
        candidate = F.relu(self.kappa * (s + c2) + self.omega * (s * c2))
        new = (1 - g2) * h + g2 * candidate
        return new, {"g1": g1, "c1": c1, "s": s, "g2": g2, "c2": c2, "candidate": candidate}


FGRU_NORM_ORDERS = ("output", "input")
FGRU_GATE_BIASES = ("before_norm", "after_norm")
FGRU_ATTENTIONS = ("none", "gala")


def check_fgru_options(*, norm_order: str, gate_bias: str, scalar_init: str, attention: str) -> None:
    """Raise ``ValueError`` naming the option when an fGRU option is not one of its documented values."""
    for name, value, allowed in (
        ("norm_order", norm_order, FGRU_NORM_ORDERS),
        ("gate_bias", gate_bias, FGRU_GATE_BIASES),
        ("scalar_init", scalar_init, tuple(FGRU_SCALAR_INITS)),
        ("attention", attention, FGRU_ATTENTIONS),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def has_per_step_norm(module: nn.Module) -> bool:
    """Whether any :class:`StepNorm` inside ``module`` keeps per-timestep statistics."""
    return any(isinstance(m, StepNorm) and m.per_step for m in module.modules())
