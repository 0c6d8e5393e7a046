"""CV-RNN: InT with a complex-valued attention and state (FeatureTracker; Muzellec, Linsley et al., ICLR 2025).

Ported from S4b1n3/feature_tracker ``featuretracker_models/models/CVInT.py`` (``rCell`` with
``use_attention=True`` and ``CVInT``) and ``utils/complex_functions.py`` (the layers, in
:mod:`shared.backbones.tracking.complex_ops`). The E/I circuit is InT's
(:class:`shared.backbones.tracking.int_circuit.InTCell`); only the attention changes. Per frame t, with
R2C/CConv the complex layers (activation ``ReLU(InstanceNorm(|.|))``, phase kept) and IN an instance norm::

    x_t  = sp(Conv3d_(1,3,3)(frame_t))
    c_0  = CConv_{3->C}(|frame_0| exp(i phi_0)),  phi_0 ~ U(-pi, pi)      # complex state before frame 0
    ff   = R2C_w(x_t);  a = ff + R2C_u(e_{t-1})
    h_t  = CConv_h(ff + c_{t-1});  c_t = h_t                               # complex recurrent state
    theta_t = angle(CConv_{C->1}(h_t))                                     # decoded phase map, aux["phase"]
    A_t  = sigma(IN(|a + h_t|))                                            # then InT's E/I step with A_t

All these kernels are 3x3; the E/I gate biases start at -1; the readout is InT's with a 3x3
``readout_conv``. ``aux["phase"]`` (batch, frame, row, column, radians) feeds
:func:`shared.backbones.tracking.synchrony.synchrony_loss`.

Options and differences, by name:

* ``complex_valued=False``: **the real-valued control** ("CV-RNN, real"). Every layer and parameter is kept
  and computes the same magnitudes, but every phase is 0 (see :mod:`~shared.backbones.tracking.complex_ops`),
  so ``|a + h|`` adds magnitudes and no phase information exists; there is no ``aux["phase"]`` and the
  synchrony loss does not apply (the decoded-phase layer is kept for the parameter count and unused).
* ``kuramoto_steps > 0``: Kuramoto-style phase coupling (KomplexNet ``update_phases``,
  :class:`~shared.backbones.tracking.complex_ops.KuramotoCoupling`) applied that many times to the phase
  of ``h_t`` before it is used; not in ``CVInT.py`` (our combination).
* ``initial_phase="zero"`` starts from ``phi_0 = 0`` (deterministic); the reference draws it at random.
* ``c_0`` takes ``|frame_0|`` as the magnitude; the reference multiplies ``frame_0`` itself by
  ``exp(i phi_0)``. The two agree for videos in [0, 1] (the data contract); a negative pixel there would
  carry the phase ``phi_0 + pi``.
* **Decoded phase.** The reference takes ``stable_angle`` of the decoder's *activated* output, so where the
  ReLU zeroes the magnitude it reads ``angle(eps + i eps) = pi/4`` with no gradient; we return the phase the
  layer carries, ``angle(psi)``, which equals the reference wherever the magnitude is positive. The phase
  does not depend on the activation then, so the decoder has none (no InstanceNorm parameters).
* The reference's unused ``a_h_gate`` and never-initialised ``w`` are not created; symmetric horizontal kernels
  and lesions as in :mod:`~shared.backbones.tracking.int_circuit`.

Verified against a line-by-line transcription of ``CVInT.forward`` and the complex layers (same weights,
same random ``phi_0``; ``tests/test_tracking_reference.py``): logits, attention and, where the decoder's
magnitude is positive, the decoded phase agree to float64 precision. Which objects the reference's
synchrony groups hold is settled in :mod:`~shared.backbones.tracking.synchrony` (background, all
distractors together, target). Unverified: the width and kernel of the paper's runs (``model_selector``
defaults 32 channels, kernel 7 are used here).

Training (mode, C-RBP) as in :mod:`shared.backbones.tracking.base`. Measured at initialisation (32
channels, 16 frames, 10 settle steps): InT's last-frame map is contractive (Neumann ratio ~0.35), the
CV-RNN's is not (its complex state keeps changing, residual ~0.6; the Neumann series grows), so train the
CV-RNN with BPTT. Only the steps with a graph give the phase a gradient, so the synchrony loss over all
frames needs ``mode="bptt"``; ``c_0``'s layer (``complex_preproc``) sees frame 0 only and gets no gradient
in ``truncated``/``crbp`` modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from shared.backbones.registry import register_backbone
from shared.backbones.tracking.base import GoalReadout, RecurrentVideoBackbone, VideoDrive
from shared.backbones.tracking.complex_ops import R2C, CConv, KuramotoCoupling, magnitude, to_cartesian
from shared.backbones.tracking.int_circuit import NONLINEARITIES, InTCell, InTConfig

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # i, e, Re c, Im c


@dataclass
class CVRNNConfig(InTConfig):
    """CV-RNN (the InT keys of :class:`~shared.backbones.tracking.int_circuit.InTConfig`, plus these).

    complex_valued : False gives the real-valued control (same layers and parameters, all phases 0).
    initial_phase : ``"random"`` (reference, U(-pi, pi) per pixel and channel of frame 0) or ``"zero"``.
    kuramoto_steps : Kuramoto phase-coupling steps per frame on the hidden state (0: none, as in CVInT).
    kuramoto_kernel : odd size of the learned coupling kernel (KomplexNet 5).
    kuramoto_lr : the step size eta (KomplexNet ``lr_kuramoto`` 1).
    kuramoto_epsilon : the global desynchronisation weight (KomplexNet 0).
    """

    complex_valued: bool = True
    initial_phase: Literal["random", "zero"] = "random"
    kuramoto_steps: int = 0
    kuramoto_kernel: int = 5
    kuramoto_lr: float = 1.0
    kuramoto_epsilon: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.initial_phase not in ("random", "zero"):
            raise ValueError(f"initial_phase must be 'random' or 'zero', got {self.initial_phase!r}")
        if self.kuramoto_steps < 0:
            raise ValueError(f"kuramoto_steps must be >= 0, got {self.kuramoto_steps}")
        if self.kuramoto_kernel < 1 or self.kuramoto_kernel % 2 == 0:
            raise ValueError(f"kuramoto_kernel must be a positive odd integer, got {self.kuramoto_kernel}")
        if self.kuramoto_steps and not self.complex_valued:
            raise ValueError(
                "kuramoto_steps > 0 couples phases, which the real-valued control (complex_valued=False) does not have"
            )


class CVRNN(RecurrentVideoBackbone):
    """The CV-RNN on a video (batch, 3, frame, row, column) -> logits (batch, 1).

    ``aux["attention"]``: channel mean of ``A_t``; ``aux["phase"]``: decoded phase map ``theta_t`` (complex
    model only); both (batch, frame, row, column).
    """

    # parameters used only before frame 0 (c_0): no gradient when frame 0 runs without a graph
    first_frame_only = ("complex_preproc.",)

    def __init__(self, cfg: CVRNNConfig) -> None:
        super().__init__(cfg)
        c, cv = cfg.channels, cfg.complex_valued
        self.complex_valued, self.initial_phase = cv, cfg.initial_phase
        self.act = NONLINEARITIES[cfg.nonlinearity]
        self.preproc = nn.Conv3d(cfg.in_channels, c, (1, 3, 3), padding=(0, 1, 1))
        self.complex_preproc = CConv(cfg.in_channels, c, 3, complex_valued=cv)
        self.att_gate_w = R2C(c, c, 3, complex_valued=cv)
        self.att_gate_u = R2C(c, c, 3, complex_valued=cv)
        self.hidden_gate = CConv(c, c, 3, complex_valued=cv)
        self.decode_gate = CConv(c, 1, 3, complex_valued=cv, activation=False)  # only its phase is read
        self.amp_norm = nn.InstanceNorm2d(c, affine=True)
        self.kuramoto = (
            KuramotoCoupling(c, cfg.kuramoto_kernel, lr=cfg.kuramoto_lr, epsilon=cfg.kuramoto_epsilon)
            if cfg.kuramoto_steps
            else None
        )
        self.kuramoto_steps = cfg.kuramoto_steps
        self.cell = InTCell(
            c,
            cfg.kernel_size,
            inhibition=cfg.inhibition,
            lesions=cfg.lesions,
            nonlinearity=cfg.nonlinearity,
            padding=cfg.horizontal_padding,
        )
        self.head = GoalReadout(c, 3)

    def make_drive(self, video: torch.Tensor) -> VideoDrive:
        return VideoDrive(self.act(self.preproc(video)), video)

    def initial_state(self, drive: VideoDrive) -> State:
        frame0 = drive.video[:, :, 0]
        if self.initial_phase == "random":
            phase = (torch.rand_like(frame0) * 2 - 1) * math.pi
        else:
            phase = torch.zeros_like(frame0)
        c_re, c_im = self.complex_preproc(*to_cartesian(frame0.abs(), phase))
        zeros = torch.zeros_like(drive.frame(0))
        return zeros, zeros.clone(), c_re, c_im

    def hidden(
        self, ff: tuple[torch.Tensor, torch.Tensor], c_re: torch.Tensor, c_im: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h_t = CConv_h(ff + c_{t-1})`` as (magnitude, phase), after the optional Kuramoto steps."""
        mag, phase = self.hidden_gate.polar(ff[0] + c_re, ff[1] + c_im)
        for _ in range(self.kuramoto_steps):
            phase = self.kuramoto(mag, phase)
        return mag, phase

    def step(self, drive: VideoDrive, h: State, t: int) -> State:
        i, e, c_re, c_im = h
        x = drive.frame(t)
        ff = self.att_gate_w(x)
        au = self.att_gate_u(e)
        h_re, h_im = to_cartesian(*self.hidden(ff, c_re, c_im))
        attention = torch.sigmoid(self.amp_norm(magnitude(ff[0] + au[0] + h_re, ff[1] + au[1] + h_im)))
        self.record("attention", attention.mean(dim=1))
        if self.complex_valued:
            self.record("phase", self.decode_gate.polar(h_re, h_im)[1][:, 0])
        new_i, new_e = self.cell(x, i, e, attention)
        return new_i, new_e, h_re, h_im

    def readout(self, h: State, drive: VideoDrive) -> torch.Tensor:
        return self.head(h[1], drive.goal)


@register_backbone(
    "cvrnn",
    CVRNNConfig,
    spatial_dims=3,
    recurrent=True,
    input_kind="video",
    description="CV-RNN (FeatureTracker): InT with complex-valued attention/state and a phase map",
)
def cvrnn(cfg: CVRNNConfig) -> CVRNN:
    """Create a :class:`CVRNN`.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("cvrnn", channels=4, kernel_size=3)
    >>> out = net(torch.rand(2, 3, 4, 12, 12), return_steps=True)
    >>> out.output.shape, out.aux["phase"].shape
    (torch.Size([2, 1]), torch.Size([2, 4, 12, 12]))
    >>> "phase" in create("cvrnn", channels=4, complex_valued=False)(torch.rand(1, 3, 2, 8, 8), return_steps=True).aux
    False
    """
    return CVRNN(cfg)
