"""The hGRU's published front end (analytic Gabor bank) and batch-statistics normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.filters import gabor_kernel

from shared.backbones import create
from shared.backbones.gabor import gabor_bank
from shared.backbones.layers import make_norm


def test_gabor_bank_matches_skimage_gabor_kernel():
    phases = (0.0, math.pi / 2)
    bank = gabor_bank(25, 7, wavelength=3.5, sigma=2.8, aspect=0.3, phases=phases).numpy()[:, 0]
    n_orientations = 12
    for i in range(24):
        theta, phase = math.pi * (i // 2) / n_orientations, phases[i % 2]
        ref = gabor_kernel(1 / 3.5, theta=theta, sigma_x=2.8, sigma_y=2.8 / 0.3, offset=phase).real
        r0, c0 = ref.shape[0] // 2, ref.shape[1] // 2
        ref = ref[r0 - 3 : r0 + 4, c0 - 3 : c0 + 4]
        ref = ref - ref.mean()
        np.testing.assert_allclose(bank[i], ref / np.linalg.norm(ref), atol=1e-6, err_msg=f"filter {i}")
    luminance = bank[24]
    assert luminance.min() > 0 and np.isclose(np.linalg.norm(luminance), 1.0)


def test_gabor_bank_is_zero_mean_unit_norm_and_orientation_tuned():
    bank = gabor_bank(9, 7, luminance=True)  # 8 Gabors: 4 orientations x (even, odd) + luminance
    assert bank.shape == (9, 1, 7, 7) and bank.dtype == torch.float32
    assert torch.allclose(bank[:8].sum(dim=(1, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(bank.flatten(1).norm(dim=1), torch.ones(9), atol=1e-5)
    # a bright vertical bar (orientation pi/2 of the carrier's normal = horizontal carrier) drives the
    # even filter whose stripes are vertical (theta 0: carrier along columns) more than the orthogonal one
    image = torch.zeros(1, 1, 21, 21)
    image[..., :, 10] = 1.0
    energy = F.conv2d(image, bank[:8])[0, :, 7, 7] ** 2  # centre response of each filter
    per_orientation = energy.view(4, 2).sum(dim=1)  # quadrature energy per orientation
    assert int(per_orientation.argmax()) == 0 and per_orientation[0] > 5 * per_orientation[2]


def test_gabor_bank_rejects_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        gabor_bank(25, 6)
    with pytest.raises(ValueError, match="at least one Gabor"):
        gabor_bank(1, 7)


def test_hgru_starts_from_the_gabor_bank_and_random_init_is_an_option():
    net = create("hgru", hidden_channels=6, frontend_kernel=7, kernel_size=3, timesteps=2)
    assert torch.equal(net.frontend.weight.detach(), gabor_bank(6, 7))
    random = create("hgru", hidden_channels=6, frontend_kernel=7, kernel_size=3, timesteps=2, frontend_init="random")
    assert not torch.equal(random.frontend.weight.detach(), gabor_bank(6, 7))
    with pytest.raises(ValueError, match="frontend_init"):
        create("hgru", frontend_init="dog")


def test_batch_stats_norm_uses_batch_statistics_in_train_and_eval():
    norm = make_norm("batch_stats", 3, 2, affine=True)
    assert isinstance(norm, torch.nn.BatchNorm2d) and not norm.track_running_stats and norm.weight is not None
    x = torch.randn(4, 3, 5, 5) * 7 + 3
    train_out = norm.train()(x)
    eval_out = norm.eval()(x)
    assert torch.allclose(train_out, eval_out)
    assert torch.allclose(eval_out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert isinstance(make_norm("batch_stats", 3, 3), torch.nn.BatchNorm3d)


def test_hgru_defaults_to_batch_stats_so_eval_matches_training_mode():
    torch.manual_seed(0)
    net = create("hgru", hidden_channels=4, kernel_size=3, frontend_kernel=5, timesteps=4)
    assert net.config.norm == "batch_stats"
    x = torch.rand(6, 1, 16, 16)
    train_out = net.train()(x)
    eval_out = net.eval()(x)
    assert torch.allclose(train_out, eval_out, atol=1e-6)
    # running statistics (norm="batch") differ between the modes at initialisation: the mismatch avoided
    running = create("hgru", hidden_channels=4, kernel_size=3, frontend_kernel=5, timesteps=4, norm="batch")
    assert not torch.allclose(running.train()(x), running.eval()(x), atol=1e-3)
