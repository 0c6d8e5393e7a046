"""Fast checks of the recurrent-evidence benchmark plumbing (``benchmarks/pathfinder_evidence.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pathfinder_evidence as ev  # noqa: E402

from shared.pathfinder.datamodule import PathfinderDataset  # noqa: E402
from shared.pathfinder.experiment import build_model  # noqa: E402


def _pool(labels: list[int]) -> PathfinderDataset:
    n = len(labels)
    images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 4, 4), np.float32)
    return PathfinderDataset(images, np.asarray(labels))


def test_training_subsets_are_balanced_and_nested() -> None:
    pool = _pool([1, 0, 0, 1, 1, 0, 1, 0, 0, 1])
    small, large = ev.training_subset(pool, 4), ev.training_subset(pool, 8)
    assert small.labels.tolist().count(1) == 2 and large.labels.tolist().count(1) == 4
    ids_small = set(small.images[:, 0, 0, 0].int().tolist())
    ids_large = set(large.images[:, 0, 0, 0].int().tolist())
    assert ids_small < ids_large  # a larger set only adds images
    assert small.augment and large.augment
    with pytest.raises(ValueError, match="balanced subset"):
        ev.training_subset(pool, 12)


def test_run_key_follows_resolved_config_and_settings() -> None:
    spec = ev.hgru_spec(hidden_channels=2, kernel_size=3, timesteps=2)
    model = build_model(spec)
    key = ev.run_key(spec, model, {"steps": 5, "seed": 0})
    assert key == ev.run_key(spec, build_model(spec), {"steps": 5, "seed": 0})
    assert key != ev.run_key(spec, model, {"steps": 5, "seed": 1})
    crbp = ev.hgru_spec(hidden_channels=2, kernel_size=3, timesteps=2, mode="crbp")
    assert key != ev.run_key(crbp, build_model(crbp), {"steps": 5, "seed": 0})


def test_accuracy_by_step_matches_running_t_steps() -> None:
    torch.manual_seed(0)
    spec = ev.hgru_spec(hidden_channels=2, kernel_size=3, timesteps=2)
    model = build_model(spec).eval()
    data = PathfinderDataset(torch.rand(8, 1, 16, 16).numpy(), np.array([0, 1] * 4))
    by_step = ev.accuracy_by_step(model, data, 4, batch_size=8)
    assert by_step.shape == (4,) and model.backbone.timesteps == 2  # restored after the call
    for t in (1, 3):
        model.backbone.timesteps = t
        with torch.no_grad():
            pred = model(data.images).argmax(dim=1)
        assert by_step[t - 1] == pytest.approx(float((pred == data.labels).double().mean()))
    assert ev.mean_spread([0.5, 0.7]) == pytest.approx((0.6, float(np.std([0.5, 0.7], ddof=1))))
