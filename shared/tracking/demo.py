"""``make demo`` part: PathTracker example frames, InT trained briefly, accuracy per condition, attention over time.

Budget: at most 90 s of one CPU core, data generation included (measured: 69 s of CPU time, user + sys, for
``scripts/demo.py --only tracking`` with one thread; 6 min of wall time on the shared, loaded machine). The
budget is a fixed number of optimiser steps (:data:`DEMO_STEPS`) on a CPU-sized PathTracker
(:data:`DEMO_DATA`: fewer frames and videos than published), so the result does not depend on the machine's
load. At this budget InT is not expected to
solve the task: the section reports the accuracy per difficulty condition against the 95% chance band,
and shows what the circuit attends to, frame by frame (its attention gate A_t, ``aux["attention"]``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from shared.report import Report
from shared.stdio import quiet_lightning_fit
from shared.tracking.datamodule import TrackingDataModule
from shared.tracking.module import TrackingClassifier

# PathTracker scaled to the CPU: 32x32 px as published, 16 frames at speed 4 (the published 64 frames' path
# length, every 4th point; shorter paths would leak the label through the marker distance), 2 distractors for
# training (published 14), 256 training videos; tested on 0, 2 (the training condition) and 5 distractors.
DEMO_DATA: dict[str, Any] = {
    "task": "pathtracker",
    "frames": 16,
    "speed": 4,
    "num_distractors": 2,
    "n_train": 256,
    "n_val": 16,
    "n_test": 48,
    "batch_size": 16,
    "generation_workers": 1,
    "test_conditions": ["distractors=0", "distractors=2", "distractors=5"],
}
# InT with the published gates, kernels and readout at 8 channels (published 32) and 5x5 horizontal kernels
# (published 7x7); lr above the published 3e-4 because the budget is a few hundred steps.
DEMO_MODEL: dict[str, Any] = {"backbone": "int", "backbone_config": {"channels": 8, "kernel_size": 5}, "lr": 1e-3}
DEMO_STEPS = 150


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_attention(video: np.ndarray, attention: np.ndarray, label: int, png: Path, *, n_frames: int = 6) -> Path:
    """Frames of one video (top) and InT's attention gate on the same frames (bottom).

    Parameters
    ----------
    video : ndarray (T, H, W, 3) uint8 RGB (red start, green dots, blue goal).
    attention : ndarray (T, H, W) float, the channel-mean attention A_t.
    label : the video's label (1: the dot leaving the start ends in the goal).
    png : output path.
    """
    plt = _plt()
    frames = np.linspace(0, len(video) - 1, min(n_frames, len(video))).round().astype(int)
    fig, axes = plt.subplots(2, len(frames), figsize=(1.9 * len(frames), 4.1), squeeze=False)
    lo, hi = float(attention.min()), float(attention.max())
    for c, t in enumerate(frames):
        axes[0, c].imshow(video[t])
        axes[0, c].set_title(f"frame {t + 1}", fontsize=8)
        axes[1, c].imshow(attention[t], cmap="magma", vmin=lo, vmax=hi if hi > lo else lo + 1)
        axes[1, c].set_title(f"A_t, t={t + 1}", fontsize=8)
        for ax in axes[:, c]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("video", fontsize=9)
    axes[1, 0].set_ylabel("attention", fontsize=9)
    fig.suptitle(f"InT attention over time ({'positive' if label else 'negative'} video)", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def plot_condition_accuracy(rows: list[dict[str, Any]], png: Path, *, chance_band: float) -> Path:
    """Bar chart of test accuracy per condition with the 95% chance band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 3.2))
    ax.bar([r["condition"] for r in rows], [r["accuracy"] for r in rows], color="tab:red")
    ax.axhspan(0.5 - chance_band, 0.5 + chance_band, color="gray", alpha=0.25, label="95% chance band")
    ax.axhline(0.5, color="gray", ls="--", lw=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def train_demo(
    out_dir: Path,
    *,
    data: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    steps: int = DEMO_STEPS,
    seed: int = 0,
) -> tuple[TrackingClassifier, TrackingDataModule, dict]:
    """Generate the demo data under ``out_dir/data`` and train InT for ``steps`` optimiser steps.

    Returns the trained model (eval mode), the datamodule (set up for testing) and the test metrics.
    """
    out_dir = Path(out_dir).resolve()
    settings = {**DEMO_DATA, **(data or {})}
    spec = {**DEMO_MODEL, **(model or {})}
    dm = TrackingDataModule(root=str(out_dir / "data"), seed=seed, **settings)
    L.seed_everything(seed, workers=True, verbose=False)
    classifier = TrackingClassifier(spec["backbone"], dict(spec["backbone_config"]), lr=spec["lr"])
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=str(out_dir / "run"),
    )
    with quiet_lightning_fit():  # no validation on purpose: the test conditions are scored after training
        trainer.fit(classifier, datamodule=dm)
    metrics = trainer.test(classifier, datamodule=dm, verbose=False)[0]
    classifier.eval()
    return classifier, dm, metrics


def run_demo(
    out_dir: Path,
    report: Report,
    *,
    data: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    steps: int = DEMO_STEPS,
) -> dict[str, Any]:
    """Generate PathTracker, train InT briefly, and add a report section (examples, accuracy, attention).

    Parameters
    ----------
    out_dir : working folder; data, figures and Lightning files are written under it.
    report : the demo report to add the section to.
    data, model : override :data:`DEMO_DATA` / :data:`DEMO_MODEL` keys (tests run it tiny).
    steps : optimiser-step budget.

    Returns
    -------
    dict with the accuracy per condition, the timings and the figure paths.
    """
    from shared.data.pathtracker import load_pathtracker_zarr
    from shared.tracking.figures import plot_example_frames

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    classifier, dm, metrics = train_demo(out_dir, data=data, model=model, steps=steps)
    seconds = time.perf_counter() - start
    n_test = dm.hparams.n_test
    band = 1.96 * 0.5 / np.sqrt(n_test)
    rows = [
        {
            "condition": name,
            "videos": n_test,
            "accuracy": round(float(metrics[f"test/acc/{name}"]), 3),
            "balanced accuracy": round(float(metrics[f"test/balanced_acc/{name}"]), 3),
        }
        for name in dm.condition_names
        if f"test/acc/{name}" in metrics
    ]

    test = next(iter(dm.test_dataloader()))
    video = test["video"][:1]
    with torch.no_grad():
        out = classifier.backbone(video.to(classifier.device), return_steps=True)
    attention = out.aux["attention"][0].float().cpu().numpy()
    frames_uint8 = (video[0].permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)
    attention_png = plot_attention(frames_uint8, attention, int(test["label"][0]), out_dir / "tracking_attention.png")
    accuracy_png = plot_condition_accuracy(rows, out_dir / "tracking_accuracy.png", chance_band=band)
    examples = load_pathtracker_zarr(dm.split_path("train"))
    examples_png = plot_example_frames(examples, out_dir / "tracking_examples.png", n_videos=4)

    above = [r["condition"] for r in rows if r["accuracy"] > 0.5 + band]
    verdict = (
        f"above the 95% chance band (0.5 +/- {band:.3f}) on: {', '.join(above)}."
        if above
        else f"within the 95% chance band (0.5 +/- {band:.3f}) on every condition: {steps} optimiser steps "
        "are too few for InT to learn PathTracker on a CPU (the published runs train for thousands of "
        "epochs on a GPU)."
    )
    settings = {**DEMO_DATA, **(data or {})}
    spec = {**DEMO_MODEL, **(model or {})}
    section = report.section(
        "Tracking: InT on PathTracker",
        f"PathTracker videos (32x32 px, {settings['frames']} frames at speed {settings['speed']}, "
        f"{settings['num_distractors']} distractors for training; published: 64 frames at speed 1, 14 "
        f"distractors) were generated with shared.data.pathtracker and "
        f"InT ({spec['backbone_config']}) was trained for {steps} optimiser steps of {settings['batch_size']} "
        f"videos on {settings['n_train']} videos (BCE-with-logits, Adam lr {spec['lr']}), in {seconds:.0f} s "
        f"with data generation and testing. Test accuracy per condition: {verdict}\n\n"
        "The attention figure shows InT's attention gate A_t (channel mean of the spotlight) on frames of one "
        "test video: the published account is that it follows the target dot from the red start marker.",
    )
    section.add_figure("Example PathTracker frames (red start, blue goal, green dots)", examples_png)
    section.add_table("Test accuracy per condition (chance 0.5)", rows)
    section.add_figure("Test accuracy per condition, with the 95% chance band", accuracy_png)
    section.add_figure("InT attention A_t over time", attention_png)
    return {
        "rows": rows,
        "seconds": round(seconds, 1),
        "examples_png": str(examples_png),
        "accuracy_png": str(accuracy_png),
        "attention_png": str(attention_png),
    }
