"""The recurrence engine: C-RBP against BPTT at a fixed point, the Lipschitz penalty, divergence reports,
truncation, tuple states and the statistics every call returns."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from shared.backbones import create
from shared.backbones.cells import HGRUCell
from shared.recurrence import (
    CRBPConfig,
    RecurrenceStats,
    jacobian_spectral_radius,
    lipschitz_penalty,
    run_recurrence,
)


def contractive_hgru(seed: int = 0) -> HGRUCell:
    """A small hGRU whose horizontal kernels are scaled down so that the step contracts (rho ~ 0.8)."""
    torch.manual_seed(seed)
    cell = HGRUCell(4, kernel_size=3, timesteps=8, norm="none")
    with torch.no_grad():
        cell.inh.A.mul_(0.3)
        cell.exc.A.mul_(0.3)
    return cell


def flat_grads(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in module.parameters()])


def test_crbp_gradient_matches_bptt_at_the_fixed_point():
    cell = contractive_hgru()
    x, target = torch.rand(2, 4, 10, 10), torch.randn(2, 4, 10, 10)
    h0 = torch.zeros_like(x)
    h_star = run_recurrence(cell, x, h0, timesteps=60).state.detach()
    assert jacobian_spectral_radius(cell, x, h_star) < 0.9
    grads, stats = {}, {}
    for mode in ("bptt", "crbp"):
        cell.zero_grad()
        h, stats[mode], _ = run_recurrence(
            cell, x, h0, timesteps=60, mode=mode, crbp=CRBPConfig(lipschitz_penalty=False)
        )  # published rules, 15 iterations
        (h * target).mean().backward()
        grads[mode] = flat_grads(cell)
    assert stats["crbp"].residuals[-1] < 1e-5  # the forward pass converged
    assert stats["crbp"].neumann_iterations == 15 and stats["crbp"].neumann_stop == "max_iters"
    assert stats["crbp"].contractive is True and stats["crbp"].neumann_ratio < 0.1
    assert stats["crbp"].tracked_steps == 1 and stats["bptt"].tracked_steps == 60
    assert F.cosine_similarity(grads["bptt"], grads["crbp"], dim=0) >= 0.99
    for p_bptt, p_crbp in zip(
        grads["bptt"].split([p.numel() for p in cell.parameters()]),
        grads["crbp"].split([p.numel() for p in cell.parameters()]),
    ):
        if p_bptt.norm() > 1e-3 * grads["bptt"].norm():
            assert F.cosine_similarity(p_bptt, p_crbp, dim=0) >= 0.99


def test_crbp_on_tuple_state_matches_bptt_and_drive_gets_gradient():
    torch.manual_seed(1)
    w1, w2 = (torch.nn.Parameter(0.3 * torch.randn(5, 5)) for _ in range(2))
    u = torch.nn.Parameter(0.3 * torch.randn(5, 3))

    def step(x, h, t):
        a, b = h
        return torch.tanh(a @ w1 + b @ u.T + x), torch.tanh(b @ (0.5 * w2[:3, :3]) + a @ u)

    h0 = (torch.zeros(4, 5), torch.zeros(4, 3))
    grads = {}
    for mode in ("bptt", "crbp"):
        x = torch.randn(4, 5, generator=torch.Generator().manual_seed(2)).requires_grad_()
        for p in (w1, w2, u):
            p.grad = None
        (a, b), stats, _ = run_recurrence(
            step,
            x,
            h0,
            timesteps=80,
            mode=mode,
            crbp=CRBPConfig(lipschitz_penalty=False, neumann_g_limit=None, neumann_iters=60),
        )
        (a.sum() + 2 * b.sum()).backward()
        grads[mode] = torch.cat([w1.grad.flatten(), w2.grad.flatten(), u.grad.flatten(), x.grad.flatten()])
    assert F.cosine_similarity(grads["bptt"], grads["crbp"], dim=0) >= 0.999


def max_column_sum(cell, x: torch.Tensor, h: torch.Tensor) -> float:
    """max_j sum_i J_ij at ``h``: the quantity the penalty hinges (the 1-norm of J when J >= 0)."""
    h = h.detach().requires_grad_()
    (u,) = torch.autograd.grad(cell(x, h, 0), h, torch.ones_like(h))
    return float(u.max())


def test_penalty_lowers_the_jacobian_norm():
    torch.manual_seed(0)
    cell = HGRUCell(4, kernel_size=3, timesteps=8, norm="none")
    with torch.no_grad():
        cell.inh.A.mul_(3.0)
        cell.exc.A.mul_(3.0)
    x = torch.rand(2, 4, 10, 10)
    h = run_recurrence(cell, x, torch.zeros_like(x), timesteps=10).state.detach()
    rho_before, col_before = jacobian_spectral_radius(cell, x, h), max_column_sum(cell, x, h)
    pen_before = float(lipschitz_penalty(cell, x, h, lam=0.5).detach())
    opt = torch.optim.Adam(cell.parameters(), lr=0.05)
    for _ in range(15):
        opt.zero_grad()
        lipschitz_penalty(cell, x, h, lam=0.5).backward()
        opt.step()
    rho_after, col_after = jacobian_spectral_radius(cell, x, h), max_column_sum(cell, x, h)
    pen_after = float(lipschitz_penalty(cell, x, h, lam=0.5).detach())
    assert pen_before > 0 and pen_after < 0.01 * pen_before
    assert col_before > 0.75 and col_after < 0.6  # pushed down towards the hinge at lambda = 0.5
    assert rho_after < 0.9 * rho_before


def test_crbp_returns_a_differentiable_penalty():
    cell = contractive_hgru()
    x = torch.rand(2, 4, 8, 8)
    h, stats, _ = run_recurrence(
        cell, x, torch.zeros_like(x), timesteps=5, mode="crbp", crbp=CRBPConfig(penalty_lambda=0.1)
    )
    assert stats.penalty is not None and stats.penalty.requires_grad and float(stats.penalty.detach()) > 0
    (h.mean() + stats.penalty).backward()
    assert cell.inh.A.grad is not None and torch.isfinite(cell.inh.A.grad).all()
    expected = lipschitz_penalty(cell, x, run_recurrence(cell, x, torch.zeros_like(x), timesteps=4).state, lam=0.1, t=4)
    torch.testing.assert_close(stats.penalty.detach(), expected.detach())


@pytest.mark.parametrize("rules", [True, False])
def test_non_contractive_step_is_reported(rules):
    w = torch.nn.Parameter(torch.tensor(1.5))
    x = torch.ones(3)
    h, stats, _ = run_recurrence(
        lambda x, h, t: w * h + x,
        x,
        torch.zeros(3),
        timesteps=6,
        mode="crbp",
        crbp=CRBPConfig(neumann_stopping=rules, lipschitz_penalty=False, neumann_iters=5),
    )
    assert stats.contractive is None  # filled in by backward
    with pytest.warns(RuntimeWarning, match="Neumann series diverges"):
        h.sum().backward()
    assert stats.contractive is False
    assert stats.neumann_ratio > 1
    if rules:
        assert stats.neumann_stop in ("growth", "g_norm") and stats.neumann_iterations == 0
    else:
        assert stats.neumann_stop == "max_iters" and stats.neumann_iterations == 5
    assert stats.residuals[-1] > stats.residuals[-2] * 0.5  # the forward pass does not settle either


def test_model_level_divergence_warning_and_last_stats():
    torch.manual_seed(0)
    net = create("fgru2d", hidden_channels=3, kernel_size=3, timesteps=4, mode="crbp")
    with torch.no_grad():  # C1 = N(W_inh * .): the norm's scale, not W's, sets the inhibition's gain
        net.cell.norm_inh.norms[0].weight.mul_(50.0)  # spectral radius of J ~0.8 -> ~4.7
    y = net(torch.rand(1, 1, 10, 10))
    with pytest.warns(RuntimeWarning, match="C-RBP"):
        y.square().sum().backward()
    assert net.last_stats.contractive is False


def test_stopping_rules_fire_and_are_recorded():
    w = torch.nn.Parameter(torch.tensor(0.5))
    x = torch.ones(4)

    def run(**kw) -> RecurrenceStats:
        h, stats, _ = run_recurrence(
            lambda x, h, t: w * h + x,
            x,
            torch.zeros(4),
            timesteps=30,
            mode="crbp",
            crbp=CRBPConfig(lipschitz_penalty=False, **kw),
        )
        h.sum().backward()
        return stats

    assert run().neumann_stop == "g_norm"  # ||g|| exceeds the absolute limit of 1 right away
    stats = run(neumann_g_limit=None, neumann_iters=200, neumann_tol=1e-3)
    assert stats.neumann_stop == "tol" and stats.contractive is True
    assert 5 < stats.neumann_iterations < 20  # 0.5**k * 2 < 1e-3 after ~11 terms
    w.grad = None
    damped = run(neumann_g_limit=None, neumann_damping=0.5, neumann_iters=100)
    # damping d solves g = v + d g J: g = 1 / (1 - 0.5 * 0.5) = 4/3 per element instead of 2, and
    # dL/dw = sum(g * h*) with h* = 2 over 4 elements
    assert float(w.grad) == pytest.approx(4 * 2 * 4 / 3, rel=1e-4)
    assert damped.neumann_stop == "tol"


def test_truncated_gradient_matches_manual_truncation():
    cell = contractive_hgru(seed=3)
    x, target = torch.rand(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    T, k = 6, 2
    h, stats, _ = run_recurrence(cell, x, torch.zeros_like(x), timesteps=T, mode="truncated", truncate_k=k)
    (h * target).sum().backward()
    engine = flat_grads(cell)
    assert stats.tracked_steps == k
    cell.zero_grad()
    with torch.no_grad():
        h = torch.zeros_like(x)
        for t in range(T - k):
            h = cell(x, h, t)
    for t in range(T - k, T):
        h = cell(x, h, t)
    (h * target).sum().backward()
    torch.testing.assert_close(engine, flat_grads(cell))
    cell.zero_grad()
    h, _, _ = run_recurrence(cell, x, torch.zeros_like(x), timesteps=T, mode="bptt")
    (h * target).sum().backward()
    assert not torch.allclose(engine, flat_grads(cell))  # truncation really cut the graph


def test_residuals_recording_and_no_grad_inference():
    cell = contractive_hgru()
    x = torch.rand(1, 4, 8, 8)
    h, stats, steps = run_recurrence(
        cell, x, lambda: torch.zeros_like(x), timesteps=12, mode="crbp", record_fn=lambda h: h.mean()
    )
    assert len(stats.residuals) == 12 and len(steps) == 12
    assert stats.residuals[-1] < stats.residuals[2]  # a contraction settles
    assert stats.final_residual == stats.residuals[-1]
    assert not steps[0].requires_grad and steps[-1].requires_grad  # only the last step has a graph
    with torch.no_grad():
        h2, stats2, _ = run_recurrence(cell, x, torch.zeros_like(x), timesteps=12, mode="crbp")
    assert stats2.penalty is None and stats2.tracked_steps == 0 and not h2.requires_grad
    torch.testing.assert_close(h2, h.detach())


def test_engine_validates_its_arguments():
    step = lambda x, h, t: h + x
    with pytest.raises(ValueError, match="mode"):
        run_recurrence(step, torch.ones(2), torch.zeros(2), timesteps=3, mode="rbp")
    with pytest.raises(ValueError, match="timesteps"):
        run_recurrence(step, torch.ones(2), torch.zeros(2), timesteps=0)
    with pytest.raises(ValueError, match="structure"):
        run_recurrence(lambda x, h, t: torch.cat([h, x]), torch.ones(2), torch.zeros(2), timesteps=2)
    with pytest.raises(TypeError, match="state"):
        run_recurrence(step, torch.ones(2), [1.0, 2.0], timesteps=2)
    with pytest.raises(ValueError, match="damping"):
        CRBPConfig(neumann_damping=0.0)
