"""The tracking models (issue 17) against their reference code, one hand-derived step at a time.

InT: pathtracker-code/pathtracker-models ``models/InT.py``; CV-RNN layers and synchrony loss:
S4b1n3/feature_tracker ``featuretracker_models/utils/complex_functions.py``; Kuramoto step: S4b1n3/KomplexNet
``smaller_complex_model.py``. Each test recomputes the reference equations with plain tensor operations on
tiny tensors and compares, or checks a property that a wrong implementation would break.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from shared.backbones import create, list_models, model_info
from shared.backbones.cells import SymmetricConv
from shared.backbones.tracking.base import VideoDrive
from shared.backbones.tracking.complex_ops import R2C, CConv, KuramotoCoupling, magnitude, stable_angle
from shared.backbones.tracking.int_circuit import InTCell
from shared.backbones.tracking.synchrony import synchrony_loss
from shared.pathfinder.module import count_parameters

VIDEO_MODELS = ["convgru", "cvrnn", "int", "r3d_small", "spacetime_transformer"]


def sym(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a + a.transpose(0, 1))


def batch_norm(x: torch.Tensor, norm: torch.nn.BatchNorm2d) -> torch.Tensor:
    """The reference BN: batch statistics over (batch, row, column), biased variance, eps 1e-3, affine."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-3) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


def instance_norm(x: torch.Tensor, norm: torch.nn.InstanceNorm2d) -> torch.Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


def randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Distinct values for every parameter, so no term of a step hides behind the symmetric init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=gen) + 0.1)


def conv1x1(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias)


# --- InT ----------------------------------------------------------------------------------------------------


def test_int_step_matches_the_reference_equations():
    torch.manual_seed(0)
    net = create("int", channels=2, kernel_size=3)
    randomise(net)
    cell = net.cell
    x, i, e = torch.rand(2, 2, 5, 5), torch.rand(2, 2, 5, 5), torch.rand(2, 2, 5, 5)
    drive = VideoDrive(x[:, :, None], torch.rand(2, 3, 1, 5, 5))
    new_i, new_e = net.step(drive, (i, e), 0)
    sp = F.softplus
    # rCell.forward (use_attention=True), written out
    att = torch.sigmoid(conv1x1(net.att_gate_w, x) + conv1x1(net.att_gate_u, e))
    gated_e = att * e
    inh = batch_norm(F.conv2d(gated_e, sym(cell.w_inh.A), padding=1), cell.norm_inh)
    i_hat = sp(x - sp(inh * (cell.alpha * i + cell.mu)))
    g_i = torch.sigmoid(conv1x1(cell.inh_gate_w, x) + conv1x1(cell.inh_gate_u, i))
    i_expected = (1 - g_i) * i + g_i * i_hat
    g_e = torch.sigmoid(conv1x1(cell.exc_gate_w, i) + conv1x1(cell.exc_gate_u, gated_e))  # previous i
    exc = batch_norm(F.conv2d(i_expected, sym(cell.w_exc.A), padding=1), cell.norm_exc)
    e_hat = sp(exc * (cell.kappa * i_expected + cell.gamma))
    e_expected = (1 - g_e) * e + g_e * e_hat
    torch.testing.assert_close(new_i, i_expected)
    torch.testing.assert_close(new_e, e_expected)
    torch.testing.assert_close(
        net.readout((new_i, new_e), drive),
        net.head.dense(
            F.conv2d(
                torch.cat([conv1x1(net.head.readout_conv, new_e), drive.video[:, 2:3, 0]], 1),
                net.head.target_conv.weight,
                net.head.target_conv.bias,
                padding=2,
            ).mean(dim=(2, 3))
        ),
    )


def test_int_without_inhibition_follows_the_no_inh_branch():
    torch.manual_seed(0)
    cell = InTCell(2, 3, inhibition=False, nonlinearity="tanh")
    randomise(cell)
    assert not hasattr(cell, "w_inh") and not hasattr(cell, "alpha")
    x, i, e, a = (torch.rand(2, 2, 5, 5) for _ in range(4))
    new_i, new_e = cell(x, i, e, a)
    gated_e = a * e
    g_e = torch.sigmoid(conv1x1(cell.exc_gate_w, e) + conv1x1(cell.exc_gate_u, gated_e))
    e_hat = torch.tanh(
        batch_norm(F.conv2d(gated_e, sym(cell.w_exc.A), padding=1), cell.norm_exc) * (cell.kappa * gated_e + cell.gamma)
    )
    torch.testing.assert_close(new_i, gated_e)
    torch.testing.assert_close(new_e, (1 - g_e) * e + g_e * e_hat)


@pytest.mark.parametrize("lesion", ["alpha", "mu", "gamma", "kappa"])
def test_lesions_fix_their_parameter_at_zero_and_remove_the_term(lesion):
    torch.manual_seed(0)
    lesioned, intact = InTCell(2, 3, lesions=(lesion,)), InTCell(2, 3)
    intact.load_state_dict(lesioned.state_dict(), strict=False)
    randomise(intact)
    lesioned.load_state_dict({k: v for k, v in intact.state_dict().items() if k != lesion}, strict=False)
    names = dict(lesioned.named_parameters())
    assert lesion not in names and torch.count_nonzero(getattr(lesioned, lesion)) == 0
    x, i, e, a = (torch.rand(2, 2, 5, 5) for _ in range(4))
    with torch.no_grad():
        before = intact(x, i, e, a)[1]
        getattr(intact, lesion).zero_()
        after = intact(x, i, e, a)[1]
    assert not torch.allclose(before, after)  # the term mattered
    torch.testing.assert_close(lesioned(x, i, e, a)[1], after)  # and the lesion removes exactly it
    opt = torch.optim.SGD(lesioned.parameters(), lr=1.0)
    lesioned(x, i, e, a)[1].sum().backward()
    opt.step()
    assert torch.count_nonzero(getattr(lesioned, lesion)) == 0


def test_int_initialises_like_the_reference():
    net = create("int", channels=4, kernel_size=3)
    cell = net.cell
    for name, value in (("alpha", 1.0), ("mu", 0.0), ("gamma", 0.0), ("kappa", 1.0)):
        assert torch.all(getattr(cell, name) == value), name
    for norm in (cell.norm_inh, cell.norm_exc):
        assert torch.all(norm.weight == 0.1) and torch.all(norm.bias == 0)
        assert not norm.track_running_stats and norm.eps == 1e-3
    for conv in (net.att_gate_w, net.att_gate_u):
        assert torch.all(conv.bias == 1.0)
    for conv in (cell.inh_gate_w, cell.inh_gate_u, cell.exc_gate_w, cell.exc_gate_u):
        assert torch.all(conv.bias == -1.0)
        w = conv.weight.flatten(1)
        torch.testing.assert_close(w @ w.T, torch.eye(4))  # orthogonal
    for kernel in (cell.w_inh, cell.w_exc):
        a = kernel.A.detach().flatten(1)  # (C, C k k): orthonormal rows
        torch.testing.assert_close(a @ a.T, torch.eye(4), atol=1e-5, rtol=0)
    assert torch.all(net.head.target_conv.bias == 0)


def test_horizontal_kernels_stay_symmetric_after_training_steps():
    torch.manual_seed(0)
    net = create("int", channels=3, kernel_size=3)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    video = torch.rand(2, 3, 3, 8, 8)
    for _ in range(2):
        opt.zero_grad()
        net(video).square().mean().backward()
        opt.step()
    kernels = [m for m in net.modules() if isinstance(m, SymmetricConv)]
    assert len(kernels) == 2
    for m in kernels:
        assert torch.equal(m.weight, m.weight.transpose(0, 1))
        assert not torch.allclose(m.A, m.A.transpose(0, 1))


def test_readout_reads_the_blue_channel_of_frame_zero():
    torch.manual_seed(0)
    net = create("int", channels=3, kernel_size=3)
    net.eval()
    video = torch.rand(2, 3, 4, 8, 8)

    def logits(v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(v)

    def changed(channel: int, frame: int) -> torch.Tensor:
        v = video.clone()
        v[:, channel, frame, 3:5, 3:5] += 0.5
        return v

    base = logits(video)
    # red of frame 0 reaches the logit through the circuit only (weakly at initialisation: e_0 = 0 and the
    # excitation gate starts at sigma(-2))
    assert (logits(changed(0, 0)) - base).abs().max() > 1e-7
    with torch.no_grad():  # cut the circuit off the video
        net.preproc.weight.zero_()
        net.preproc.bias.zero_()
    base = logits(video)
    assert (logits(changed(2, 0)) - base).abs().max() > 1e-3  # blue of frame 0 still reaches the readout
    for channel, frame in ((0, 0), (1, 0), (2, 1)):  # nothing else does
        assert torch.equal(logits(changed(channel, frame)), base)


def test_int_attention_and_steps_per_frame():
    net = create("int", channels=3, kernel_size=3, settle_steps=2)
    out = net(torch.rand(2, 3, 5, 8, 8), return_steps=True)
    att = out.aux["attention"]
    assert att.shape == (2, 5, 8, 8) and bool(((att > 0) & (att < 1)).all())
    assert len(out.steps) == 7 and len(out.stats.residuals) == 7


@pytest.mark.parametrize("name", ["int", "cvrnn", "convgru"])
def test_recurrent_video_models_stay_finite_over_a_long_video(name):
    # 64 frames at 32x32, the published PathTracker size, at initialisation
    torch.manual_seed(0)
    net = create(name, channels=4, kernel_size=3)
    with torch.no_grad():
        out = net((torch.rand(2, 3, 64, 32, 32) > 0.9).float(), return_steps=True)
    assert len(out.steps) == 64 and all(torch.isfinite(s).all() for s in out.steps)
    assert all(math.isfinite(r) for r in out.stats.residuals)
    assert all(torch.isfinite(v).all() and v.shape == (2, 64, 32, 32) for v in out.aux.values())


def test_crbp_without_settle_phase_is_rejected_at_call_time():
    net = create("int", channels=2, kernel_size=3)
    net.mode = "crbp"
    with pytest.raises(ValueError, match="settle_steps"):
        net(torch.rand(1, 3, 2, 6, 6))
    net.settle_steps = 3
    out = net(torch.rand(2, 3, 2, 6, 6), return_steps=True)
    out.output.sum().backward()
    assert out.stats.tracked_steps == 1 and out.stats.neumann_iterations is not None


def test_video_input_errors_name_the_axes():
    net = create("int", channels=2, kernel_size=3)
    with pytest.raises(ValueError, match=r"\(batch, channel, frame, row, column\)"):
        net(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="in_channels"):
        create("int", in_channels=1)
    transformer = create("spacetime_transformer", image_size=16, embed_dim=16, heads=2, depth=1)
    with pytest.raises(ValueError, match="tubelet"):
        transformer(torch.rand(1, 3, 5, 16, 16))  # 5 frames would silently drop the last one
    with pytest.raises(ValueError, match="image_size"):
        transformer(torch.rand(1, 3, 4, 12, 12))


def test_registry_lists_video_models_by_input_kind():
    assert list_models(input_kind="video") == VIDEO_MODELS
    assert model_info("hgru").input_kind == "image" and model_info("unet3d").input_kind == "volume"
    assert set(list_models(input_kind="video", recurrent=True)) == {"convgru", "cvrnn", "int"}


# --- complex layers -----------------------------------------------------------------------------------------


def test_r2c_matches_a_hand_computation():
    torch.manual_seed(0)
    layer = R2C(1, 2, kernel_size=1)
    with torch.no_grad():
        layer.conv_re.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        layer.conv_im.weight.copy_(torch.tensor([1.0, 3.0]).view(2, 1, 1, 1))
        layer.norm.weight.copy_(torch.tensor([1.5, 0.5]))
        layer.norm.bias.copy_(torch.tensor([0.2, -0.1]))
    x = torch.rand(1, 1, 3, 3) + 0.1
    mag, phase = layer.polar(x)
    raw = torch.cat([math.sqrt(5) * x, math.sqrt(10) * x], 1)  # |a x + i b x| = |x| sqrt(a^2 + b^2)
    torch.testing.assert_close(mag, F.relu(instance_norm(raw, layer.norm)))
    expected_phase = torch.cat([torch.full_like(x, math.atan2(1, 2)), torch.full_like(x, math.atan2(3, -1))], 1)
    torch.testing.assert_close(phase, expected_phase)
    re, im = layer(x)
    torch.testing.assert_close(re, mag * torch.cos(phase))
    torch.testing.assert_close(im, mag * torch.sin(phase))


def test_cconv_matches_a_hand_computation():
    layer = CConv(1, 2, kernel_size=1, activation=False)
    with torch.no_grad():
        layer.conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
    re, im = torch.tensor([[[[3.0, 0.0]]]]), torch.tensor([[[[4.0, -2.0]]]])
    mag, phase = layer.polar(re, im)
    # psi = w re + i w im: |psi| = |w| |z|; classic term w |z|; magnitude 0.5 |w||z| + 0.5 w |z|
    z = torch.tensor([5.0, 2.0])
    torch.testing.assert_close(mag[0, 0, 0], 0.5 * 2 * z + 0.5 * 2 * z)
    torch.testing.assert_close(mag[0, 1, 0], 0.5 * 1 * z - 0.5 * 1 * z)
    torch.testing.assert_close(phase[0, 0, 0], torch.tensor([math.atan2(4, 3), -math.pi / 2]))
    torch.testing.assert_close(phase[0, 1, 0], torch.tensor([math.atan2(-4, -3), math.pi / 2]))
    activated = CConv(1, 2, kernel_size=1)
    activated.conv.load_state_dict(layer.conv.state_dict())
    x_re, x_im = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
    act_mag, act_phase = activated.polar(x_re, x_im)
    raw_mag, raw_phase = layer.polar(x_re, x_im)
    torch.testing.assert_close(act_mag, F.relu(instance_norm(raw_mag, activated.norm)))
    torch.testing.assert_close(act_phase, raw_phase)


def test_cvrnn_step_composes_the_cvint_equations():
    # CVInT rCell.forward: ff = a_w(x); att = ff + a_u(e); h = h_gate(ff + c); theta = angle(decode(h));
    # A = sigma(bn_amp(|att + h|)); then InT's E/I step with A; the new complex state is h
    torch.manual_seed(0)
    net = create("cvrnn", channels=2, kernel_size=3, initial_phase="zero")
    randomise(net)
    x, i, e = torch.rand(2, 2, 5, 5), torch.rand(2, 2, 5, 5), torch.rand(2, 2, 5, 5)
    c_re, c_im = torch.randn(2, 2, 5, 5), torch.randn(2, 2, 5, 5)
    drive = VideoDrive(x[:, :, None], torch.rand(2, 3, 1, 5, 5))
    net._trace = {}
    new_i, new_e, h_re, h_im = net.step(drive, (i, e, c_re, c_im), 0)
    ff_re, ff_im = net.att_gate_w(x)
    au_re, au_im = net.att_gate_u(e)
    mag, phase = net.hidden_gate.polar(ff_re + c_re, ff_im + c_im)
    torch.testing.assert_close(h_re, mag * torch.cos(phase))
    torch.testing.assert_close(h_im, mag * torch.sin(phase))
    att = torch.sigmoid(
        instance_norm(torch.sqrt((ff_re + au_re + h_re) ** 2 + (ff_im + au_im + h_im) ** 2), net.amp_norm)
    )
    expected_i, expected_e = net.cell(x, i, e, att)
    torch.testing.assert_close(new_i, expected_i)
    torch.testing.assert_close(new_e, expected_e)
    torch.testing.assert_close(net._trace["attention"][0], att.mean(dim=1))
    decoded = (
        F.conv2d(h_re, net.decode_gate.conv.weight, padding=1),
        F.conv2d(h_im, net.decode_gate.conv.weight, padding=1),
    )
    torch.testing.assert_close(net._trace["phase"][0], stable_angle(*decoded)[:, 0])  # 0 + 0i (all-ReLU'd h) -> pi/4
    c0_re, c0_im = net.initial_state(drive)[2:]  # c_0 = CConv(|frame_0| e^{i 0}): a real input
    ref_re, ref_im = net.complex_preproc(drive.video[:, :, 0], torch.zeros(2, 3, 5, 5))
    torch.testing.assert_close((c0_re, c0_im), (ref_re, ref_im))


def test_real_valued_control_zeroes_every_phase_and_keeps_the_parameters():
    layer = CConv(2, 3, kernel_size=3, complex_valued=False)
    assert torch.count_nonzero(layer.polar(torch.rand(1, 2, 5, 5), torch.rand(1, 2, 5, 5))[1]) == 0
    complex_net = create("cvrnn", channels=4, kernel_size=3)
    real_net = create("cvrnn", channels=4, kernel_size=3, complex_valued=False)
    assert count_parameters(complex_net) == count_parameters(real_net)
    assert [n for n, _ in complex_net.named_parameters()] == [n for n, _ in real_net.named_parameters()]
    out = real_net(torch.rand(2, 3, 3, 8, 8), return_steps=True)
    assert set(out.aux) == {"attention"}


def test_stable_angle_and_magnitude_have_finite_gradients_at_zero():
    re, im = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    (stable_angle(re, im).sum() + magnitude(re, im).sum()).backward()
    assert torch.isfinite(re.grad).all() and torch.isfinite(im.grad).all()
    assert torch.atan2(torch.zeros(1), torch.zeros(1)).item() == 0.0  # plain angle(0) ...
    z = torch.zeros(1, requires_grad=True)
    torch.sqrt(z * z + z * z).sum().backward()
    assert not torch.isfinite(z.grad).all()  # ... and plain |z| are not safe
    layer = CConv(1, 1, kernel_size=3)
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    mag, phase = layer.polar(x, torch.zeros(1, 1, 4, 4))
    (mag.sum() + phase.sum()).backward()
    assert torch.isfinite(x.grad).all()


def test_kuramoto_step_is_a_local_sum_of_sines():
    torch.manual_seed(0)
    step = KuramotoCoupling(1, kernel_size=3, lr=0.7)
    with torch.no_grad():
        step.kernel.copy_(torch.rand(1, 1, 3, 3))
    mag, phase = torch.rand(1, 1, 1, 4), torch.rand(1, 1, 1, 4) * 6 - 3
    new = step(mag, phase)
    b, k = torch.tanh(mag)[0, 0, 0], step.kernel.detach()[0, 0, 1]  # the middle row of K acts on a 1-row map
    for i in range(4):
        coupling = sum(
            k[j - i + 1] * b[j] * torch.sin(phase[0, 0, 0, j] - phase[0, 0, 0, i])
            for j in range(max(0, i - 1), min(4, i + 2))
        )
        torch.testing.assert_close(new[0, 0, 0, i], phase[0, 0, 0, i] + 0.7 * coupling)
    net = create("cvrnn", channels=3, kernel_size=3, kuramoto_steps=2, initial_phase="zero")
    net(torch.rand(1, 3, 2, 8, 8)).sum().backward()
    assert net.kuramoto.kernel.grad is not None and torch.isfinite(net.kuramoto.kernel.grad).all()


# --- synchrony loss -----------------------------------------------------------------------------------------


def reference_synch_loss_one_frame(phase: torch.Tensor, ids: torch.Tensor) -> float:
    """The reference formula for one frame, written with loops (groups: ids >= 2)."""
    groups = [phase[ids == g] for g in sorted(set(ids.flatten().tolist())) if g >= 2]
    n = len(groups)
    if n == 0:
        return 0.0
    sums = [complex(torch.cos(p).sum(), torch.sin(p).sum()) for p in groups]
    synch = 1 - sum(abs(s) / len(p) for s, p in zip(sums, groups)) / n
    means = [math.atan2(s.imag, s.real) for s in sums]
    desynch = sum(
        abs(sum(complex(math.cos(m * a), math.sin(m * a)) for a in means)) ** 2 / (2 * n * m**2)
        for m in range(1, n // 2 + 1)
    )
    bound = 1 + 0.5 * n * sum(1 / m**2 for m in range(1, n // 2 + 1))
    return (synch + desynch) / bound


def test_synchrony_loss_hand_computed_case():
    ids = torch.tensor([[[[2, 2], [3, 0]]]])
    phase = torch.tensor([[[[0.0, math.pi / 2], [math.pi, 5.0]]]])
    # group 2: |1 + i| / 2 = sqrt(2)/2, mean angle pi/4; group 3: order 1, angle pi
    synch = 1 - (math.sqrt(2) / 2 + 1) / 2
    desynch = abs(complex(math.cos(math.pi / 4), math.sin(math.pi / 4)) - 1) ** 2 / 4
    expected = (synch + desynch) / 2
    assert float(synchrony_loss(phase, ids)) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.146447, abs=1e-6)


def test_synchrony_loss_is_zero_for_synchronised_evenly_spread_groups_and_larger_for_random_phases():
    torch.manual_seed(0)
    ids = torch.randint(0, 5, (2, 3, 8, 8))  # background, markers, target, 2 distractors
    spread = {g: 2 * math.pi * k / 3 + 0.3 for k, g in enumerate((2, 3, 4))}
    phase = torch.rand(2, 3, 8, 8) * 6  # background and markers may hold anything
    for g, angle in spread.items():
        phase = torch.where(ids == g, torch.full_like(phase, angle), phase)
    assert float(synchrony_loss(phase, ids)) < 1e-5
    random_loss = float(synchrony_loss(torch.rand(2, 3, 8, 8) * 2 * math.pi, ids))
    assert random_loss > 0.2


def test_synchrony_loss_vectorised_equals_the_per_frame_reference():
    torch.manual_seed(1)
    ids = torch.randint(0, 6, (3, 4, 6, 6))
    ids[0, 1] = torch.randint(0, 2, (6, 6))  # a frame without objects
    ids[1, 2] = torch.where(ids[1, 2] >= 2, torch.tensor(2), ids[1, 2])  # a frame with one object
    phase = torch.rand(3, 4, 6, 6) * 2 * math.pi - math.pi
    per_frame = torch.tensor(
        [[reference_synch_loss_one_frame(phase[b, t], ids[b, t]) for t in range(4)] for b in range(3)]
    )
    assert float(synchrony_loss(phase, ids)) == pytest.approx(float(per_frame.mean(0).sum()), abs=1e-5)
    assert float(synchrony_loss(phase, ids, frame_reduction="mean")) == pytest.approx(float(per_frame.mean()), abs=1e-5)
    with_background = float(synchrony_loss(phase, ids + (ids == 0) * 99))  # background as its own object id
    assert float(synchrony_loss(phase, ids, include_background=True)) == pytest.approx(with_background, abs=1e-5)


def test_synchrony_loss_gradients_flow_to_the_phase_and_the_model():
    torch.manual_seed(0)
    ids = torch.randint(0, 5, (2, 3, 8, 8))
    phase = (torch.rand(2, 3, 8, 8) * 6).requires_grad_()
    synchrony_loss(phase, ids).backward()
    assert torch.isfinite(phase.grad).all() and phase.grad.abs().sum() > 0
    assert torch.count_nonzero(phase.grad[ids == 1]) == 0  # markers are excluded
    net = create("cvrnn", channels=3, kernel_size=3)
    out = net(torch.rand(2, 3, 3, 8, 8), return_steps=True)
    synchrony_loss(out.aux["phase"], ids).backward()
    assert net.decode_gate.conv.weight.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="masks"):
        synchrony_loss(phase, ids.float())


# --- every model learns a memorised batch ------------------------------------------------------------------

TRAIN_CONFIGS = [
    ("int", {"channels": 4, "kernel_size": 3}),
    ("int", {"channels": 4, "kernel_size": 3, "mode": "crbp", "settle_steps": 3, "neumann_g_limit": None}),
    ("cvrnn", {"channels": 4, "kernel_size": 3, "initial_phase": "zero"}),
    ("cvrnn", {"channels": 4, "kernel_size": 3, "initial_phase": "zero", "complex_valued": False}),
    ("convgru", {"channels": 4, "hidden_channels": 4, "kernel_size": 3}),
    ("r3d_small", {"stem_channels": 4, "widths": (4, 8)}),
    ("spacetime_transformer", {"image_size": 12, "patch_size": 4, "embed_dim": 16, "heads": 2, "depth": 1}),
]


@pytest.mark.filterwarnings("ignore:C-RBP:RuntimeWarning")
@pytest.mark.parametrize("name, config", TRAIN_CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TRAIN_CONFIGS)])
def test_every_model_fits_a_memorised_batch(name, config):
    torch.manual_seed(0)
    net = create(name, **config)
    labels = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    video = torch.rand(4, 3, 4, 12, 12) * 0.5 + 0.5 * labels.view(4, 1, 1, 1, 1)  # positives are brighter
    masks = torch.zeros(4, 4, 12, 12, dtype=torch.long)  # three square objects, same in every frame
    masks[..., :6, :6], masks[..., 6:, :6], masks[..., 6:, 6:] = 2, 3, 4
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)

    def losses() -> tuple[torch.Tensor, torch.Tensor]:
        out = net(video, return_steps=True)
        bce = F.binary_cross_entropy_with_logits(out.output, labels)
        extra = torch.zeros(())
        if "phase" in out.aux:
            extra = extra + synchrony_loss(out.aux["phase"], masks, frame_reduction="mean")
        if out.stats is not None and out.stats.penalty is not None:
            extra = extra + out.stats.penalty
        return bce, extra

    first_bce, first_extra = (float(v.detach()) for v in losses())
    for _ in range(20):
        opt.zero_grad()
        sum(losses()).backward()
        opt.step()
    bce, extra = (float(v.detach()) for v in losses())
    assert bce < 0.5 * first_bce
    if name == "cvrnn" and config.get("complex_valued", True):
        assert extra < first_extra  # the phases group by object


def test_goal_pool_reads_the_state_at_the_goal_marker_only():
    from shared.backbones.tracking.base import GoalReadout

    torch.manual_seed(0)
    mean_head, goal_head = GoalReadout(2), GoalReadout(2, pool="goal")
    goal_head.load_state_dict(mean_head.state_dict())
    state, goal = torch.rand(1, 2, 16, 16), torch.zeros(1, 1, 16, 16)
    goal[..., 4:6, 4:6] = 1.0
    far, near = state.clone(), state.clone()
    far[..., 12:, 12:] += 1.0  # more than 2 px (target_conv's reach) from the goal
    near[..., 4:6, 4:6] += 1.0
    with torch.no_grad():
        assert torch.equal(goal_head(far, goal), goal_head(state, goal))
        assert (mean_head(far, goal) - mean_head(state, goal)).abs().item() > 0
        # at the goal, the goal pool sees the change undiluted by the map's area
        assert (goal_head(near, goal) - goal_head(state, goal)).abs().item() > 10 * (
            mean_head(near, goal) - mean_head(state, goal)
        ).abs().item()
    with pytest.raises(ValueError, match="pool"):
        GoalReadout(2, pool="max")


def test_int_norm_scale_sets_the_initial_bn_scale_and_defaults_to_the_reference():
    assert torch.all(create("int", channels=3, kernel_size=3).cell.norm_exc.weight == 0.1)
    cell = create("int", channels=3, kernel_size=3, norm_scale=1.0).cell
    assert torch.all(cell.norm_exc.weight == 1.0) and torch.all(cell.norm_inh.weight == 1.0)
    with pytest.raises(ValueError, match="norm_scale"):
        create("int", channels=3, kernel_size=3, norm_scale=0.0)
