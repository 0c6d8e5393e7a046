"""Shared plumbing of the recurrent-evidence benchmarks: Pathfinder data, step-budgeted training, evaluation.

Used by ``benchmarks/hgru_sample_efficiency.py`` (claim of the hGRU paper) and ``benchmarks/crbp_stability.py``
(claim of the C-RBP paper). Both start from the ``make demo`` Pathfinder setting
(:data:`shared.pathfinder.demo.DEMO_DATA` / :data:`~shared.pathfinder.demo.DEMO_MODEL`), the cheapest
setting in which the hGRU learns on a CPU, so they follow that setting when it changes.

Design choices, and why:

* **Budgets are optimiser steps, not seconds.** The development machine is shared; a wall-clock budget
  would make the figures depend on the load. Every arm of a comparison gets the same number of steps at
  the same batch size.
* **Nested training sets.** One training pool is generated once; a run on ``n`` images uses the first
  ``n/2`` positives and the first ``n/2`` negatives of it, so a larger set only adds images (the usual
  learning-curve design, less noisy than independent draws). One test set serves every run.
* **Seeds vary the weights and the batch order**, not the data (the data seed is fixed).
* **Runs are cached** in ``<out>/runs/<key>.{pt,json}``; the key hashes the resolved backbone config (with
  every default), the readout, lr, data setting, training-set size, steps, batch size and seed. A rerun
  with the same settings reloads the weights (``torch.load(..., weights_only=True)``) instead of
  retraining; the BPTT arm of the stability benchmark is the hGRU run of the sample-efficiency benchmark
  when both use the same ``--out``. Delete ``<out>/runs`` after changing the circuits' code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from shared.data.pathfinder import PathfinderConfig, load_pathfinder_zarr, write_pathfinder_zarr
from shared.devices import default_device, lightning_precision
from shared.pathfinder.datamodule import PathfinderDataset
from shared.pathfinder.demo import DEMO_DATA, DEMO_MODEL
from shared.pathfinder.experiment import DEFAULT_MODELS, build_model
from shared.pathfinder.module import PathfinderClassifier, count_parameters
from shared.recurrence import jacobian_spectral_radius
from shared.stdio import quiet_lightning_fit

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(PathfinderConfig)}


def demo_stimulus() -> dict[str, Any]:
    """The stimulus keys of the demo setting (:data:`DEMO_DATA` without sizes and loader settings)."""
    return {k: v for k, v in DEMO_DATA.items() if k in _CONFIG_FIELDS}


def hgru_spec(**backbone_overrides: Any) -> dict[str, Any]:
    """The demo hGRU model spec with backbone config overrides (e.g. ``mode="crbp"``)."""
    spec = json.loads(json.dumps(DEMO_MODEL))
    spec["backbone_config"] = {**spec.get("backbone_config", {}), **backbone_overrides}
    return spec


def cnn_spec() -> dict[str, Any]:
    """The feedforward baseline of :mod:`shared.pathfinder.experiment` (a small ResNet, pooled MLP head)."""
    return json.loads(json.dumps(next(s for s in DEFAULT_MODELS if s["backbone"] == "resnet_small")))


def prepare_data(
    root: Path, stimulus: dict[str, Any], *, n_pool: int, n_test: int, seed: int = 0, workers: int = 1
) -> tuple[PathfinderDataset, PathfinderDataset]:
    """Generate (once, resumably) and load the training pool and the test set.

    Parameters
    ----------
    root : folder for ``train_<n_pool>.zarr`` and ``test_<n_test>.zarr``.
    stimulus : :class:`PathfinderConfig` keyword arguments (``image_size`` may be an int).
    n_pool : images in the training pool (the largest training set used).
    n_test : test images.
    seed : data seed; the splits use ``(seed, 0)`` and ``(seed, 2)`` like :class:`PathfinderDataModule`.
    workers : generation processes.

    Returns
    -------
    pool, test : :class:`PathfinderDataset` of images (n, 1, rows, columns) float32 and labels (n,) int64;
    the pool without augmentation (see :func:`training_subset`).
    """
    config = PathfinderConfig(**stimulus)
    sets = []
    for name, n, k in (("train", n_pool, 0), ("test", n_test, 2)):
        path = write_pathfinder_zarr(
            Path(root) / f"{name}_{n}.zarr", n, config=config, seed=(seed, k), progress=False, num_workers=workers
        )
        data = load_pathfinder_zarr(path, expected_config=config)
        sets.append(PathfinderDataset(data.images, data.labels))
    return sets[0], sets[1]


def training_subset(pool: PathfinderDataset, n: int) -> PathfinderDataset:
    """The first ``n // 2`` positives and first ``n - n // 2`` negatives of the pool, with random flips."""
    labels = pool.labels.numpy()
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if n < 2 or n // 2 > len(pos) or n - n // 2 > len(neg):
        raise ValueError(
            f"cannot take a balanced subset of {n} images from a pool of {len(pos)} positives and {len(neg)} negatives"
        )
    index = np.sort(np.concatenate([pos[: n // 2], neg[: n - n // 2]]))
    return PathfinderDataset(pool.images[index].numpy(), labels[index], augment=True)


def run_key(spec: dict[str, Any], model: PathfinderClassifier, payload: dict[str, Any]) -> str:
    """Cache key of one training run: a hash of the resolved model config and the training settings."""
    resolved = {
        "spec": spec,
        "backbone_config": repr(model.backbone.config) if hasattr(model.backbone, "config") else None,
        "state_shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
        **payload,
    }
    return hashlib.sha1(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_steps(
    spec: dict[str, Any],
    train_set: PathfinderDataset,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    out: Path,
    extra_key: dict[str, Any] | None = None,
    train: bool = True,
) -> tuple[PathfinderClassifier, dict[str, Any]]:
    """Train a :class:`PathfinderClassifier` for exactly ``steps`` optimiser steps (cached, see module doc).

    Lightning runs the loop, so the module's own loss is used (including the C-RBP / C-BPTT Lipschitz
    penalty when the backbone reports one); no validation runs.

    Returns
    -------
    model : the trained model in eval mode, on the CPU.
    row : dict with ``parameters``, ``steps``, ``train_seconds`` (of the original training on a cache
        hit: see ``cached``), ``cached``, ``final_train_loss`` and the cache ``key``.

    Raises
    ------
    LookupError
        ``train=False`` and the run is not in the cache.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(spec)
    payload = {"n_train": len(train_set), "steps": steps, "batch_size": batch_size, "seed": seed, **(extra_key or {})}
    key = run_key(spec, model, payload)
    runs = Path(out) / "runs"
    weights, meta = runs / f"{key}.pt", runs / f"{key}.json"
    if weights.exists() and meta.exists():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval(), {**json.loads(meta.read_text()), "cached": True}
    if not train:
        raise LookupError(f"run {key} (seed {seed}) is not cached in {runs}")
    runs.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=len(train_set) > batch_size)
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator="auto",
        devices=1,
        precision=lightning_precision(),
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    start = time.perf_counter()
    with quiet_lightning_fit():  # no validation on purpose: the test set is scored after training
        trainer.fit(model, train_dataloaders=loader)
    loss = trainer.callback_metrics.get("train/loss_epoch", trainer.callback_metrics.get("train/loss"))
    row = {
        "key": key,
        "parameters": count_parameters(model),
        "steps": int(trainer.global_step),
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_train_loss": None if loss is None else float(loss),
        **payload,
    }
    model = model.cpu().eval()
    torch.save(model.state_dict(), weights)
    meta.write_text(json.dumps(row, indent=2))
    return model, {**row, "cached": False}


def penalty_is_reported(spec: dict[str, Any], image_size: int) -> bool:
    """Whether this build's backbone returns a Lipschitz penalty for the spec while training.

    C-BPTT (BPTT plus the penalty) needs the backbone to compute the penalty outside C-RBP mode; builds
    that only compute it in C-RBP mode return ``stats.penalty = None`` there.
    """
    model = build_model(spec).train()
    _, out = model.forward_with_steps(torch.rand(4, 1, image_size, image_size))
    penalty = getattr(out.stats, "penalty", None)
    return isinstance(penalty, torch.Tensor) and penalty.requires_grad


@torch.no_grad()
def accuracy_by_step(
    model: PathfinderClassifier, data: PathfinderDataset, timesteps: int | None = None, *, batch_size: int = 100
) -> np.ndarray:
    """Test accuracy of the readout applied after every step t = 1..T (T = ``timesteps``).

    Running the circuit for T steps and reading out after step t is the same as running it for t steps,
    so one pass gives the accuracy at every test-time T. Feedforward models give one value.

    Returns
    -------
    ndarray of shape (T,), float64 (shape (1,) for a feedforward model).
    """
    device = default_device()
    model = model.to(device).eval()
    backbone = model.backbone
    trained_t = getattr(backbone, "timesteps", None)
    if timesteps is not None and trained_t is not None:
        backbone.timesteps = timesteps
    correct = None
    try:
        for start in range(0, len(data), batch_size):
            x = data.images[start : start + batch_size].to(device)
            y = data.labels[start : start + batch_size].to(device)
            if model.recurrent:
                prob = model.timestep_readouts(x)["probability"]  # (steps, batch)
            else:
                prob = model(x).softmax(dim=1)[:, 1][None]
            hits = ((prob > 0.5).long() == y[None]).sum(dim=1).double().cpu()
            correct = hits if correct is None else correct + hits
    finally:
        if trained_t is not None:
            backbone.timesteps = trained_t
    model.cpu()
    return (correct / len(data)).numpy()


@torch.no_grad()
def state_dynamics(
    model: PathfinderClassifier,
    images: torch.Tensor,
    timesteps: int,
    probe_steps: tuple[int, ...],
    *,
    power_iters: int = 20,
) -> dict[str, Any]:
    """How the hidden state moves when the circuit runs for ``timesteps`` steps (the stability mechanism).

    Parameters
    ----------
    model : a trained recurrent Pathfinder model.
    images : (batch, 1, rows, columns) float32 test images.
    timesteps : steps to run (beyond the trained T).
    probe_steps : 1-based steps at which the Jacobian ``dF/dh`` is probed.
    power_iters : power iterations of :func:`shared.recurrence.jacobian_spectral_radius`.

    Returns
    -------
    dict with ``residual`` (T,) ``||h_t - h_{t-1}|| / ||h_t||`` (the engine's statistic), ``delta`` (T,)
    ``||h_t - h_{t-1}||`` per image (mean over images, h_0 = the initial state), ``state_norm`` (T,) mean
    ``||h_t||`` per image, and ``spectral_radius`` {step: estimate of the largest |eigenvalue| of J at h_t}.
    """
    backbone = model.backbone.eval()
    states = backbone.forward_states(images, timesteps=timesteps)
    drive = backbone.make_drive(images)
    previous = [backbone.initial_state(drive), *states[:-1]]
    per_image = [(h - p).flatten(1).norm(dim=1).mean().item() for h, p in zip(states, previous)]
    norms = [h.flatten(1).norm(dim=1).mean().item() for h in states]
    residual = list(backbone.last_stats.residuals)  # forward_states keeps the engine's statistics
    radius = {}
    for step in probe_steps:
        with torch.enable_grad():
            radius[int(step)] = jacobian_spectral_radius(
                backbone.step, drive, states[step - 1], t=step, iters=power_iters
            )
    return {"residual": residual, "delta": per_image, "state_norm": norms, "spectral_radius": radius}


def mean_spread(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) over seeds."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_common_args(parser: Any, args: Any) -> None:
    """Reject impossible ``--seeds``, ``--steps``, ``--threads``, ``--batch-size`` values (exit 2)."""
    if args.seeds < 1 or args.steps < 1 or args.threads < 1 or args.batch_size < 1:
        parser.error("--seeds, --steps, --threads and --batch-size must be >= 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder")
