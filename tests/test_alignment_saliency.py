"""Saliency maps: analytic gradients of known models, chunking bounds, captum integrated gradients."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from shared.alignment.saliency import input_gradients, integrated_gradients, saliency_maps, smoothgrad


class Linear(nn.Module):
    """logits_k = sum(W_k * x): the input gradient of class k is exactly W_k."""

    def __init__(self, shape=(2, 5, 4), n_classes=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_classes, *shape, generator=g))
        self.max_batch = 0

    def forward(self, x):
        self.max_batch = max(self.max_batch, x.shape[0])
        return torch.einsum("bchw,kchw->bk", x, self.weight)


class Quadratic(Linear):
    """logit_k = sum(W_k * x**2): gradient 2 W_k x, whose mean under zero-mean noise is 2 W_k x."""

    def forward(self, x):
        self.max_batch = max(self.max_batch, x.shape[0])
        return torch.einsum("bchw,kchw->bk", x**2, self.weight)


def test_input_gradients_equal_weights_with_each_reduction():
    model = Linear()
    x = torch.rand(4, 2, 5, 4)
    t = np.array([0, 2, 1, 2])
    w = model.weight.detach().numpy()[t]
    np.testing.assert_allclose(input_gradients(model, x, t, reduce="none"), w, rtol=1e-6)
    np.testing.assert_allclose(input_gradients(model, x, t), np.abs(w).max(1), rtol=1e-6)
    np.testing.assert_allclose(input_gradients(model, x, t, reduce="mean"), w.mean(1), rtol=1e-6)
    np.testing.assert_allclose(input_gradients(model, x, t, reduce="absmean"), np.abs(w.mean(1)), rtol=1e-6)


def test_smoothgrad_is_chunked_and_unbiased():
    model = Quadratic()
    x = torch.rand(3, 2, 5, 4)
    t = [0, 1, 2]
    out = smoothgrad(model, x, t, n_samples=400, noise_level=0.2, reduce="none", batch_size=50)
    assert model.max_batch <= 50  # never more than batch_size noisy images at once
    expected = 2 * model.weight.detach().numpy()[t] * x.numpy()
    assert np.abs(out - expected).mean() < 0.1 * np.abs(expected).mean()
    again = smoothgrad(model, x, t, n_samples=400, noise_level=0.2, reduce="none", batch_size=50)
    np.testing.assert_array_equal(out, again)


def test_integrated_gradients_linear_and_complete():
    model = Linear()
    x = torch.rand(4, 2, 5, 4)
    t = [0, 1, 2, 0]
    ig = integrated_gradients(model, x, t, n_steps=16, reduce="none", batch_size=8)
    assert model.max_batch <= 8
    w = model.weight.detach().numpy()[t]
    np.testing.assert_allclose(ig, w * x.numpy(), rtol=1e-4, atol=1e-6)  # IG of a linear model = x * W
    quad = Quadratic()
    ig = integrated_gradients(quad, x, t, n_steps=64, reduce="none")
    with torch.no_grad():
        delta = quad(x)[torch.arange(4), torch.tensor(t)].numpy()
    np.testing.assert_allclose(ig.reshape(4, -1).sum(1), delta, rtol=1e-3)


def test_saliency_errors_are_clear():
    model = Linear()
    with pytest.raises(ValueError, match="4 axes"):
        input_gradients(model, torch.rand(2, 5, 4), [0, 1])
    with pytest.raises(ValueError, match="one class index per image"):
        input_gradients(model, torch.rand(2, 2, 5, 4), [0, 1, 2])
    with pytest.raises(ValueError, match="method must be one of"):
        saliency_maps(model, torch.rand(1, 2, 5, 4), [0], method="gradcam")
    with pytest.raises(ValueError, match="NaN"):
        input_gradients(model, torch.full((1, 2, 5, 4), float("nan")), [0])
