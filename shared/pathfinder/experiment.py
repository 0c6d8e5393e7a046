"""hGRU against a feedforward baseline with at least as many parameters, on small Pathfinder.

The published claim (Linsley et al., NeurIPS 2018) is that one hGRU layer solves Pathfinder-14 while far
larger feedforward CNNs do not. This module runs the CPU-sized version of that comparison: each model is
trained by a Lightning ``Trainer`` for the same wall-clock budget on the same generated data, then
evaluated on the test split; the results are written as CSV/JSON and an accuracy-vs-parameters PNG.

    python scripts/pathfinder_experiment.py --out runs/pathfinder_experiment

Model specs are plain dicts (``name``, ``backbone``, ``backbone_config``, ``readout``, ``lr``) so the
comparison is visible in one place (:data:`DEFAULT_MODELS`) and in the results.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch

from shared.backbones import model_info
from shared.devices import lightning_precision
from shared.pathfinder.datamodule import PathfinderDataModule
from shared.pathfinder.module import PathfinderClassifier, count_parameters
from shared.training import LearningCurve

# LearningCurve lives in shared.training (shared with the tracking module); kept importable from here
__all__ = [
    "DEFAULT_MODELS",
    "LearningCurve",
    "build_model",
    "main",
    "plot_accuracy_vs_parameters",
    "run_experiment",
    "train_and_test",
]

# One hGRU layer (Gabor-like 7x7 front end, horizontal kernel, T steps) vs a ResNet with more parameters.
DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "name": "hGRU (1 layer)",
        "backbone": "hgru",
        "backbone_config": {"hidden_channels": 12, "kernel_size": 9, "timesteps": 8},
        "readout": "reference",
        "lr": 3e-3,
    },
    {
        "name": "ResNet (feedforward)",
        "backbone": "resnet_small",
        "backbone_config": {"stem_channels": 16, "widths": [16, 32, 64], "blocks_per_stage": 1},
        "readout": "pool_mlp",
        "lr": 3e-3,
    },
]


def build_model(spec: dict[str, Any]) -> PathfinderClassifier:
    """A :class:`PathfinderClassifier` from a model spec dict."""
    return PathfinderClassifier(
        spec["backbone"],
        dict(spec.get("backbone_config") or {}),
        readout=spec.get("readout", "reference"),
        lr=float(spec.get("lr", 1e-3)),
        lr_schedule=spec.get("lr_schedule", "constant"),
    )


def train_and_test(
    spec: dict[str, Any],
    datamodule: PathfinderDataModule,
    *,
    out_dir: Path,
    max_seconds: float | None = None,
    max_steps: int = -1,
    max_epochs: int = 1000,
    val_every_steps: int | None = None,
    callbacks: Sequence[L.Callback] = (),
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], PathfinderClassifier]:
    """Train one model for a wall-clock and/or step budget, test it, and return a result row and the model.

    Parameters
    ----------
    spec : model spec (see :data:`DEFAULT_MODELS`).
    datamodule : prepared Pathfinder data.
    out_dir : Lightning's ``default_root_dir`` for this model (logs, checkpoint).
    max_seconds : training time budget (Lightning ``max_time``); None for no time limit.
    max_steps : optimiser-step budget (-1: none). A step budget makes results independent of the load.
    max_epochs : epoch cap.
    val_every_steps : validate every this many optimiser steps (default: once per epoch).
    callbacks : extra Lightning callbacks (e.g. :class:`shared.training.LearningCurve`).
    seed : seed for weights and data order.

    Returns
    -------
    row : dict with model, backbone, parameters, epochs, train_seconds, val_acc, test_acc, test_loss.
    model : the trained module (eval mode).
    """
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(spec)
    validation = (
        {"val_check_interval": int(val_every_steps), "check_val_every_n_epoch": None} if val_every_steps else {}
    )
    trainer = L.Trainer(
        default_root_dir=str(out_dir),
        max_epochs=max_epochs,
        max_steps=max_steps,
        accelerator="auto",
        devices=1,
        precision=lightning_precision(),
        max_time=None if max_seconds is None else {"seconds": max(float(max_seconds), 1.0)},
        enable_progress_bar=progress,
        enable_model_summary=False,
        logger=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        deterministic=False,
        callbacks=list(callbacks),
        **validation,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    val_acc = float(trainer.callback_metrics.get("val/acc", torch.tensor(float("nan"))))
    tested = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    model.eval()
    row = {
        "model": spec.get("name", spec["backbone"]),
        "backbone": spec["backbone"],
        "recurrent": model.recurrent,
        "parameters": count_parameters(model),
        "epochs": int(trainer.current_epoch),
        "train_steps": int(trainer.global_step),
        "train_seconds": round(train_seconds, 1),
        "val_acc": val_acc,
        "test_acc": float(tested["test/acc"]),
        "test_loss": float(tested["test/loss"]),
    }
    return row, model


def plot_accuracy_vs_parameters(results: pd.DataFrame, png: Path, *, title: str) -> Path:
    """Scatter of test accuracy against parameter count (log x), chance level marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for _, row in results.iterrows():
        recurrent = bool(row["recurrent"])
        ax.scatter(
            row["parameters"],
            row["test_acc"],
            s=80,
            marker="o" if recurrent else "s",
            color="tab:red" if recurrent else "tab:blue",
        )
        ax.annotate(
            row["model"], (row["parameters"], row["test_acc"]), textcoords="offset points", xytext=(6, 6), fontsize=9
        )
    ax.axhline(0.5, color="gray", ls="--", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.4, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def run_experiment(
    out_dir: Path,
    *,
    models: Sequence[dict[str, Any]] = tuple(DEFAULT_MODELS),
    data_root: Path | None = None,
    image_size: int = 100,
    contour_length: int = 14,
    geometry_scale: float | None = None,
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 600,
    batch_size: int = 32,
    seconds_per_model: float = 150.0,
    generation_workers: int = 2,
    seed: int = 0,
    require_larger_baseline: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Run the comparison and write ``results.csv``, ``results.json`` and ``accuracy_vs_parameters.png``.

    Parameters
    ----------
    out_dir : output folder.
    models : model specs; the first recurrent one is the reference for the parameter check.
    data_root : where the zarr splits live (default ``out_dir / "data"``).
    image_size, contour_length, geometry_scale : the stimulus (default: Pathfinder-14, the published
        300x300 stimulus resized to 100x100).
    n_train, n_val, n_test, batch_size : data sizes.
    seconds_per_model : training budget of each model (equal for all).
    require_larger_baseline : raise if a feedforward model has fewer parameters than the hGRU.

    Returns
    -------
    results : one row per model.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dm = PathfinderDataModule(
        root=str(data_root or out_dir / "data"),
        image_size=image_size,
        contour_length=contour_length,
        geometry_scale=geometry_scale,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        seed=seed,
        batch_size=batch_size,
        generation_workers=generation_workers,
    )
    start = time.perf_counter()
    dm.prepare_data()
    generation_seconds = time.perf_counter() - start
    counts = {spec.get("name", spec["backbone"]): count_parameters(build_model(spec)) for spec in models}
    recurrent = [s for s in models if model_info(s["backbone"]).recurrent]
    if require_larger_baseline and recurrent:
        reference = counts[recurrent[0].get("name", recurrent[0]["backbone"])]
        smaller = [
            n for s in models if s not in recurrent for n in [s.get("name", s["backbone"])] if counts[n] < reference
        ]
        if smaller:
            raise ValueError(
                f"feedforward baseline(s) {smaller} have fewer parameters than the hGRU ({reference}); counts: {counts}"
            )
    rows = []
    for i, spec in enumerate(models):
        row, _ = train_and_test(
            spec, dm, out_dir=out_dir / f"model{i}", max_seconds=seconds_per_model, seed=seed, progress=progress
        )
        rows.append(row)
    results = pd.DataFrame(rows)
    results.to_csv(out_dir / "results.csv", index=False)
    meta = {
        "image_size": image_size,
        "contour_length": contour_length,
        "geometry_scale": geometry_scale,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "batch_size": batch_size,
        "seconds_per_model": seconds_per_model,
        "generation_seconds": round(generation_seconds, 1),
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "models": list(models),
        "results": rows,
    }
    (out_dir / "results.json").write_text(json.dumps(meta, indent=2))
    device = "GPU" if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    plot_accuracy_vs_parameters(
        results,
        out_dir / "accuracy_vs_parameters.png",
        title=f"Pathfinder-{contour_length}, {image_size}x{image_size}, {n_train} "
        f"training images, {seconds_per_model:.0f} s per model ({device})",
    )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry (``scripts/pathfinder_experiment.py``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/pathfinder_experiment"), help="output folder")
    p.add_argument("--data-root", type=Path, default=None, help="zarr data folder (default OUT/data)")
    p.add_argument("--image-size", type=int, default=100)
    p.add_argument("--contour-length", type=int, default=14)
    p.add_argument(
        "--geometry-scale", type=float, default=None, help="pixels per published unit (default image_size/300)"
    )
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--n-test", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seconds-per-model", type=float, default=150.0)
    p.add_argument("--generation-workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--models",
        type=Path,
        default=None,
        help="JSON file with a list of model specs (default: hGRU vs ResNet, see DEFAULT_MODELS)",
    )
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    models = DEFAULT_MODELS if args.models is None else json.loads(args.models.read_text())
    results = run_experiment(
        args.out,
        models=models,
        data_root=args.data_root,
        image_size=args.image_size,
        contour_length=args.contour_length,
        geometry_scale=args.geometry_scale,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        batch_size=args.batch_size,
        seconds_per_model=args.seconds_per_model,
        generation_workers=args.generation_workers,
        seed=args.seed,
    )
    print(results.to_string(index=False))
    print(f"wrote {args.out / 'results.csv'}, results.json and accuracy_vs_parameters.png")
    return 0
