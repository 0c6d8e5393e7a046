"""Our InT, CV-RNN and synchrony loss against the AUTHORS' code, transcribed line by line (issue 17).

The functions and modules prefixed ``Ref``/``ref_`` below are transcriptions, kept as close to the source as
Python allows (same statement order, same names, same hyperparameters in their constructors), of:

* pathtracker-code/pathtracker-models ``models/InT.py``: ``rCell.__init__``/``rCell.forward``
  (``use_attention=True``), ``InT.forward``, and the lesion lines of ``rCell.__init__``;
* S4b1n3/feature_tracker ``featuretracker_models/models/CVInT.py``: ``rCell.forward`` (its attention part;
  the E/I part is the same text as in InT.py) and ``CVInT.forward``;
* S4b1n3/feature_tracker ``featuretracker_models/utils/complex_functions.py``: ``stable_angle``,
  ``get_complex_number``, ``apply_layer``, ``apply_layer_from_real``, ``apply_activation_function``,
  ``ComplexConvolution2D``, ``RealToComplexConvolution2D`` and ``synch_loss`` (complex dtype, as there);
* S4b1n3/feature_tracker ``feature_tracker/utils_drawing.py`` ``plot_frame_mask`` (which objects the mask
  channels that ``synch_loss`` reads hold);
* S4b1n3/KomplexNet ``smaller_complex_model.py``: ``SmallModel.update_phases`` and its Gaussian kernel.

Only what cannot run as published is changed: InT.py's ``super(hConvGRUCell, self)`` / ``super(FFhGRU, self)``
(names that file does not define) are plain ``super()``, ``.cuda()`` calls and unused attributes (``w``,
``a_h_gate``, the never-read ``jv_penalty``) are left out, and the random first-frame phases and intermediate
maps are returned so they can be compared.

Each test builds the reference module with the reference's own constructor settings, copies the weights of
OUR module into it with ``load_state_dict`` (so a differing shape, eps, bias or running-statistics setting
fails the copy), randomises nothing but our module, and compares outputs on random inputs in float64.
Where our port differs on purpose (see its docstrings) the test checks agreement everywhere else and
asserts the difference itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import init

from shared.backbones import create
from shared.backbones.tracking.complex_ops import R2C, CConv, KuramotoCoupling
from shared.backbones.tracking.synchrony import synchrony_loss

DTYPE = torch.float64


def randomise_(module: nn.Module, seed: int) -> nn.Module:
    """Distinct random values for every parameter of OUR module (constants of the init would hide terms)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.1)
    return module


def video(batch: int, frames: int, size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=gen, dtype=DTYPE)


def wrapped(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| on the circle."""
    return (torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi).abs()


# ------------------------------------------------------------------------ pathtracker-models models/InT.py


class RefEICell(nn.Module):
    """``rCell.__init__`` (use_attention=True) of InT.py / CVInT.py: the E/I circuit's modules, reference settings."""

    def __init__(self, hidden_size, kernel_size, no_inh=False):
        super().__init__()
        self.no_inh = no_inh
        self.i_w_gate = nn.Conv2d(hidden_size, hidden_size, 1)
        self.i_u_gate = nn.Conv2d(hidden_size, hidden_size, 1)
        self.e_w_gate = nn.Conv2d(hidden_size, hidden_size, 1)
        self.e_u_gate = nn.Conv2d(hidden_size, hidden_size, 1)
        spatial_h_size = kernel_size
        self.h_padding = spatial_h_size // 2
        self.w_exc = nn.Parameter(torch.empty(hidden_size, hidden_size, spatial_h_size, spatial_h_size))
        init.orthogonal_(self.w_exc)
        if not no_inh:
            self.w_inh = nn.Parameter(torch.empty(hidden_size, hidden_size, spatial_h_size, spatial_h_size))
            init.orthogonal_(self.w_inh)
        self.alpha = nn.Parameter(torch.empty((hidden_size, 1, 1)))
        self.mu = nn.Parameter(torch.empty((hidden_size, 1, 1)))
        self.gamma = nn.Parameter(torch.empty((hidden_size, 1, 1)))
        self.kappa = nn.Parameter(torch.empty((hidden_size, 1, 1)))
        self.bn = nn.ModuleList(
            [nn.BatchNorm2d(hidden_size, eps=1e-03, affine=True, track_running_stats=False) for i in range(2)]
        )
        for bn in self.bn:
            init.constant_(bn.weight, 0.1)
        if not no_inh:
            init.constant_(self.alpha, 1.0)
            init.constant_(self.mu, 0.0)
        init.constant_(self.gamma, 0.0)
        init.constant_(self.kappa, 1.0)

    def ei_forward(self, input_, inhibition, excitation, att_gate, activ):
        """``rCell.forward`` after the attention gate (identical text in InT.py and CVInT.py)."""
        gated_input = input_  # * att_gate  # In activ range
        gated_excitation = att_gate * excitation  # att_gate * excitation
        gated_inhibition = inhibition

        if not self.no_inh:
            # Compute inhibition
            inh_intx = self.bn[0](F.conv2d(gated_excitation, self.w_inh, padding=self.h_padding))  # in activ range
            inhibition_hat = activ(input_ - activ(inh_intx * (self.alpha * gated_inhibition + self.mu)))

            # Integrate inhibition
            inh_gate = torch.sigmoid(self.i_w_gate(gated_input) + self.i_u_gate(gated_inhibition))
            inhibition = (1 - inh_gate) * inhibition + inh_gate * inhibition_hat  # In activ range
        else:
            inhibition, gated_inhibition = gated_excitation, excitation

        # Pass to excitatory neurons
        exc_gate = torch.sigmoid(self.e_w_gate(gated_inhibition) + self.e_u_gate(gated_excitation))
        exc_intx = self.bn[1](F.conv2d(inhibition, self.w_exc, padding=self.h_padding))  # In activ range
        excitation_hat = activ(exc_intx * (self.kappa * inhibition + self.gamma))

        excitation = (1 - exc_gate) * excitation + exc_gate * excitation_hat
        return inhibition, excitation


class RefInTCell(RefEICell):
    """InT.py ``rCell`` with ``use_attention=True``."""

    def __init__(self, hidden_size, kernel_size, no_inh=False):
        super().__init__(hidden_size, kernel_size, no_inh)
        self.a_w_gate = nn.Conv2d(hidden_size, hidden_size, 1, padding=1 // 2)
        self.a_u_gate = nn.Conv2d(hidden_size, hidden_size, 1, padding=1 // 2)

    def forward(self, input_, inhibition, excitation, activ=F.softplus):
        att_gate = torch.sigmoid(self.a_w_gate(input_) + self.a_u_gate(excitation))  # Attention Spotlight
        inhibition, excitation = self.ei_forward(input_, inhibition, excitation, att_gate, activ)
        return inhibition, excitation, att_gate


class RefInT(nn.Module):
    """InT.py ``InT`` (``forward`` with ``testmode`` returning the gates)."""

    def __init__(self, dimensions, kernel_size, no_inh=False, nl=F.softplus):
        super().__init__()
        self.preproc = nn.Conv3d(3, dimensions, kernel_size=1, padding=1 // 2)
        self.unit1 = RefInTCell(dimensions, kernel_size, no_inh)
        self.readout_conv = nn.Conv2d(dimensions, 1, 1)
        self.target_conv = nn.Conv2d(2, 1, 5, padding=5 // 2)
        torch.nn.init.zeros_(self.target_conv.bias)
        self.readout_dense = nn.Linear(1, 1)
        self.nl = nl

    def forward(self, x):
        xbn = self.preproc(x)
        xbn = self.nl(xbn)
        x_shape = xbn.shape
        excitation = torch.zeros((x_shape[0], x_shape[1], x_shape[3], x_shape[4]), dtype=x.dtype)
        inhibition = torch.zeros((x_shape[0], x_shape[1], x_shape[3], x_shape[4]), dtype=x.dtype)
        gates = []
        for t in range(x_shape[2]):
            inhibition, excitation, gate = self.unit1(
                input_=xbn[:, :, t], inhibition=inhibition, excitation=excitation, activ=self.nl
            )
            gates.append(gate)
        output = torch.cat([self.readout_conv(excitation), x[:, 2, 0][:, None]], 1)
        output = self.target_conv(output)
        output = F.avg_pool2d(output, kernel_size=output.size()[2:])
        output = output.reshape(x_shape[0], -1)
        output = self.readout_dense(output)
        return output, torch.stack(gates, 1)


def ref_lesion(param: nn.Parameter) -> None:
    """The lesion lines of ``rCell.__init__`` (e.g. ``if lesion_alpha:``), verbatim."""
    param.requires_grad = False
    param.weight = 0.0


def load_ei_(ref: RefEICell, cell, no_inh: bool) -> None:
    """Copy OUR InTCell into the reference E/I modules (strict ``load_state_dict`` checks every setting)."""
    with torch.no_grad():
        ref.e_w_gate.load_state_dict(cell.exc_gate_w.state_dict())
        ref.e_u_gate.load_state_dict(cell.exc_gate_u.state_dict())
        ref.bn[1].load_state_dict(cell.norm_exc.state_dict())
        ref.w_exc.copy_(cell.w_exc.weight)  # our W = 1/2 (A + A^T); the reference takes any W
        names = ("gamma", "kappa") if no_inh else ("alpha", "mu", "gamma", "kappa")
        for name in names:  # ours (1, C, 1, 1), the reference's (C, 1, 1)
            getattr(ref, name).copy_(getattr(cell, name)[0])
        if not no_inh:
            ref.i_w_gate.load_state_dict(cell.inh_gate_w.state_dict())
            ref.i_u_gate.load_state_dict(cell.inh_gate_u.state_dict())
            ref.bn[0].load_state_dict(cell.norm_inh.state_dict())
            ref.w_inh.copy_(cell.w_inh.weight)


def load_readout_(ref: nn.Module, head) -> None:
    ref.readout_conv.load_state_dict(head.readout_conv.state_dict())
    ref.target_conv.load_state_dict(head.target_conv.state_dict())
    ref.readout_dense.load_state_dict(head.dense.state_dict())


def reference_int(net, *, kernel_size: int, no_inh: bool, nl) -> RefInT:
    ref = RefInT(net.config.channels, kernel_size, no_inh, nl).to(DTYPE)
    ref.preproc.load_state_dict(net.preproc.state_dict())
    ref.unit1.a_w_gate.load_state_dict(net.att_gate_w.state_dict())
    ref.unit1.a_u_gate.load_state_dict(net.att_gate_u.state_dict())
    load_ei_(ref.unit1, net.cell, no_inh)
    load_readout_(ref, net.head)
    return ref


@pytest.mark.parametrize("options", [{}, {"inhibition": False}, {"nonlinearity": "tanh"}])
def test_int_forward_equals_the_reference_forward(options):
    net = randomise_(create("int", channels=3, kernel_size=3, **options).to(DTYPE), seed=1)
    ref = reference_int(
        net,
        kernel_size=3,
        no_inh=not options.get("inhibition", True),
        nl=torch.tanh if options.get("nonlinearity") == "tanh" else F.softplus,
    )
    x = video(2, 4, 8, seed=2).requires_grad_()
    ours = net(x, return_steps=True)
    expected, gates = ref(x)
    torch.testing.assert_close(ours.output, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.aux["attention"], gates.mean(dim=2), rtol=1e-10, atol=1e-12)
    # backpropagation through every frame (BPTT) gives the same input gradient
    (grad_ours,) = torch.autograd.grad(ours.output.sum(), x)
    (grad_ref,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-8, atol=1e-11)


def test_int_initialisation_follows_the_reference_constructor():
    torch.manual_seed(0)
    net = create("int", channels=4, kernel_size=3)
    ref = RefEICell(4, 3)
    for ours_bn, ref_bn in ((net.cell.norm_inh, ref.bn[0]), (net.cell.norm_exc, ref.bn[1])):
        assert (ours_bn.eps, ours_bn.track_running_stats) == (ref_bn.eps, ref_bn.track_running_stats)
        torch.testing.assert_close(ours_bn.weight, ref_bn.weight)
        torch.testing.assert_close(ours_bn.bias, ref_bn.bias)
    for name in ("alpha", "mu", "gamma", "kappa"):
        torch.testing.assert_close(getattr(net.cell, name)[0], getattr(ref, name).detach())
    # the attention biases are +1, and the reference then sets the E/I gate biases to minus them
    for gate in (net.att_gate_w, net.att_gate_u):
        assert bool((gate.bias == 1).all())
    for gate in (net.cell.inh_gate_w, net.cell.inh_gate_u, net.cell.exc_gate_w, net.cell.exc_gate_u):
        assert bool((gate.bias == -1).all())
    # orthogonal 1x1 gates, as init.orthogonal_ makes them
    w = net.att_gate_w.weight[:, :, 0, 0]
    torch.testing.assert_close(w @ w.T, torch.eye(4), atol=1e-5, rtol=0)


def test_reference_lesion_is_a_no_op_and_ours_fixes_the_parameter_at_zero():
    """Documented difference: the reference's ``param.weight = 0.`` leaves the value (alpha, kappa stay 1)."""
    alpha = nn.Parameter(torch.ones(3, 1, 1))
    ref_lesion(alpha)
    assert bool((alpha == 1).all()) and not alpha.requires_grad

    x = video(2, 3, 8, seed=3)
    for lesions in (("mu", "gamma"), ("alpha", "kappa")):
        net = randomise_(create("int", channels=3, kernel_size=3, lesions=lesions).to(DTYPE), seed=4)
        ref = reference_int(net, kernel_size=3, no_inh=False, nl=F.softplus)
        with torch.no_grad():
            ours = net(x)
            as_ours = ref(x)[0]  # lesioned parameters copied from ours: 0
            for name in lesions:  # the reference: frozen at its initial value
                param = getattr(ref.unit1, name)
                param.fill_({"alpha": 1.0, "mu": 0.0, "gamma": 0.0, "kappa": 1.0}[name])
                ref_lesion(param)
            as_reference = ref(x)[0]
        torch.testing.assert_close(ours, as_ours, rtol=1e-10, atol=1e-12)  # everything else agrees
        if lesions == ("mu", "gamma"):  # initial value 0: the two lesions coincide
            torch.testing.assert_close(ours, as_reference, rtol=1e-10, atol=1e-12)
        else:  # initial value 1: the reference keeps the term
            assert not torch.allclose(ours, as_reference, rtol=1e-3, atol=1e-6)


# --------------------------------------------------------- feature_tracker utils/complex_functions.py


def ref_stable_angle(x: torch.Tensor, eps=1e-7):
    """Function to ensure that the gradients of .angle() are well behaved."""
    imag = x.imag
    real = x.real
    y = x.clone()
    y.imag[(imag < eps) & (imag > -1.0 * eps)] = eps

    y.real[(real < eps) & (real > -1.0 * eps)] = eps
    return y.angle()


def ref_get_complex_number(magnitude, phase):
    return magnitude * torch.exp(phase * 1j)


def ref_apply_layer(real_function, x):
    psi = real_function(x.real) + 1j * real_function(x.imag)
    m_psi = psi.abs()
    phi_psi = ref_stable_angle(psi)

    chi = real_function(x.abs())
    m_psi = 0.5 * m_psi + 0.5 * chi

    return m_psi, phi_psi


def ref_apply_layer_from_real(real_function, imag_function, x):
    psi = real_function(x) + 1j * imag_function(x)
    m_psi = psi.abs()
    phi_psi = ref_stable_angle(psi)

    return m_psi, phi_psi


def ref_apply_activation_function(m, phi, channel_norm):
    m = channel_norm(m)
    m = torch.nn.functional.relu(m)
    return ref_get_complex_number(m, phi)


class RefComplexConvolution2D(nn.Module):
    def __init__(self, in_channels, channels, kernel_size, stride, padding, biases, apply_activ=True):
        super().__init__()
        self.padding = padding
        self.channels = channels
        self.apply_activ = apply_activ
        self.kernel_conv = nn.Conv2d(
            in_channels, channels, kernel_size=kernel_size, stride=stride, padding=self.padding, bias=biases
        )

        self.norm = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, z_in):
        z_out = ref_apply_layer(self.kernel_conv, z_in)
        if self.apply_activ:
            z_out = ref_apply_activation_function(z_out[0], z_out[1], self.norm)
        else:
            z_out = ref_get_complex_number(z_out[0], z_out[1])
        return z_out


class RefRealToComplexConvolution2D(nn.Module):
    def __init__(self, in_channels, channels, kernel_size, stride, padding, biases, apply_activ=True):
        super().__init__()
        self.padding = padding
        self.channels = channels
        self.apply_activ = apply_activ
        self.kernel_conv_real = nn.Conv2d(
            in_channels, channels, kernel_size=kernel_size, stride=stride, padding=self.padding, bias=biases
        )
        self.kernel_conv_imag = nn.Conv2d(
            in_channels, channels, kernel_size=kernel_size, stride=stride, padding=self.padding, bias=biases
        )

        self.norm = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x):
        z_out = ref_apply_layer_from_real(self.kernel_conv_real, self.kernel_conv_imag, x)
        if self.apply_activ:
            z_out = ref_apply_activation_function(z_out[0], z_out[1], self.norm)
        else:
            z_out = ref_get_complex_number(z_out[0], z_out[1])
        return z_out


def ref_r2c(ours: R2C, in_channels: int, channels: int) -> RefRealToComplexConvolution2D:
    """CVInT.py's R2C settings (kernel 3, stride 1, padding 1, biases=False, apply_activ=True), our weights."""
    ref = RefRealToComplexConvolution2D(
        in_channels, channels, kernel_size=3, stride=1, padding=3 // 2, biases=False, apply_activ=True
    ).to(DTYPE)
    ref.kernel_conv_real.load_state_dict(ours.conv_re.state_dict())
    ref.kernel_conv_imag.load_state_dict(ours.conv_im.state_dict())
    ref.norm.load_state_dict(ours.norm.state_dict())
    return ref


def ref_cconv(ours: CConv, in_channels: int, channels: int) -> RefComplexConvolution2D:
    """CVInT.py's CConv settings (kernel 3, stride 1, padding 1, biases=False, apply_activ=True), our weights.

    Our decode gate has no norm (only its phase is read); the reference's then keeps its initial affine 1, 0.
    """
    ref = RefComplexConvolution2D(
        in_channels, channels, kernel_size=3, stride=1, padding=3 // 2, biases=False, apply_activ=True
    ).to(DTYPE)
    ref.kernel_conv.load_state_dict(ours.conv.state_dict())
    if ours.norm is not None:
        ref.norm.load_state_dict(ours.norm.state_dict())
    return ref


def complex_input(shape, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mag = torch.rand(shape, generator=gen, dtype=DTYPE)
    phase = (torch.rand(shape, generator=gen, dtype=DTYPE) * 2 - 1) * math.pi
    return ref_get_complex_number(mag, phase)


def test_r2c_and_cconv_equal_the_reference_layers():
    r2c = randomise_(R2C(3, 4, 3).to(DTYPE), seed=5)
    cconv = randomise_(CConv(3, 4, 3).to(DTYPE), seed=6)
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(7), dtype=DTYPE)
    z = complex_input((2, 3, 7, 7), seed=8)
    with torch.no_grad():
        for ours, expected in ((r2c(x), ref_r2c(r2c, 3, 4)(x)), (cconv(z.real, z.imag), ref_cconv(cconv, 3, 4)(z))):
            assert bool((expected.abs() > 0).any()) and bool((expected.abs() == 0).any())  # ReLU cut some
            torch.testing.assert_close(ours[0], expected.real, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(ours[1], expected.imag, rtol=1e-10, atol=1e-12)


def test_stable_angle_equals_the_reference_including_near_zero_parts():
    from shared.backbones.tracking.complex_ops import stable_angle

    parts = torch.tensor([0.0, 5e-8, -5e-8, 1e-7, -1e-7, 0.3, -0.3, -2.0], dtype=DTYPE)
    re, im = torch.meshgrid(parts, parts, indexing="ij")
    torch.testing.assert_close(stable_angle(re, im), ref_stable_angle(torch.complex(re, im)), rtol=0, atol=1e-12)


# ------------------------------------------------------------------- feature_tracker models/CVInT.py


class RefCVInTCell(RefEICell):
    """CVInT.py ``rCell`` with ``use_attention=True`` (the unused ``a_h_gate`` left out)."""

    def __init__(self, hidden_size, kernel_size, no_inh=False):
        super().__init__(hidden_size, kernel_size, no_inh)
        self.bn_amp = nn.InstanceNorm2d(hidden_size, affine=True, track_running_stats=False)
        self.a_u_gate = RefRealToComplexConvolution2D(
            hidden_size, hidden_size, kernel_size=3, stride=1, padding=3 // 2, biases=False, apply_activ=True
        )
        self.a_w_gate = RefRealToComplexConvolution2D(
            hidden_size, hidden_size, kernel_size=3, stride=1, padding=3 // 2, biases=False, apply_activ=True
        )
        self.h_gate = RefComplexConvolution2D(
            hidden_size, hidden_size, kernel_size=3, stride=1, padding=3 // 2, biases=False, apply_activ=True
        )
        self.decode_gate = RefComplexConvolution2D(
            hidden_size, 1, kernel_size=3, stride=1, padding=3 // 2, biases=False, apply_activ=True
        )

    def forward(self, input_, cinput, inhibition, excitation, activ=F.softplus):
        ff_drive = self.a_w_gate(input_)
        att_gate = ff_drive + self.a_u_gate(excitation)
        hidden_phases = self.h_gate(ff_drive + cinput)
        new_cinput = hidden_phases
        decoded = self.decode_gate(hidden_phases)  # kept to tell where its ReLU cut
        att_gate_decoded = ref_stable_angle(decoded)
        att_gate = torch.sigmoid(self.bn_amp((att_gate + hidden_phases).abs()))
        inhibition, excitation = self.ei_forward(input_, inhibition, excitation, att_gate, activ)
        return inhibition, excitation, att_gate_decoded, new_cinput, att_gate, decoded.abs()


class RefCVInT(nn.Module):
    """CVInT.py ``CVInT`` (its synch loss is tested on its own below)."""

    def __init__(self, dimensions, kernel_size, no_inh=False, nl=F.softplus):
        super().__init__()
        self.preproc = nn.Conv3d(3, dimensions, kernel_size=(1, 3, 3), padding=(1 // 2, 3 // 2, 3 // 2))
        self.complex_preproc = RefComplexConvolution2D(
            3, dimensions, kernel_size=3, stride=1, padding=3 // 2, biases=False, apply_activ=True
        )
        self.unit1 = RefCVInTCell(dimensions, kernel_size, no_inh)
        self.readout_conv = nn.Conv2d(dimensions, 1, 3, padding=3 // 2)
        self.target_conv = nn.Conv2d(2, 1, 5, padding=5 // 2)
        torch.nn.init.zeros_(self.target_conv.bias)
        self.readout_dense = nn.Linear(1, 1)
        self.nl = nl

    def forward(self, x):
        xbn = self.preproc(x)
        xbn = self.nl(xbn)
        x_shape = xbn.shape
        excitation = torch.zeros((x_shape[0], x_shape[1], x_shape[3], x_shape[4]), dtype=x.dtype)
        inhibition = torch.zeros((x_shape[0], x_shape[1], x_shape[3], x_shape[4]), dtype=x.dtype)
        gates, attention, decoded_magnitude = [], [], []
        for t in range(x_shape[2]):
            if t == 0:
                phases = (torch.rand_like(x[:, :, t]) * 2 * np.pi) - np.pi  # Random Phase/First Frame
                cinput = ref_get_complex_number(x[:, :, t], phases)
                cinput = self.complex_preproc(cinput)
            inhibition, excitation, gate, cinput, att, mag = self.unit1(
                input_=xbn[:, :, t], cinput=cinput, inhibition=inhibition, excitation=excitation, activ=self.nl
            )
            gates.append(gate)
            attention.append(att)
            decoded_magnitude.append(mag)
        output = torch.cat([self.readout_conv(excitation), x[:, 2, 0][:, None]], 1)
        output = self.target_conv(output)
        output = F.avg_pool2d(output, kernel_size=output.size()[2:])
        output = output.reshape(x_shape[0], -1)
        output = self.readout_dense(output)
        return output, torch.cat(gates, 1), torch.stack(attention, 1), torch.cat(decoded_magnitude, 1)


def reference_cvrnn(net, *, kernel_size: int, no_inh: bool) -> RefCVInT:
    c = net.config.channels
    ref = RefCVInT(c, kernel_size, no_inh).to(DTYPE)
    ref.preproc.load_state_dict(net.preproc.state_dict())
    ref.complex_preproc = ref_cconv(net.complex_preproc, 3, c)
    cell = ref.unit1
    cell.a_w_gate, cell.a_u_gate = ref_r2c(net.att_gate_w, c, c), ref_r2c(net.att_gate_u, c, c)
    cell.h_gate, cell.decode_gate = ref_cconv(net.hidden_gate, c, c), ref_cconv(net.decode_gate, c, 1)
    cell.bn_amp.load_state_dict(net.amp_norm.state_dict())
    load_ei_(cell, net.cell, no_inh)
    load_readout_(ref, net.head)
    return ref


@pytest.mark.parametrize("inhibition", [True, False])
def test_cvrnn_forward_equals_the_reference_forward(inhibition):
    """Same random first-frame phases (same seed, one draw each); the decoded phase as documented."""
    net = randomise_(create("cvrnn", channels=3, kernel_size=3, inhibition=inhibition).to(DTYPE), seed=9)
    ref = reference_cvrnn(net, kernel_size=3, no_inh=not inhibition)
    x = video(2, 4, 8, seed=10).requires_grad_()
    torch.manual_seed(11)
    ours = net(x, return_steps=True)
    torch.manual_seed(11)
    expected, phase, attention, decoded_magnitude = ref(x)
    torch.testing.assert_close(ours.output, expected, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(ours.aux["attention"], attention.mean(dim=2), rtol=1e-9, atol=1e-11)
    # documented: where the decoder's ReLU leaves a magnitude, both read angle(psi); where it zeroes it, the
    # reference reads stable_angle(0 + 0i) = pi/4 (no gradient) and we keep angle(psi)
    alive = (decoded_magnitude > 0).detach()
    assert 0.2 < float(alive.double().mean()) < 0.9
    gap = wrapped(ours.aux["phase"], phase).detach()
    assert float(gap[alive].max()) < 1e-6
    torch.testing.assert_close(phase[~alive].detach(), torch.full_like(phase[~alive], math.pi / 4))
    assert float(gap[~alive].max()) > 0.5
    # BPTT: the same input gradient of the logits plus a phase objective read where the phases agree
    weights = torch.randn(phase.shape, generator=torch.Generator().manual_seed(12), dtype=DTYPE) * alive
    (grad_ours,) = torch.autograd.grad(ours.output.sum() + (ours.aux["phase"] * weights).sum(), x)
    (grad_ref,) = torch.autograd.grad(expected.sum() + (phase * weights).sum(), x)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-7, atol=1e-10)


def test_cvrnn_first_complex_state_uses_the_frame_as_magnitude():
    """Documented: we use |frame_0|, the reference frame_0 itself; equal for videos in [0, 1] (the contract)."""
    net = randomise_(create("cvrnn", channels=2, kernel_size=3, initial_phase="zero").to(DTYPE), seed=12)
    ref = ref_cconv(net.complex_preproc, 3, 2)
    x = video(1, 2, 6, seed=13)
    with torch.no_grad():
        drive = net.make_drive(x)
        _, _, c_re, c_im = net.initial_state(drive)
        expected = ref(ref_get_complex_number(x[:, :, 0], torch.zeros_like(x[:, :, 0])))
        torch.testing.assert_close(torch.complex(c_re, c_im), expected, rtol=1e-10, atol=1e-12)
        _, _, n_re, _ = net.initial_state(net.make_drive(x - 0.5))  # a negative frame: the two part ways
        negative = ref(ref_get_complex_number(x[:, :, 0] - 0.5, torch.zeros_like(x[:, :, 0])))
        assert not torch.allclose(n_re, negative.real)


# ---------------------------------------------------------------------- KomplexNet smaller_complex_model.py


def ref_gaussian_kernel(h, w, mean_r=0, std_r=0.5, channels=8):
    """``SmallModel.__init__`` (``args.kernel == 'gaussian'``), with the channel count a parameter."""
    x, y = torch.meshgrid([torch.linspace(-1, 1, h), torch.linspace(-1, 1, w)], indexing="ij")
    dst = torch.sqrt(x**2 + y**2)
    g = torch.exp(-((dst - mean_r) ** 2 / (2.0 * std_r**2)))
    return g.unsqueeze(0).unsqueeze(0).repeat(channels, channels, 1, 1)


def ref_update_phases(amp, phases, kernel_kuramoto, epsilon, lr_kuramoto):
    """``SmallModel.update_phases``; the caller adds the result: ``phases = phases + update_phases(...)``."""
    b = torch.tanh(amp)

    B_cos = torch.cos(phases) * b
    B_sin = torch.sin(phases) * b

    C_cos = torch.nn.functional.conv2d(B_cos, kernel_kuramoto, padding="same")
    C_sin = torch.nn.functional.conv2d(B_sin, kernel_kuramoto, padding="same")

    S_cos = torch.sum(B_cos, dim=(1, 2, 3))[:, None, None, None]
    S_sin = torch.sum(B_sin, dim=(1, 2, 3))[:, None, None, None]

    phases_update = torch.cos(phases) * (C_sin - epsilon * S_sin) - torch.sin(phases) * (C_cos - epsilon * S_cos)
    final_phases = lr_kuramoto * phases_update

    return final_phases


def test_kuramoto_step_equals_the_reference_update():
    step = KuramotoCoupling(3, kernel_size=5, lr=0.7, epsilon=0.05)
    torch.testing.assert_close(step.kernel.detach(), ref_gaussian_kernel(5, 5, channels=3))
    randomise_(step.to(DTYPE), seed=14)
    gen = torch.Generator().manual_seed(15)
    amp = torch.rand(2, 3, 7, 7, generator=gen, dtype=DTYPE)
    phases = (torch.rand(2, 3, 7, 7, generator=gen, dtype=DTYPE) * 2 - 1) * math.pi
    with torch.no_grad():
        expected = phases + ref_update_phases(amp, phases, step.kernel, 0.05, 0.7)
        torch.testing.assert_close(step(amp, phases), expected, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------ feature_tracker synch_loss and its masks


def ref_synch_loss(phases, masks, pixel_eps=1e-6):
    """``synch_loss``; ``pixel_eps`` is its literal ``+ 1e-6`` (0 gives the same loss without it)."""
    phases = phases + math.pi

    # no group for the start/end squares - not even in the bg - (square5)
    new_masks = torch.zeros_like(masks)
    new_masks[:, 1:] = masks[:, 1:]
    new_masks = torch.where(new_masks != 0, torch.ones_like(new_masks), torch.zeros_like(new_masks))
    new_masks[:, 0] = torch.where(
        new_masks[:, 1] != 0, torch.zeros_like(new_masks[:, 1]), torch.ones_like(new_masks[:, 1])
    )
    new_masks[:, 0] = torch.where(new_masks[:, 2] != 0, torch.zeros_like(new_masks[:, 2]), new_masks[:, 0])
    new_masks[:, 0] = torch.where(masks[:, 0] != 0, torch.zeros_like(masks[:, 0]), new_masks[:, 0])

    num_groups = new_masks.shape[1]
    group_size = new_masks.sum((2, 3))

    group_size = torch.where(group_size == 0, torch.ones_like(group_size), group_size)

    # Loss is at least as large as the maxima of each individual loss (total desynchrony + total synchrony)
    loss_bound = 1 + 0.5 * num_groups * (1.0 / np.arange(1, num_groups + 1) ** 2)[: int(num_groups / 2.0)].sum()

    # Consider only the phases with active amplitude
    active_phases = phases

    # Calculate global order within each group

    masked_phases = active_phases * new_masks

    xx = new_masks.bool() * torch.cos(masked_phases) + pixel_eps
    yy = new_masks.bool() * torch.sin(masked_phases) + pixel_eps
    temp = (xx.sum((2, 3))) ** 2 + (yy.sum((2, 3))) ** 2
    go = torch.sqrt(temp) / group_size
    synch = 1 - go.sum(-1) / num_groups

    # Average angle within a group
    mean_angles = torch.atan2(yy.sum((2, 3)), xx.sum((2, 3)))

    # Calculate desynchrony between average group phases
    desynch = 0
    for m in np.arange(1, int(np.floor(num_groups / 2.0)) + 1):
        desynch += (1.0 / (2 * num_groups * m**2)) * (
            torch.cos(m * mean_angles).sum(-1) ** 2 + torch.sin(m * mean_angles).sum(-1) ** 2
        )

    # Total loss is average of invidual losses, averaged over time
    loss = (synch + desynch) / loss_bound

    return loss.mean(dim=-1)


def ref_complex_loss(phase: torch.Tensor, m: torch.Tensor, pixel_eps=1e-6) -> torch.Tensor:
    """``CVInT.forward``'s ``complex_loss = complex_loss + cf.synch_loss(gate, m[:, :, t])`` over frames.

    phase (B, T, H, W) -> the reference's gates (B, 1, H, W) per frame; m (B, 3, T, H, W) its mask video.
    """
    complex_loss = 0
    for t in range(phase.shape[1]):
        complex_loss = complex_loss + ref_synch_loss(phase[:, t : t + 1], m[:, :, t], pixel_eps)
    return complex_loss


def reference_mask_video(ids: torch.Tensor) -> torch.Tensor:
    """Our object ids (B, T, H, W) as the reference's RGB mask video (B, 3, T, H, W).

    ``plot_frame_mask`` (independent_distractors=0 in gen_stim.sh): red 255 = start and goal markers,
    green 255 = every distractor (the paired one included), blue 255 = the target (drawn last).
    """
    return torch.stack([ids == 1, ids >= 3, ids == 2], dim=1).to(DTYPE) * 255


def object_ids(batch: int, frames: int, size: int, n_distractors: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 3 + n_distractors, (batch, frames, size, size), generator=gen)
    ids[..., 0, : 3 + n_distractors] = torch.arange(3 + n_distractors)  # every id in every frame
    return ids


def test_synchrony_loss_with_the_reference_groups_equals_the_reference():
    ids = object_ids(3, 4, 6, n_distractors=3, seed=16)
    phase = (torch.rand(ids.shape, generator=torch.Generator().manual_seed(17), dtype=DTYPE) * 2 - 1) * math.pi
    masks = reference_mask_video(ids)
    phase.requires_grad_()
    ours = synchrony_loss(phase, ids, merge_distractors=True, include_background=True)
    expected = ref_complex_loss(phase, masks, pixel_eps=0.0)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        torch.autograd.grad(ours, phase)[0], torch.autograd.grad(expected, phase)[0], rtol=1e-8, atol=1e-12
    )
    phase, ours = phase.detach(), ours.detach()
    # documented: the reference's + 1e-6 per pixel (all H W pixels, in every group's sums) shifts it slightly
    literal = ref_complex_loss(phase, masks)
    assert 0 < abs(float(ours - literal)) < 1e-3
    # documented: by default every distractor is its own group and the background is no group
    assert abs(float(synchrony_loss(phase, ids) - ours)) > 1e-2


def test_synchrony_loss_zero_for_the_reference_optimum_and_group_count_documented():
    # three groups in phase within and 2 pi / 3 apart: the reference's loss is 0, so is ours
    ids = object_ids(1, 1, 6, n_distractors=2, seed=18)
    centre = {0: 0.3, 2: 0.3 + 2 * math.pi / 3, 3: 0.3 - 2 * math.pi / 3, 4: 0.3 - 2 * math.pi / 3, 1: 2.0}
    phase = torch.zeros(ids.shape, dtype=DTYPE)
    for k, v in centre.items():
        phase[ids == k] = v
    assert float(ref_complex_loss(phase, reference_mask_video(ids), pixel_eps=0.0)) == pytest.approx(0, abs=1e-12)
    assert float(synchrony_loss(phase, ids, merge_distractors=True, include_background=True)) == pytest.approx(
        0, abs=1e-12
    )
    # documented: without distractors the reference keeps G = 3 (an empty group at angle 0 here, pi/4 with its
    # + 1e-6); we count the groups present (G = 2)
    no_distractor = object_ids(1, 1, 6, n_distractors=0, seed=19)
    phase = torch.where(no_distractor == 2, torch.tensor(math.pi, dtype=DTYPE), torch.tensor(0.0, dtype=DTYPE))
    ours = float(synchrony_loss(phase, no_distractor, merge_distractors=True, include_background=True))
    assert ours == pytest.approx(0, abs=1e-12)  # two groups, opposite phases: optimal
    assert float(ref_complex_loss(phase, reference_mask_video(no_distractor), pixel_eps=0.0)) > 0.1


def ref_plot_objects(frame, shape, color, x, y):
    """``utils_drawing.plot_objects``."""
    for i in range(len(shape)):
        for j in range(len(shape)):
            if shape[i, j] == 0:
                frame[x + i, y + j] += color.astype(np.uint8) * shape[i, j].astype(np.uint8)
            else:
                frame[x + i, y + j] = color * shape[i, j]
    return frame


def ref_blobs():
    blob = np.zeros((5, 5), dtype=np.uint8)
    blob[0, :] = 1
    blob[-1, :] = 1
    blob[:, 0] = 1
    blob[:, -1] = 1
    return blob


def ref_plot_frame_mask(frame, idx_frame, shapes, coordinates_2, coordinates_d, goal):
    """``utils_drawing.plot_frame_mask`` (independent_distractors=False; extra distractors: none).

    ``shapes[k][t]`` is object k's 5x5 footprint at frame t (0 = target); the goal marker position ``goal``
    is ``coordinates_2[-1]`` for positives and ``coordinates_3[-1]`` (nearest distractor's end) for negatives.
    Our generator draws the nearest distractor once (documented), so the reference's second drawing of it
    as ``coordinates_3`` adds no pixel and is left out.
    """
    frame = ref_plot_objects(
        frame, ref_blobs(), np.array([255, 0, 0], dtype=np.uint8), int(coordinates_2[0, 0]), int(coordinates_2[0, 1])
    )
    frame = ref_plot_objects(frame, ref_blobs(), np.array([255, 0, 0], dtype=np.uint8), int(goal[0]), int(goal[1]))
    color_dist = np.array([0, 255, 0], dtype=np.uint8)
    for i in range(len(coordinates_d)):
        frame = ref_plot_objects(
            frame,
            shapes[1 + i][idx_frame],
            color_dist,
            int(coordinates_d[i][idx_frame][0]),
            int(coordinates_d[i][idx_frame][1]),
        )
    frame = ref_plot_objects(
        frame,
        shapes[0][idx_frame],
        np.array([0, 0, 255], dtype=np.uint8),
        int(coordinates_2[idx_frame, 0]),
        int(coordinates_2[idx_frame, 1]),
    )
    return frame


def test_featuretracker_masks_hold_the_reference_mask_channels():
    """Our object ids, mapped as the synchrony loss's reference grouping reads them, equal plot_frame_mask."""
    from shared.data.featuretracker import FeatureTrackerConfig, _draw_sample, _shape_frames, generate_featuretracker
    from shared.data.sampling import sample_rng

    cfg = FeatureTrackerConfig(frames=6, num_distractors=3)
    data = generate_featuretracker(4, config=cfg, seed=(7, 0))
    assert set(data.labels.tolist()) == {0, 1}
    for v in range(len(data)):
        parts = _draw_sample(sample_rng((7, 0), v), cfg)
        shapes = _shape_frames(parts["start"][None], parts["reseeds"][None], "id", cfg.frames)[0]
        tracks = parts["tracks"]
        np.testing.assert_array_equal(tracks, data.tracks[v])
        rgb = reference_mask_video(torch.from_numpy(data.masks[v].astype(np.int64))[None])[0]
        for t in range(cfg.frames):
            expected = ref_plot_frame_mask(
                np.zeros((32, 32, 3), np.uint8), t, shapes, tracks[0], tracks[1:], data.markers[v, 1]
            )
            np.testing.assert_array_equal(rgb[:, t].permute(1, 2, 0).numpy() != 0, expected != 0)
