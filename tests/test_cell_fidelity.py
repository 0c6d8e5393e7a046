"""The cells against their reference code, one hand-derived step at a time.

Each test re-derives one step from the equations of the reference implementation (named in the test) with
plain tensor operations, on tiny tensors, and compares it with the cell: serre-lab/gammanet_pytorch
``layers/fgru_base.py`` (fGRUCell2, GALA_Attention), serre-lab/hgru_share ``layers/recurrent/hgru.py`` (the
2018 hGRU), and the C-RBP Lipschitz penalty in BPTT mode (C-BPTT).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from shared.backbones import HGRUCell, create
from shared.backbones.cells import FGRUCell, StepNorm
from shared.backbones.gala import GALAAttention
from shared.recurrence import CRBPConfig, lipschitz_penalty, run_recurrence


def instance_norm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel statistics over the spatial axes (biased variance, eps 1e-5), then affine."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def sym(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a + a.transpose(0, 1))


def randomise(cell: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter distinct values so no term of the step can hide behind a symmetric init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen) + 0.1)


def norm_params(norm: StepNorm) -> tuple[torch.Tensor, torch.Tensor]:
    layer = norm.norms[0]
    return layer.weight, layer.bias


def test_fgru_initialises_like_fgrucell2():
    cell = FGRUCell(2, 3, kernel_size=3, timesteps=4)
    for name, value in (("alpha", 0.1), ("mu", 1.0), ("kappa", 0.5), ("omega", 0.5)):
        assert torch.all(getattr(cell, name) == value), name
    for norm in (cell.norm_gain, cell.norm_inh, cell.norm_mix, cell.norm_exc):
        scale, shift = norm_params(norm)
        assert torch.all(scale == 0.1) and torch.all(shift == 0)
    old = FGRUCell(2, 3, kernel_size=3, timesteps=4, scalar_init="htdfgru")
    assert [float(getattr(old, n).detach()[0, 0]) for n in ("alpha", "mu", "kappa", "omega")] == [1.0, 0.0, 0.0, 1.0]


def test_fgru_step_matches_fgrucell2():
    # fGRUCell2.forward: g1 = sigma(bn_g1(U1 h + b1)); c1 = bn_c1(W_inh (h g1)); h1 = [z - [(a h + mu) c1]+]+;
    # g2 = sigma(bn_g2(U2 h1 + b2)); c2 = bn_c2(W_exc h1); h~ = [k (h1 + c2) + w h1 c2]+;
    # h = (1 - g2) h + g2 h~      (instance norms, affine; zero padding here, reflect there)
    torch.manual_seed(0)
    cell = FGRUCell(2, 2, kernel_size=3, timesteps=4, norm="instance")
    randomise(cell)
    z, h = torch.rand(1, 2, 5, 5), torch.rand(1, 2, 5, 5)
    new, maps = cell.step(z, h, 0)

    def n(x, norm):
        return instance_norm(x, *norm_params(norm))

    b1, b2 = cell.gain_bias.view(1, -1, 1, 1), cell.mix_bias.view(1, -1, 1, 1)
    g1 = torch.sigmoid(n(F.conv2d(h, cell.gain.weight) + b1, cell.norm_gain))
    c1 = n(F.conv2d(h * g1, sym(cell.inh.A), padding=1), cell.norm_inh)
    h1 = F.relu(z - F.relu((cell.alpha * h + cell.mu) * c1))
    g2 = torch.sigmoid(n(F.conv2d(h1, cell.mix.weight) + b2, cell.norm_mix))
    c2 = n(F.conv2d(h1, sym(cell.exc.A), padding=1), cell.norm_exc)
    h_hat = F.relu(cell.kappa * (h1 + c2) + cell.omega * (h1 * c2))
    expected = (1 - g2) * h + g2 * h_hat
    for key, value in (("g1", g1), ("c1", c1), ("s", h1), ("g2", g2), ("c2", c2)):
        torch.testing.assert_close(maps[key], value, msg=key)
    torch.testing.assert_close(new, expected)


def test_fgru_gate_bias_before_instance_norm_is_cancelled():
    # a per-channel bias added before a per-channel mean subtraction has no effect (as in fGRUCell2);
    # added after the norm it shifts the gate
    torch.manual_seed(0)
    z, h = torch.rand(1, 2, 5, 5), torch.rand(1, 2, 5, 5)
    for gate_bias, changes in (("before_norm", False), ("after_norm", True)):
        cell = FGRUCell(2, 2, kernel_size=3, timesteps=4, gate_bias=gate_bias)
        randomise(cell)
        before = cell(z, h)
        with torch.no_grad():
            cell.gain_bias.add_(2.0)
            cell.mix_bias.sub_(1.0)
        assert (not torch.allclose(cell(z, h), before, atol=1e-6)) == changes, gate_bias


def test_fgru_input_norm_order_option():
    # norm_order="input": C1 = W_inh * N(h g1), C2 = W_exc * N(S) (this cell's earlier form)
    torch.manual_seed(0)
    cell = FGRUCell(2, 2, kernel_size=3, timesteps=4, norm_order="input", gate_bias="after_norm")
    randomise(cell)
    z, h = torch.rand(1, 2, 5, 5), torch.rand(1, 2, 5, 5)
    _, maps = cell.step(z, h, 0)
    g1_expected = torch.sigmoid(
        instance_norm(F.conv2d(h, cell.gain.weight), *norm_params(cell.norm_gain)) + cell.gain_bias.view(1, -1, 1, 1)
    )
    torch.testing.assert_close(maps["g1"], g1_expected)
    c1 = F.conv2d(instance_norm(h * maps["g1"], *norm_params(cell.norm_inh)), sym(cell.inh.A), padding=1)
    torch.testing.assert_close(maps["c1"], c1)
    c2 = F.conv2d(instance_norm(maps["s"], *norm_params(cell.norm_exc)), sym(cell.exc.A), padding=1)
    torch.testing.assert_close(maps["c2"], c2)


def test_gala_matches_gammanet_pytorch_and_feeds_the_gain_gate():
    # GALA_Attention(layers=2, norm_attention=False): sa(h) * se(h), each conv followed by ReLU;
    # se: 1x1 convs K -> K/2 -> K; sa: 5x5 convs K -> K/2 -> 1
    torch.manual_seed(0)
    gala = GALAAttention(2, 4)
    randomise(gala)
    h = torch.rand(2, 4, 7, 7)
    f1, f2 = gala.feature[0], gala.feature[2]
    s1, s2 = gala.spatial[0], gala.spatial[2]
    assert f1.weight.shape == (2, 4, 1, 1) and f2.weight.shape == (4, 2, 1, 1)
    assert s1.weight.shape == (2, 4, 5, 5) and s2.weight.shape == (1, 2, 5, 5)
    se = F.relu(F.conv2d(F.relu(F.conv2d(h, f1.weight, f1.bias)), f2.weight, f2.bias))
    sa = F.relu(F.conv2d(F.relu(F.conv2d(h, s1.weight, s1.bias, padding=2)), s2.weight, s2.bias, padding=2))
    torch.testing.assert_close(gala(h), sa * se)
    fresh = GALAAttention(2, 4)
    assert all(torch.all(layer.bias == 0) for layer in (fresh.feature[0], fresh.spatial[2]))

    cell = FGRUCell(2, 4, kernel_size=3, timesteps=4, attention="gala")
    randomise(cell)
    _, maps = cell.step(torch.rand(2, 4, 7, 7), h, 0)
    g1 = torch.sigmoid(instance_norm(cell.gain(h) + cell.gain_bias.view(1, -1, 1, 1), *norm_params(cell.norm_gain)))
    torch.testing.assert_close(maps["g1"], g1)


def test_gala_is_the_2d_default_and_off_in_3d():
    assert isinstance(create("gammanet2d", features=(4, 6)).horizontal[0].gain, GALAAttention)
    assert isinstance(create("fgru2d", hidden_channels=4).cell.gain, GALAAttention)
    assert not isinstance(create("gammanet3d", features=(4, 6)).horizontal[0].gain, GALAAttention)
    assert not isinstance(create("gammanet2d", features=(4, 6), attention="none").horizontal[0].gain, GALAAttention)
    with pytest.raises(TypeError, match="attention"):  # the registry checks the Literal
        create("gammanet2d", attention="se")
    with pytest.raises(ValueError, match="norm_order"):
        FGRUCell(3, 2, norm_order="middle")


def test_hgru_2018_step_matches_hgru_share():
    # hgru_share layers/recurrent/hgru.py, tanh, one kernel W, adaptation eta_t, no norm; written in our gate
    # convention (G2_ours = 1 - G2_tf):
    # h1 = tanh(x - (a h2 + mu) c1), c1 = W (h2 g1); h2~ = tanh(k (h1 + g c2) + w (h1 g c2)), c2 = W h1;
    # h2 = eta_t ((1 - g2) h2 + g2 h2~)
    torch.manual_seed(0)
    cell = HGRUCell(2, kernel_size=3, timesteps=3, norm="none", variant="2018", padding="zeros")  # TF SAME padding
    assert cell.exc is cell.inh and cell.act is torch.tanh and cell.eta.shape == (3,)
    randomise(cell)
    x, h = torch.rand(1, 2, 5, 5), torch.rand(1, 2, 5, 5)
    w = sym(cell.inh.A)
    g1 = torch.sigmoid(F.conv2d(h, cell.gain.weight) + cell.gain_bias.view(1, -1, 1, 1))
    h1 = torch.tanh(x - (cell.alpha * h + cell.mu) * F.conv2d(h * g1, w, padding=1))
    g2 = torch.sigmoid(F.conv2d(h1, cell.mix.weight) + cell.mix_bias.view(1, -1, 1, 1))
    e = cell.gamma * F.conv2d(h1, w, padding=1)
    h_hat = torch.tanh(cell.kappa * (h1 + e) + cell.omega * (h1 * e))
    for t in (0, 2, 5):  # steps past the trained T reuse the last eta
        expected = cell.eta[min(t, 2)] * ((1 - g2) * h + g2 * h_hat)
        torch.testing.assert_close(cell(x, h, t), expected)


def test_hgru_2018_variant_in_the_backbone():
    with pytest.raises(ValueError, match="variant='2018'"):
        create("hgru", variant="2018", mode="crbp")
    torch.manual_seed(0)
    net = create("hgru", hidden_channels=3, kernel_size=3, timesteps=3, variant="2018", norm="none")
    assert net.cell.exc is net.cell.inh
    net(torch.rand(2, 1, 8, 8)).square().mean().backward()
    assert net.cell.eta.grad is not None and torch.count_nonzero(net.cell.eta.grad) == 3
    net.mode = "crbp"
    with pytest.raises(ValueError, match="eta"):
        net(torch.rand(2, 1, 8, 8))
    relu = create("hgru", hidden_channels=3, kernel_size=3, variant="2018", nonlinearity="relu", share_kernel=False)
    assert relu.cell.act is F.relu and relu.cell.exc is not relu.cell.inh


def test_cbptt_penalty_on_the_last_step():
    # u = 1^T J with J = dF/dh = w (diagonal): pen = mean([w - lambda]+^2) = (2 - 0.9)^2
    w = torch.nn.Parameter(torch.tensor(2.0))
    x = torch.ones(4)
    step = lambda x, h, t: w * h + x  # noqa: E731
    plain = run_recurrence(step, x, torch.zeros(4), timesteps=3, mode="bptt")
    assert plain.stats.penalty is None  # plain BPTT pays for no penalty
    for mode, timesteps in (("bptt", 3), ("bptt", 1), ("truncated", 3)):
        result = run_recurrence(
            step,
            x,
            torch.zeros(4),
            timesteps=timesteps,
            mode=mode,
            truncate_k=1,
            crbp=CRBPConfig(lipschitz_penalty=True),
        )
        pen = result.stats.penalty
        assert pen is not None and pen.requires_grad
        torch.testing.assert_close(pen.detach(), torch.tensor(1.21))
        (grad,) = torch.autograd.grad(pen, w)  # d/dw (w - 0.9)^2 = 2.2
        torch.testing.assert_close(grad, torch.tensor(2.2))
    off = run_recurrence(step, x, torch.zeros(4), timesteps=3, mode="crbp", crbp=CRBPConfig(lipschitz_penalty=False))
    assert off.stats.penalty is None  # plain RBP


def test_cbptt_model_penalty_equals_the_crbp_penalty():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 10, 10)
    net = create(
        "hgru", hidden_channels=3, kernel_size=3, timesteps=4, mode="bptt", norm="instance", penalty_lambda=0.1
    )
    net(x)
    assert net.last_stats.penalty is None  # default: off outside crbp
    net.mode = "crbp"
    net(x)
    crbp_pen = net.last_stats.penalty
    assert crbp_pen is not None  # default: on in crbp, even after a mode change
    cbptt = create(
        "hgru",
        hidden_channels=3,
        kernel_size=3,
        timesteps=4,
        mode="bptt",
        norm="instance",
        penalty_lambda=0.1,
        lipschitz_penalty=True,
    )
    cbptt.load_state_dict(net.state_dict())
    y = cbptt(x)
    pen = cbptt.last_stats.penalty
    assert float(pen.detach()) > 0
    torch.testing.assert_close(pen.detach(), crbp_pen.detach())
    expected = lipschitz_penalty(
        cbptt.step, cbptt.make_drive(x), cbptt.forward_states(x, timesteps=3)[-1], lam=0.1, t=3
    )
    torch.testing.assert_close(pen.detach(), expected.detach())
    (y.mean() + pen).backward()
    assert cbptt.cell.inh.A.grad is not None and torch.isfinite(cbptt.cell.inh.A.grad).all()


@pytest.mark.filterwarnings("ignore:C-RBP:RuntimeWarning")
def test_batch_stats_norm_uses_batch_statistics_at_test_time():
    torch.manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(4, 2, 6, 6)
    for kind, same in (("batch_stats", True), ("batch", False)):
        norm = StepNorm(kind, 2, 2, 4, init_scale=0.1)
        train = norm(x, 0)
        norm.eval()
        assert torch.allclose(norm(x, 0), train, atol=1e-6) == same, kind
    cell = FGRUCell(2, 2, kernel_size=3, timesteps=2, norm="batch_stats")
    assert not cell.norm_inh.norms[0].track_running_stats
    net = create("fgru2d", hidden_channels=3, kernel_size=3, timesteps=2, mode="crbp", norm="batch_stats")
    net(torch.rand(2, 1, 8, 8)).mean().backward()


def test_reflect_padding_sees_no_border_edge():
    """With reflect padding a uniform state stays uniform after a horizontal convolution; zeros do not."""
    from shared.backbones.cells import conv

    x = torch.full((1, 2, 9, 9), 0.7)
    w = torch.ones(2, 2, 5, 5)
    reflect, zeros = conv(x, w, "reflect"), conv(x, w, "zeros")
    torch.testing.assert_close(reflect, torch.full_like(reflect, 0.7 * 50))
    assert zeros[0, 0, 0, 0] < zeros[0, 0, 4, 4]  # the border looks like an edge
    short = conv(torch.rand(1, 2, 3, 9, 9), torch.ones(2, 2, 7, 3, 3), "reflect")  # z too short to reflect
    assert short.shape == (1, 2, 3, 9, 9)
    with pytest.raises(ValueError, match="padding must be one of"):
        HGRUCell(2, kernel_size=3, padding="circular")


def test_fast_cpu_forms_equal_plain_convolutions():
    """The channels-last horizontal convolution and the matmul gates compute F.conv2d/3d, values and gradients."""
    from shared.backbones.cells import _one_by_one, conv

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 11, generator=gen, requires_grad=True)
    w = torch.randn(4, 4, 5, 3, generator=gen, requires_grad=True)
    for padding, padded in (("reflect", F.pad(x, [1, 1, 2, 2], mode="reflect")), ("zeros", F.pad(x, [1, 1, 2, 2]))):
        fast, plain = conv(x, w, padding), F.conv2d(padded, w)
        assert fast.is_contiguous()  # NCHW again for the elementwise rest of the step
        torch.testing.assert_close(fast, plain)
        grads = torch.autograd.grad(fast.square().sum(), (x, w))
        torch.testing.assert_close(grads, torch.autograd.grad(plain.square().sum(), (x, w)), rtol=1e-4, atol=1e-4)
    for dims, fn in ((2, F.conv2d), (3, F.conv3d)):
        gate = _one_by_one(dims, 4)
        assert isinstance(gate, torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d)  # same state-dict keys
        h = torch.randn((2, 4) + (5,) * dims, generator=gen, requires_grad=True)
        fast, plain = gate(h), fn(h, gate.weight)
        torch.testing.assert_close(fast, plain)
        torch.testing.assert_close(
            torch.autograd.grad(fast.square().sum(), (h, gate.weight)),
            torch.autograd.grad(plain.square().sum(), (h, gate.weight)),
            rtol=1e-4,
            atol=1e-4,
        )


def test_hgru_norm_scale_sets_the_horizontal_norms():
    net = create("hgru", hidden_channels=3, kernel_size=3, timesteps=2, norm_scale=0.5)
    for norm in (net.cell.norm_inh, net.cell.norm_exc):
        assert torch.all(norm.norms[0].weight == 0.5)
    assert torch.all(create("hgru", hidden_channels=3, kernel_size=3).cell.norm_inh.norms[0].weight == 0.1)
    with pytest.raises(ValueError, match="norm_scale"):
        create("hgru", hidden_channels=3, norm_scale=0.0)
