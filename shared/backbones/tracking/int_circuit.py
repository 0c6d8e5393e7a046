"""InT, the "index-and-track" circuit of PathTracker (Linsley, Malik et al., NeurIPS 2021): one step per frame.

Ported from pathtracker-code/pathtracker-models ``models/InT.py`` (classes ``rCell`` with
``use_attention=True`` and ``InT``; built by ``utils/engine.py`` ``model_selector`` with ``dimensions=32``
and ``fb_kernel_size=7``). With ``sp`` the nonlinearity (softplus; tanh with ``nonlinearity="tanh"``,
the reference's ``InT_tanh``), BN a BatchNorm on batch statistics, ``*`` convolution, ``.`` elementwise::

    x_t  = sp(Conv3d_1x1(frame_t))
    A_t  = sigma(Wa x_t + Ua e_{t-1})                         # attention, the "spotlight"
    e~   = A_t . e_{t-1}
    i^   = sp(x_t - sp(BN(W_I * e~) . (alpha . i_{t-1} + mu)))
    g_i  = sigma(Wgi x_t + Ugi i_{t-1});  i_t = (1 - g_i) . i_{t-1} + g_i . i^
    g_e  = sigma(Wge i_{t-1} + Uge e~)                        # reads the *previous* inhibition
    e^   = sp(BN(W_E * i_t) . (kappa . i_t + gamma))
    e_t  = (1 - g_e) . e_{t-1} + g_e . e^

``e_0 = i_0 = 0``. Without inhibition (``inhibition=False``, the reference's ``InT_no_inh``)
``i_t = e~`` and ``g_e = sigma(Wge e_{t-1} + Uge e~)``. The readout is :class:`GoalReadout`.

Initialisation as in the reference: orthogonal gate and horizontal weights, alpha 1, mu 0, gamma 0,
kappa 1, BN scale 0.1 (shift 0, eps 1e-3, no running statistics), attention biases +1, the four E/I gate
biases -1 (each gate has two biased 1x1 convolutions, as there).

Differences from the reference, by name:

* **Symmetric horizontal kernels.** ``W_I`` and ``W_E`` are :class:`shared.backbones.cells.SymmetricConv`
  (``W = 1/2 (A + A^T)`` over the channel axes, A orthogonal at initialisation); the reference's kernels are
  free (orthogonal at initialisation), so W starts as the symmetric part of an orthogonal tensor.
* **Lesions fix the parameter at 0.** The reference sets ``requires_grad = False`` and assigns an attribute
  ``param.weight = 0.``, which does not change the parameter's value: its lesioned alpha and kappa stay
  frozen at their initial 1 and its mu and gamma at 0. We fix a lesioned parameter at 0 (a buffer), which
  removes its term (``InT_no_mult`` = lesions alpha, gamma; ``InT_no_add`` = mu, kappa; ``InT_mult_add`` =
  gamma, mu; ``InT_only_add`` = alpha, kappa in ``utils/engine.py``).
* **Unused parameters are not created**: the reference's never-initialised ``w``, and, without
  inhibition, ``w_inh``'s companions (alpha, mu, the inhibition gates and BN).
* ``horizontal_padding="reflect"`` is available; the default ``"zeros"`` is the reference's.
* Two optional switches, off by default (defaults are the reference's): ``readout_pool="goal"`` reads the
  readout map at the goal marker instead of averaging it over the whole map, and ``norm_scale`` sets the
  initial BN scale (reference 0.1). Neither changes the circuit's equations; at CPU scale the reference
  readout's logits differ across videos by ~1e-4 (BENCHMARKS.md "Tracking", InT diagnosis).

Verified against a line-by-line transcription of ``rCell.forward`` and ``InT.forward`` (same weights;
``tests/test_tracking_reference.py``): logits and attention agree to float64 precision, with and without
inhibition, softplus or tanh; lesions of mu and gamma (initial value 0) agree with the reference's, those
of alpha and kappa differ as described above.

Unverified: the width and kernel of the published runs (``model_selector`` defaults: 32 channels, kernel 7;
the ``InT`` class default is 15), and training settings beyond ``train_InT.sh`` (lr 3e-4, batch 180).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.backbones.cells import SymmetricConv
from shared.backbones.registry import register_backbone
from shared.backbones.tracking.base import GoalReadout, RecurrentVideoBackbone, TrackingRecurrentConfig, VideoDrive

NONLINEARITIES = {"softplus": F.softplus, "tanh": torch.tanh}
LESIONS = ("alpha", "mu", "gamma", "kappa")
INITIAL_VALUES = {"alpha": 1.0, "mu": 0.0, "gamma": 0.0, "kappa": 1.0}


def gate_conv(channels: int, bias: float) -> nn.Conv2d:
    """A 1x1 gate convolution: orthogonal weight, constant bias."""
    conv = nn.Conv2d(channels, channels, 1)
    nn.init.orthogonal_(conv.weight)
    nn.init.constant_(conv.bias, bias)
    return conv


def horizontal_kernel(channels: int, kernel_size: int, padding: str) -> SymmetricConv:
    """A channel-symmetric horizontal kernel whose free tensor starts orthogonal (as the reference's W)."""
    conv = SymmetricConv(2, channels, kernel_size, padding)
    nn.init.orthogonal_(conv.A)
    return conv


def batch_stats_norm(channels: int, scale: float = 0.1) -> nn.BatchNorm2d:
    """The reference's BN: batch statistics in training and testing, eps 1e-3, initial scale 0.1, shift 0."""
    norm = nn.BatchNorm2d(channels, eps=1e-3, affine=True, track_running_stats=False)
    nn.init.constant_(norm.weight, scale)
    return norm


class InTCell(nn.Module):
    """The excitation/inhibition part of the InT step, given the attention ``A_t`` (see the module docstring).

    Parameters
    ----------
    channels : C (reference 32).
    kernel_size : odd size of W_I and W_E (reference 7).
    inhibition : False is the reference's ``no_inh`` (excitation only).
    lesions : names among ``alpha, mu, gamma, kappa`` fixed at 0.
    nonlinearity : ``"softplus"`` or ``"tanh"``.
    padding : ``"zeros"`` (reference) or ``"reflect"`` for the horizontal convolutions.
    norm_scale : initial BN scale of both horizontal paths (reference 0.1).

    Examples
    --------
    >>> cell = InTCell(4, kernel_size=3)
    >>> x, i, e, a = (torch.rand(2, 4, 8, 8) for _ in range(4))
    >>> new_i, new_e = cell(x, i, e, a)
    >>> new_e.shape
    torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        *,
        inhibition: bool = True,
        lesions: tuple[str, ...] = (),
        nonlinearity: str = "softplus",
        padding: str = "zeros",
        norm_scale: float = 0.1,
    ) -> None:
        super().__init__()
        check_circuit_options(
            kernel_size=kernel_size, lesions=lesions, nonlinearity=nonlinearity, inhibition=inhibition
        )
        self.inhibition, self.act = inhibition, NONLINEARITIES[nonlinearity]
        shape = (1, channels, 1, 1)
        names = ("alpha", "mu", "gamma", "kappa") if inhibition else ("gamma", "kappa")
        for name in names:
            value = torch.full(shape, 0.0 if name in lesions else INITIAL_VALUES[name])
            if name in lesions:
                self.register_buffer(name, value)
            else:
                setattr(self, name, nn.Parameter(value))
        if inhibition:
            self.w_inh = horizontal_kernel(channels, kernel_size, padding)
            self.norm_inh = batch_stats_norm(channels, norm_scale)
            self.inh_gate_w, self.inh_gate_u = gate_conv(channels, -1.0), gate_conv(channels, -1.0)
        self.w_exc = horizontal_kernel(channels, kernel_size, padding)
        self.norm_exc = batch_stats_norm(channels, norm_scale)
        self.exc_gate_w, self.exc_gate_u = gate_conv(channels, -1.0), gate_conv(channels, -1.0)

    def step(
        self, x: torch.Tensor, i: torch.Tensor, e: torch.Tensor, attention: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One step; also returns the intermediate maps (``gated_e, i_hat, g_i, g_e, e_hat``) for tests."""
        act = self.act
        gated_e = attention * e
        maps = {"gated_e": gated_e}
        if self.inhibition:
            inh = self.norm_inh(self.w_inh(gated_e))
            i_hat = act(x - act(inh * (self.alpha * i + self.mu)))
            g_i = torch.sigmoid(self.inh_gate_w(x) + self.inh_gate_u(i))
            new_i = (1 - g_i) * i + g_i * i_hat
            previous_i = i
            maps.update(i_hat=i_hat, g_i=g_i)
        else:
            new_i, previous_i = gated_e, e
        g_e = torch.sigmoid(self.exc_gate_w(previous_i) + self.exc_gate_u(gated_e))
        e_hat = act(self.norm_exc(self.w_exc(new_i)) * (self.kappa * new_i + self.gamma))
        new_e = (1 - g_e) * e + g_e * e_hat
        maps.update(g_e=g_e, e_hat=e_hat)
        return new_i, new_e, maps

    def forward(
        self, x: torch.Tensor, i: torch.Tensor, e: torch.Tensor, attention: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New ``(i, e)``, each (batch, channels, row, column)."""
        new_i, new_e, _ = self.step(x, i, e, attention)
        return new_i, new_e


def check_circuit_options(*, kernel_size: int, lesions: tuple[str, ...], nonlinearity: str, inhibition: bool) -> None:
    """Raise ``ValueError`` naming the option when an InT option is invalid."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    unknown = [name for name in lesions if name not in LESIONS]
    if unknown:
        raise ValueError(f"lesions must be names among {', '.join(map(repr, LESIONS))}; got {unknown}")
    if not inhibition and set(lesions) & {"alpha", "mu"}:
        raise ValueError(
            "lesions of 'alpha' or 'mu' need inhibition=True: without inhibition those parameters do not exist"
        )
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {', '.join(map(repr, NONLINEARITIES))}; got {nonlinearity!r}")


@dataclass
class InTConfig(TrackingRecurrentConfig):
    """InT (see :class:`shared.backbones.tracking.base.TrackingRecurrentConfig` for the shared keys).

    channels : C, the width knob (reference ``dimensions`` 32).
    kernel_size : odd size of the horizontal kernels (reference ``fb_kernel_size`` 7).
    inhibition : False removes the inhibitory population (reference ``InT_no_inh``).
    lesions : parameters fixed at 0, names among ``"alpha", "mu", "gamma", "kappa"``.
    nonlinearity : ``"softplus"`` (reference) or ``"tanh"`` (reference ``InT_tanh``), front end and circuit.
    horizontal_padding : ``"zeros"`` (reference) or ``"reflect"``.
    readout_pool : ``"mean"`` (reference) or ``"goal"`` (:class:`GoalReadout` ``pool``; not in the reference).
    norm_scale : initial BN scale of the horizontal paths (reference 0.1). With gamma 0, e^ = sp(BN(W_E * i) .
        kappa . i) starts at sp(~0) = ln 2 almost everywhere at 0.1 (BENCHMARKS.md "Tracking").
    """

    channels: int = 32
    kernel_size: int = 7
    inhibition: bool = True
    lesions: tuple[str, ...] = ()
    nonlinearity: Literal["softplus", "tanh"] = "softplus"
    horizontal_padding: Literal["zeros", "reflect"] = "zeros"
    readout_pool: Literal["mean", "goal"] = "mean"
    norm_scale: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.in_channels < 3:
            raise ValueError(
                f"in_channels must be >= 3 (RGB: the readout reads the goal marker in channel 2, "
                f"blue), got {self.in_channels}"
            )
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if not self.norm_scale > 0:
            raise ValueError(f"norm_scale must be > 0, got {self.norm_scale}")
        check_circuit_options(
            kernel_size=self.kernel_size,
            lesions=self.lesions,
            nonlinearity=self.nonlinearity,
            inhibition=self.inhibition,
        )


class InT(RecurrentVideoBackbone):
    """InT on a video (batch, 3, frame, row, column) -> logits (batch, 1).

    ``aux["attention"]`` is the channel mean of ``A_t``, (batch, frame, row, column).
    """

    def __init__(self, cfg: InTConfig) -> None:
        super().__init__(cfg)
        c = cfg.channels
        self.act = NONLINEARITIES[cfg.nonlinearity]
        self.preproc = nn.Conv3d(cfg.in_channels, c, 1)
        self.att_gate_w, self.att_gate_u = gate_conv(c, 1.0), gate_conv(c, 1.0)
        self.cell = InTCell(
            c,
            cfg.kernel_size,
            inhibition=cfg.inhibition,
            lesions=cfg.lesions,
            nonlinearity=cfg.nonlinearity,
            padding=cfg.horizontal_padding,
            norm_scale=cfg.norm_scale,
        )
        self.head = GoalReadout(c, 1, pool=cfg.readout_pool)

    def make_drive(self, video: torch.Tensor) -> VideoDrive:
        return VideoDrive(self.act(self.preproc(video)), video)

    def initial_state(self, drive: VideoDrive) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros_like(drive.frame(0))
        return zeros, zeros.clone()

    def step(self, drive: VideoDrive, h: tuple[torch.Tensor, torch.Tensor], t: int) -> tuple[torch.Tensor, ...]:
        i, e = h
        x = drive.frame(t)
        attention = torch.sigmoid(self.att_gate_w(x) + self.att_gate_u(e))
        self.record("attention", attention.mean(dim=1))
        return self.cell(x, i, e, attention)

    def readout(self, h: tuple[torch.Tensor, torch.Tensor], drive: VideoDrive) -> torch.Tensor:
        return self.head(h[1], drive.goal)


@register_backbone(
    "int",
    InTConfig,
    spatial_dims=3,
    recurrent=True,
    input_kind="video",
    description="InT tracking circuit (PathTracker): attention + E/I horizontal circuit per frame",
)
def int_circuit(cfg: InTConfig) -> InT:
    """Create an :class:`InT`.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("int", channels=4, kernel_size=3)
    >>> out = net(torch.rand(2, 3, 5, 16, 16), return_steps=True)
    >>> out.output.shape, out.aux["attention"].shape, len(out.steps)
    (torch.Size([2, 1]), torch.Size([2, 5, 16, 16]), 5)
    """
    return InT(cfg)
