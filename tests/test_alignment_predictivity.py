"""Neural predictivity, ceilings and hook-based features, against scipy/sklearn and a known assembly."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import StratifiedShuffleSplit
from threadpoolctl import threadpool_limits

from shared.alignment.features import FeatureExtractor, extract_features, list_layers
from shared.alignment.predictivity import (
    ceiled_score,
    layer_sweep,
    neural_predictivity,
    pearson_per_column,
    spearman_brown,
    split_half_ceiling,
)
from shared.alignment.synthetic import synthetic_neural_assembly


@pytest.fixture(autouse=True)
def _single_thread_blas():
    """Tiny sklearn fits are far faster on one BLAS thread than oversubscribed on a shared CI runner."""
    with threadpool_limits(limits=1):
        yield


def test_pearson_and_spearman_brown():
    rng = np.random.default_rng(0)
    a, b = rng.random((30, 4)), rng.random((30, 4))
    np.testing.assert_allclose(pearson_per_column(a, b), [stats.pearsonr(a[:, i], b[:, i])[0] for i in range(4)])
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert ceiled_score(0.5, 0.8) == pytest.approx(0.25 / 0.8)
    assert ceiled_score(0.2255, 0.8158, convention="squared_ratio") == pytest.approx(0.0764, abs=1e-4)


def test_predictivity_matches_a_hand_rolled_split_and_known_ceiling():
    asm = synthetic_neural_assembly(160, 30, n_features=8, n_repetitions=4, noise_sd=1.0, seed=1)
    feats = np.maximum(asm.stimuli_features, 0)  # f(X): the true generating features
    res = neural_predictivity(
        feats, asm.mean_responses, categories=asm.categories, repetitions=asm.responses, n_components=8
    )
    # first split by hand, sklearn + scipy
    train, test = next(StratifiedShuffleSplit(10, train_size=0.9, random_state=1).split(feats, asm.categories))
    pred = PLSRegression(8, scale=False).fit(feats[train], asm.mean_responses[train]).predict(feats[test])
    r = [stats.pearsonr(pred[:, j], asm.mean_responses[test, j])[0] for j in range(30)]
    assert res.per_split[0] == pytest.approx(np.median(r))
    assert res.ceiling == pytest.approx(asm.expected_ceiling, abs=0.1)
    # a model with the true features explains ~all the reliable variance: r**2 / ceiling ~ 1
    assert res.ceiled == pytest.approx(1.0, abs=0.2)
    noise = np.random.default_rng(2).standard_normal(feats.shape)
    assert neural_predictivity(noise, asm.mean_responses, categories=asm.categories).raw < 0.3
    ridge = neural_predictivity(feats, asm.mean_responses, regression="ridge")
    assert ridge.raw == pytest.approx(res.raw, abs=0.1)


def test_split_half_ceiling_perfect_and_errors():
    sig = np.random.default_rng(3).random((20, 5))
    assert split_half_ceiling(np.stack([sig, sig, sig]))[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 repetitions"):
        split_half_ceiling(sig[None])
    with pytest.raises(ValueError, match="disagree on n_stimuli"):
        neural_predictivity(np.zeros((5, 2)), np.zeros((4, 2)))


class TupleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.block(self.conv(x))
        return self.head(h.mean((2, 3))), h  # tuple output: logits and features


def test_features_hooks_and_layer_sweep():
    net = TupleNet()
    x = torch.rand(12, 1, 6, 6)
    assert "block.1" in list_layers(net)
    feats = extract_features(net, x, ["block", "conv"], pooling="avg", batch_size=5)
    with torch.no_grad():
        expected = net.block(net.conv(x)).mean((2, 3)).numpy()
    np.testing.assert_allclose(feats["block"], expected, rtol=1e-5, atol=1e-6)
    assert extract_features(net, x, ["conv"], pooling="flatten")["conv"].shape == (12, 3 * 36)
    with FeatureExtractor(net, ["head"]) as fx:
        net(x)
    assert fx.outputs["head"].shape == (12, 2)
    with pytest.raises(KeyError, match="unknown layer"):
        extract_features(net, x, ["nope"])
    y = np.random.default_rng(4).random((12, 3))
    table = layer_sweep(
        net, x, y, ["conv", "block"], n_splits=2, n_components=2, progress=False, repetitions=np.stack([y, y])
    )
    assert list(table["layer"]) == ["conv", "block"] and np.allclose(table["ceiling"], 1.0)
