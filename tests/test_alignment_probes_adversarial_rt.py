"""Linear probes (vs sklearn), minimal L2 attacks (vs the analytic answer of a linear model), and RTs."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.integrate import trapezoid
from sklearn.datasets import make_classification
from sklearn.model_selection import StratifiedKFold, cross_val_score
from threadpoolctl import threadpool_limits

from shared.alignment.adversarial import adversarial_alignment, minimal_l2_perturbation
from shared.alignment.probes import sklearn_probe, sklearn_probe_pipeline, train_3dpc_probe
from shared.alignment.reaction_times import (
    dirichlet_kl_to_uniform,
    evidential_loss,
    evidential_outputs,
    reaction_times,
    uncertainty_curve,
    xi,
)
from shared.backbones import BackboneOutput


@pytest.fixture(autouse=True)
def _single_thread_blas():
    """Tiny sklearn fits are far faster on one BLAS thread than oversubscribed on a shared CI runner."""
    with threadpool_limits(limits=1):
        yield


def test_sklearn_probe_matches_cross_val_score():
    x, y = make_classification(120, 10, n_informative=4, class_sep=2.0, random_state=0)
    res = sklearn_probe(x, y, outer_folds=2, inner_folds=2, n_cs=2)
    folds = StratifiedKFold(2, shuffle=True, random_state=0)
    expected = cross_val_score(sklearn_probe_pipeline(n_cs=2, inner_folds=2), x, y, cv=folds, scoring="accuracy")
    np.testing.assert_allclose(res.per_fold, expected)
    assert res.mean > 0.7 and res.chance == pytest.approx(0.5, abs=0.05)
    fixed = sklearn_probe(x[:80], y[:80], test_features=x[80:], test_labels=y[80:], n_cs=2, inner_folds=2)
    assert fixed.sd == 0.0 and 0.5 < fixed.mean <= 1.0


def test_3dpc_probe_reports_test_at_best_validation_epoch():
    x, y = make_classification(300, 12, n_informative=5, random_state=1)
    res = train_3dpc_probe(x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:], epochs=8, lr=1e-2)
    vals = [h["val_accuracy"] for h in res.history]
    assert res.best_epoch == int(np.argmax(vals))
    assert res.test_accuracy == res.history[res.best_epoch]["test_accuracy"]
    assert res.val_accuracy > 0.6
    with pytest.raises(ValueError, match="0/1"):
        train_3dpc_probe(x[:10], y[:10] + 2, x[:10], y[:10], x[:10], y[:10], epochs=1)


class LinearClassifier(nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)  # (2, C, H, W)

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x - 0.5, self.w)


def test_minimal_l2_perturbation_matches_linear_margin():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 1, 6, 6, generator=g) * 0.2
    model = LinearClassifier(w)
    x = 0.5 + 0.02 * torch.randn(5, 1, 6, 6, generator=g)  # near the centre: no clamping at the answer
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    dw = (w[1] - w[0]).flatten()
    margin = (logits[:, 1] - logits[:, 0]).abs()
    expected = (margin / dw.norm()).numpy()  # distance to the decision plane
    res = minimal_l2_perturbation(model, x, y, eps_range=(0.0, 1.0), n_search=14, alpha=0.5, n_iter=3, clamp=None)
    assert res.success.all()
    np.testing.assert_allclose(res.eps, expected, rtol=1e-3, atol=1e-4)
    # the attack moves along the weight difference, so its magnitude map *is* |dw|
    human = dw.abs().view(1, 6, 6).expand(5, 6, 6).numpy()
    align = adversarial_alignment(model, x, y, human, eps_range=(0.0, 1.0), n_search=10, clamp=None)
    assert align.scored.all() and align.mean_spearman > 0.99


def test_evidential_quantities_and_kl_against_torch_distributions():
    logits = torch.randn(6, 3) * 20
    out = evidential_outputs(logits)
    e = torch.exp(torch.clamp(logits / 10, -10, 10))
    torch.testing.assert_close(out.uncertainty, 3 / (e + 1).sum(1))
    torch.testing.assert_close(out.probabilities.sum(1), torch.ones(6))
    alpha = out.alpha.double()
    ref = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(alpha), torch.distributions.Dirichlet(torch.ones_like(alpha))
    )
    torch.testing.assert_close(dirichlet_kl_to_uniform(alpha), ref)
    curve = np.random.default_rng(0).random((4, 7))
    np.testing.assert_allclose(xi(curve), trapezoid(curve, axis=1))


def test_evidential_loss_trains_a_readout():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = (x[:, 0] > 0).long()
    head = nn.Linear(5, 2)
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    first = float(evidential_loss(head(x), y))
    for _ in range(100):
        loss = evidential_loss(head(x), y, kl_weight=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(evidential_loss(head(x), y)) < first
    assert (head(x).argmax(1) == y).float().mean() > 0.9


class Accumulator(nn.Module):
    """A toy recurrent 'backbone': state_t = t * x, so evidence (and certainty) grows with time."""

    def forward(self, x, return_steps=False):
        steps = [x * t for t in range(1, 6)]
        return BackboneOutput(steps[-1], steps, None) if return_steps else steps[-1]


def test_reaction_times_on_a_stepping_model():
    readout = nn.Linear(2, 2)
    with torch.no_grad():
        readout.weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0]]))
        readout.bias.zero_()
    images = torch.tensor([[5.0, 0.0], [1.0, 0.0]])  # strong vs weak evidence
    rts, curves = reaction_times(Accumulator(), readout, images)
    assert curves.shape == (2, 5)
    assert (np.diff(curves, axis=1) <= 0).all()  # uncertainty falls over time (evidence is clipped)
    assert rts[0] < rts[1]  # the easy image is decided sooner
    # zero logits: evidence exp(0) = 1 per class, alpha = 2, S = 4, uncertainty K / S = 0.5
    np.testing.assert_allclose(uncertainty_curve(np.zeros((3, 2, 2))), np.full((2, 3), 0.5))


def test_reaction_times_on_hgru_pathfinder_model():
    from shared.pathfinder.module import PathfinderClassifier

    torch.manual_seed(0)
    model = PathfinderClassifier("hgru", {"hidden_channels": 4, "kernel_size": 5, "timesteps": 4})
    rts, curves = reaction_times(model.backbone, model.readout, torch.rand(3, 1, 24, 24))
    assert curves.shape == (3, 4) and np.isfinite(rts).all()
    assert ((curves > 0) & (curves <= 1)).all()
    np.testing.assert_allclose(rts, trapezoid(curves, axis=1))
