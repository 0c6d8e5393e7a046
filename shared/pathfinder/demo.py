"""``make demo`` part: generate Pathfinder, train an hGRU, report its learning curve, accuracy and timesteps.

Budget: about 3 minutes on 2 idle CPU cores, data generation included. The budget is a fixed number of
optimiser steps (:data:`DEMO_STEPS`), measured to fit the 3 minutes, so the result does not depend on the
machine's load (a busy machine just takes longer). The task is CPU-sized (see :data:`DEMO_DATA`) and the
report says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.data.pathfinder import PathfinderConfig, load_pathfinder_zarr
from shared.pathfinder.datamodule import PathfinderDataModule
from shared.pathfinder.experiment import train_and_test
from shared.pathfinder.module import PathfinderClassifier
from shared.report import Report
from shared.training import LearningCurve

# The demo's CPU-sized Pathfinder and hGRU (see BENCHMARKS.md, "Pathfinder demo: the hGRU learns"):
# 32x32 images, the published geometry zoomed in (0.3 px per published unit, 6-unit padding), contours of
# 6 paddles (the shortest published difficulty), half the published clutter (15 distractor paddles per
# published area, in snakes of 2). The hGRU has the published front end (Gabor bank, squared), batch-statistics
# norms (C-RBP) and the published readout (BN, 1x1 conv to 2 maps, global max pool, BN, dense). Its C1/C2 norms
# start at scale 0.5 instead of the published 0.1: at 0.1 the horizontal maps start ~10x weaker than the Gabor
# drive and the circuit spends much of the step budget as a feed-forward model (BENCHMARKS.md, "Pathfinder demo").
DEMO_MODEL: dict[str, Any] = {
    "name": "hGRU (1 layer)",
    "backbone": "hgru",
    "backbone_config": {
        "hidden_channels": 8,
        "frontend_kernel": 7,
        "frontend_init": "gabor",
        "kernel_size": 7,
        "timesteps": 6,
        "norm": "batch_stats",
        "norm_scale": 0.5,
    },
    "readout": "reference",
    "lr": 3e-3,
    "lr_schedule": "onecycle",
}
DEMO_DATA: dict[str, Any] = {
    "image_size": 32,
    "contour_length": 6,
    "geometry_scale": 0.3,
    "padding": 6.0,
    "distractor_paddles": 15,
    "n_train": 1000,
    "n_val": 100,
    "n_test": 300,
    "batch_size": 32,
    "generation_workers": 2,
}
# Optimiser steps, sized for the 3-minute budget: on 2 idle CPU cores (2 torch threads) one step of this
# model took ~0.14 s before the CPU forms of the cell's convolutions (~0.9x the step time since) and
# generating the 1,400 images ~25 s, so ~105-115 s of training + ~25 s of generation + testing and figures
# (BENCHMARKS.md).
DEMO_STEPS = 800
DEMO_VAL_EVERY = 50


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_examples(images: np.ndarray, labels: np.ndarray, path_masks: np.ndarray, png: Path, n: int = 6) -> Path:
    """Stimuli (top) and the same with their target path(s) in red (bottom).

    Parameters
    ----------
    images, path_masks : ndarrays of shape (n_images, 1, rows, columns).
    labels : ndarray of shape (n_images,).
    """
    plt = _plt()
    n = min(n, len(labels))
    fig, axes = plt.subplots(2, n, figsize=(2 * n, 4.3), squeeze=False)
    for i in range(n):
        img = images[i, 0]
        axes[0, i].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title("connected" if labels[i] else "not connected", fontsize=9)
        overlay = np.stack(
            [np.maximum(img, path_masks[i, 0]), img * (1 - path_masks[i, 0]), img * (1 - path_masks[i, 0])], axis=-1
        )
        axes[1, i].imshow(overlay)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel("target path(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def plot_timesteps(images: np.ndarray, labels: np.ndarray, readouts: dict[str, torch.Tensor], png: Path) -> Path:
    """Hidden-state energy and readout evidence over timesteps for two images, plus P(connected) per step.

    Parameters
    ----------
    images : ndarray of shape (n_images, 1, rows, columns); the first connected and the first
        not-connected image are drawn.
    labels : ndarray of shape (n_images,).
    readouts : output of :meth:`PathfinderClassifier.timestep_readouts` for ``images``.
    """
    plt = _plt()
    energy, evidence = readouts["state_energy"].cpu().numpy(), readouts["evidence"].cpu().numpy()
    prob = readouts["probability"].cpu().numpy()  # (steps, n_images)
    steps = energy.shape[0]
    shown = list(range(steps)) if steps <= 6 else list(np.linspace(0, steps - 1, 6).round().astype(int))
    fig = plt.figure(figsize=(2 * (len(shown) + 1) + 3, 8.4))
    grid = fig.add_gridspec(4, len(shown) + 2)
    shown_images = [int(np.flatnonzero(labels == y)[0]) for y in (1, 0) if (labels == y).any()]
    for r, i in enumerate(shown_images):
        ax = fig.add_subplot(grid[2 * r, 0])
        ax.imshow(images[i, 0], cmap="gray")
        ax.set_title(f"input ({'connected' if labels[i] else 'not connected'})", fontsize=8)
        ax.axis("off")
        lim = float(np.abs(evidence[:, i]).max()) or 1.0
        for c, t in enumerate(shown):
            ax = fig.add_subplot(grid[2 * r, c + 1])
            ax.imshow(energy[t, i], cmap="magma")
            ax.set_title(f"t={t + 1}: |h|", fontsize=8)
            ax.axis("off")
            ax = fig.add_subplot(grid[2 * r + 1, c + 1])
            ax.imshow(evidence[t, i], cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(f"t={t + 1}: evidence", fontsize=8)
            ax.axis("off")
    ax = fig.add_subplot(grid[:, -1])
    t_axis = np.arange(1, steps + 1)
    for label, color in ((1, "tab:red"), (0, "tab:blue")):
        sel = labels == label
        if sel.any():
            ax.plot(
                t_axis,
                prob[:, sel].mean(axis=1),
                "o-",
                color=color,
                label=f"{'connected' if label else 'not connected'} (n={int(sel.sum())})",
            )
    ax.axhline(0.5, color="gray", ls="--", lw=1)
    ax.set_xlabel("timestep")
    ax.set_ylabel("mean P(connected)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


@dataclass
class DemoRun:
    """One trained demo model: its result row, the model, its data and its learning curve."""

    row: dict[str, Any]
    model: PathfinderClassifier
    datamodule: PathfinderDataModule
    curve: LearningCurve
    settings: dict[str, Any]
    spec: dict[str, Any]


def train_demo_model(
    out_dir: Path,
    *,
    model: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    steps: int = DEMO_STEPS,
    max_seconds: float | None = None,
    seed: int = 0,
    data_seed: int | None = None,
    val_every_steps: int = DEMO_VAL_EVERY,
) -> DemoRun:
    """Generate (or reuse) the demo's Pathfinder splits under ``out_dir/data`` and train one model on them.

    Parameters
    ----------
    out_dir : working folder; data in ``out_dir/data``, Lightning files in ``out_dir/run``.
    model, data : override :data:`DEMO_MODEL` / keys of :data:`DEMO_DATA` (tests run it tiny).
    steps : optimiser-step budget.
    max_seconds : optional wall-clock cap on top of ``steps`` (None: none).
    seed : seed of the weights and the batch order.
    data_seed : seed of the generated splits (default ``seed``).
    val_every_steps : validation interval of the learning curve.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = dict(model or DEMO_MODEL)
    settings = {**DEMO_DATA, **(data or {})}
    dm = PathfinderDataModule(root=str(out_dir / "data"), seed=seed if data_seed is None else data_seed, **settings)
    start = time.perf_counter()
    dm.prepare_data()
    generation_seconds = time.perf_counter() - start
    curve = LearningCurve()
    row, trained = train_and_test(
        spec,
        dm,
        out_dir=out_dir / "run",
        max_seconds=max_seconds,
        max_steps=steps,
        val_every_steps=val_every_steps,
        callbacks=[curve],
        seed=seed,
        progress=False,
    )
    row["generation_seconds"] = round(generation_seconds, 1)
    row["chance"] = 0.5
    return DemoRun(row, trained, dm, curve, settings, spec)


def plot_learning_curves(curves: dict[str, LearningCurve], png: Path, *, title: str = "", smooth: int = 25) -> Path:
    """Training loss (moving average over ``smooth`` steps) and validation accuracy against optimiser steps.

    Parameters
    ----------
    curves : label -> recorded :class:`LearningCurve` (one line per entry, e.g. one per seed).
    png : output path.
    """
    plt = _plt()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, curve in curves.items():
        if curve.train:
            steps, losses = np.array(curve.train).T
            width = max(1, min(smooth, len(losses)))
            ax_loss.plot(steps[width - 1 :], np.convolve(losses, np.ones(width) / width, mode="valid"), label=label)
        if curve.val:
            steps, acc = np.array(curve.val).T
            ax_acc.plot(steps, acc, "o-", ms=3, label=label)
    ax_loss.axhline(np.log(2), color="gray", ls="--", lw=1, label="chance (ln 2)")
    ax_loss.set_xlabel("optimiser step")
    ax_loss.set_ylabel(f"training loss (mean of {smooth} steps)")
    ax_acc.axhline(0.5, color="gray", ls="--", lw=1, label="chance")
    ax_acc.set_xlabel("optimiser step")
    ax_acc.set_ylabel("validation accuracy")
    ax_acc.set_ylim(0.4, 1.0)
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def run_demo(
    out_dir: Path,
    report: Report,
    *,
    model: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    steps: int = DEMO_STEPS,
    max_seconds: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Generate a small Pathfinder set, train an hGRU for :data:`DEMO_STEPS` steps, and add a report section.

    Parameters
    ----------
    out_dir : working folder (data, checkpoint, figures); everything is written under it.
    report : the demo report to add the section to.
    model, data : override :data:`DEMO_MODEL` / keys of :data:`DEMO_DATA` (tests run it tiny).
    steps : optimiser-step budget.
    max_seconds : optional wall-clock cap (None: the step budget alone decides).

    Returns
    -------
    result : the result row (test accuracy etc.) plus figure paths.
    """
    out_dir = Path(out_dir).resolve()
    run = train_demo_model(out_dir, model=model, data=data, steps=steps, max_seconds=max_seconds, seed=seed)
    row, trained, dm, settings, spec = run.row, run.model, run.datamodule, run.settings, run.spec

    test = dm.datasets["test"]
    images, labels = test.images.numpy(), test.labels.numpy()
    stored = load_pathfinder_zarr(dm.split_path("test"))
    examples = plot_examples(images, labels, stored.path_masks, out_dir / "pathfinder_examples.png")
    curve_png = plot_learning_curves({f"seed {seed}": run.curve}, out_dir / "pathfinder_learning_curve.png")
    pick = np.concatenate([np.flatnonzero(labels == 1)[:16], np.flatnonzero(labels == 0)[:16]])
    readouts = trained.timestep_readouts(torch.from_numpy(images[pick]))
    timesteps = plot_timesteps(images[pick], labels[pick], readouts, out_dir / "pathfinder_timesteps.png")

    cfg: PathfinderConfig = dm.config
    # a 95% binomial interval around chance for this test-set size tells luck from learning
    margin = 1.96 * 0.5 / np.sqrt(len(labels))
    if row["test_acc"] > 0.5 + margin:
        verdict = (
            f"{row['test_acc']:.3f} is above chance (beyond the 95% band 0.5 +/- {margin:.3f} for "
            f"{len(labels)} test images)."
        )
    else:
        verdict = (
            f"{row['test_acc']:.3f} is within the 95% band of chance (0.5 +/- {margin:.3f}): in "
            f"{row['train_steps']} optimiser steps the model has not learned the task."
        )
    backbone = spec.get("backbone_config", {})
    section = report.section(
        "Pathfinder: hGRU on contour integration",
        f"Pathfinder images ({cfg.image_size[0]}x{cfg.image_size[1]} px, contours of {cfg.contour_length} "
        f"paddles, {cfg.distractor_paddles} distractor paddles per published area, {settings['n_train']} "
        f"training images) were generated with shared.data.pathfinder in {row['generation_seconds']:.1f} s, "
        f"and a one-layer {spec['backbone']} ({backbone}) was trained for {row['train_steps']} optimiser "
        f"steps ({row['train_seconds']:.0f} s here) on the CPU. The task is scaled down to fit the demo's "
        "3-minute budget: the published benchmark uses 150x150 images, contours of 6-14 paddles and "
        "hundreds of thousands of images. The BatchNorms normalise with batch statistics in training and "
        "testing alike (as in the C-RBP reference), so the test batches are mixed-label batches of "
        f"{settings['batch_size']} images. Test accuracy (chance 0.5): {verdict}\n\n"
        "The learning curve shows the training loss and the validation accuracy against optimiser steps. "
        "The timestep figure shows the mean absolute hidden state and the readout's evidence for "
        "'connected' (class-1 minus class-0 map of the 1x1 readout) at each recurrent step of the trained "
        "model, and the readout's P(connected) for each step's state averaged over test images of each label.",
    )
    section.add_table("Test accuracy after the demo's training budget", [row])
    section.add_figure("Example stimuli; bottom row: the target path(s) that carry the markers", examples)
    section.add_figure("Learning curve: training loss and validation accuracy", curve_png)
    section.add_figure("Hidden state and readout evidence over timesteps (return_steps=True)", timesteps)
    return {**row, "examples_png": str(examples), "learning_curve_png": str(curve_png), "timesteps_png": str(timesteps)}
