"""Tracking evidence at CPU scale (issue 17): two claims, 3 seeds each, one figure per claim.

a. **PathTracker** (Linsley, Malik et al., NeurIPS 2021; Malik et al. 2021): InT holds up where 3D CNNs fall
   as distractors and path length grow. InT and ``r3d_small`` with matched parameters are trained on one
   training condition and tested along the two difficulty axes (distractors, length = frames).
b. **FeatureTracker** (Muzellec, Linsley et al., ICLR 2025): the CV-RNN generalises to out-of-distribution
   shapes and colours better than InT and a real-valued control. The three are trained on the
   in-distribution condition (``idshapes_idcolors``) and tested on all nine conditions.

Design choices, and why:

* **Budgets are optimiser steps, not seconds** (the machine is shared): every arm of a claim gets the same
  steps, batch size and learning rate. The step budget is what fits ~30 min of one CPU thread for both claims;
  it is far below the published training (thousands of epochs on GPUs), and the figures show whether the
  models learned at all (learning curves on the training condition, chance and the 95% chance band).
* **Scaled-down stimuli** (:data:`PATHTRACKER`, :data:`FEATURETRACKER`): 32x32 px as published, but fewer frames
  and videos; the length axis is scaled with the frames (published 32/64/128 at 64 training frames).
* **Train once, test across the axis.** The papers also train at each difficulty; at CPU scale one training
  run per model and seed is tested on every condition (a generalisation reading of the claim).
* **Seeds vary the weights and batch order**, not the data (one generated dataset per claim).
* **Runs are cached** as ``<out>/runs/<claim>_<model>_s<seed>.json``; a rerun reuses them (delete the folder
  after changing the models or settings).

    OMP_NUM_THREADS=1 python benchmarks/tracking_evidence.py --out runs/tracking_evidence    # ~18 CPU-minutes
    python benchmarks/tracking_evidence.py --out /tmp/te --quick          # smoke run, ~1 min

Writes ``<out>/tracking_evidence.json`` and the figures ``--figures``/tracking_{pathtracker,featuretracker}.png,
and prints one markdown table per claim.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from shared.stdio import quiet_lightning_fit
from shared.tracking.datamodule import TrackingDataModule
from shared.tracking.module import TrackingClassifier
from shared.training import LearningCurve, count_parameters

# CPU-scale stimuli: 32x32 px as published; frames, distractors and set sizes scaled down (see BENCHMARKS.md)
# PathTracker at speed 4: 16 frames then cover the 64 path points of the published 64-frame videos (every 4th
# point); at speed 1, 16 frames travel so little that the start-goal marker distance alone separates the labels
# (ROC AUC 0.96 vs 0.59 at the published 64 frames, BENCHMARKS.md)
PATHTRACKER: dict[str, Any] = {
    "task": "pathtracker",
    "frames": 16,
    "speed": 4,
    "num_distractors": 2,
    "n_train": 1024,
    "n_val": 128,
    "n_test": 128,
    "batch_size": 16,
    "axes": {"distractors": [0, 2, 5, 14], "length": [8, 16, 32]},
}
FEATURETRACKER: dict[str, Any] = {
    "task": "featuretracker",
    "condition": "idshapes_idcolors",
    "frames": 16,
    "num_distractors": 4,
    "n_train": 1024,
    "n_val": 64,
    "n_test": 96,
    "batch_size": 8,
    "tests": [
        "idshapes_idcolors",
        "idshapes_oodcolors",
        "oodshapes_idcolors",
        "oodshapes_oodcolors",
        "idshapes_irregularcolors",
        "idshapes_idcolors_irregular",
    ],
}
# InT and a 3D ResNet with matched parameters (within 25%), CV-RNN / InT / real-valued control at their
# configs' widths; the keys are the models' config fields.
MODELS: dict[str, dict[str, Any]] = {
    "InT": {"backbone": "int", "backbone_config": {"channels": 8, "kernel_size": 5}},
    "R3D (matched)": {"backbone": "r3d_small", "backbone_config": {"stem_channels": 4, "widths": [4, 6]}},
    "CV-RNN": {"backbone": "cvrnn", "backbone_config": {"channels": 8, "kernel_size": 5}},
    # the CV-RNN's layers with every phase at 0: no phase for the synchrony loss to act on
    "real-valued control": {
        "backbone": "cvrnn",
        "backbone_config": {"channels": 8, "kernel_size": 5, "complex_valued": False},
        "synchrony_weight": 0.0,
    },
}
CLAIMS = {"pathtracker": ["InT", "R3D (matched)"], "featuretracker": ["CV-RNN", "InT", "real-valued control"]}
MATCH_TOLERANCE = 0.25


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("runs/tracking_evidence"), help="data, runs and results")
    p.add_argument("--figures", type=Path, default=Path("benchmarks/figures"), help="where the PNGs go")
    p.add_argument("--claims", nargs="+", default=list(CLAIMS), choices=list(CLAIMS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--steps",
        type=int,
        nargs=2,
        default=[150, 100],
        metavar=("PATHTRACKER", "FEATURETRACKER"),
        help="optimiser steps per run of each claim (the same for every arm of a claim)",
    )
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of every arm (published 3e-4)")
    p.add_argument("--val-every", type=int, default=25, help="validation interval (learning curves)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 4 steps, tiny data")
    args = p.parse_args(argv)
    if args.seeds < 1 or min(args.steps) < 1 or args.threads < 1 or args.val_every < 1 or args.lr <= 0:
        p.error("--seeds, --steps, --threads and --val-every must be >= 1 and --lr > 0")
    for path in (args.out, args.figures):
        if path.exists() and not path.is_dir():
            p.error(f"{path} is a file, not a folder")
    return args


def claim_data(claim: str, root: Path, quick: bool) -> TrackingDataModule:
    """The claim's datamodule: training condition plus every test condition (generated once)."""
    spec = dict(PATHTRACKER if claim == "pathtracker" else FEATURETRACKER)
    if claim == "pathtracker":
        tests = [f"{axis}={v}" for axis, values in spec.pop("axes").items() for v in values]
    else:
        tests = spec.pop("tests")
    if quick:
        spec.update(n_train=16, n_val=8, n_test=8, batch_size=8)
    dm = TrackingDataModule(root=str(root / claim), seed=0, test_conditions=tests, generation_workers=1, **spec)
    dm.prepare_data()
    return dm


def tested_conditions(dm: TrackingDataModule) -> list[tuple[str, str]]:
    """(requested test condition, the datamodule's name for it) in the order requested.

    A requested condition equal to the training one is served as condition 0, under the training name.
    """
    requested = dm.hparams.test_conditions or [dm.condition_names[0]]
    return [(asked, dm.condition_names[index]) for asked, (_, _, index) in zip(requested, dm.test_splits)]


def marker_shortcut(n: int = 300, distractors: int = 2, seed: int = 1) -> list[dict[str, Any]]:
    """How well the start-goal marker distance alone predicts the PathTracker label (a static shortcut).

    For each (frames, speed) it generates ``n`` videos and returns the ROC AUC of ``-distance`` for label 1
    (0.5: no information; 1: the label is readable from one frame). Positives put the goal marker where the
    target ends, negatives where the paired distractor (which starts elsewhere) ends, so short target paths
    make positives' markers close together.
    """
    from scipy.stats import rankdata

    from shared.data.pathtracker import PathTrackerConfig, generate_pathtracker

    rows = []
    for frames, speed in ((16, 1), (32, 1), (64, 1), (8, 4), (16, 4), (32, 4)):
        data = generate_pathtracker(
            n, config=PathTrackerConfig(frames=frames, speed=speed, num_distractors=distractors), seed=seed
        )
        distance = np.linalg.norm((data.markers[:, 0] - data.markers[:, 1]).astype(float), axis=1)
        ranks = rankdata(-distance)
        positive = data.labels == 1
        n1, n0 = int(positive.sum()), int((~positive).sum())
        auc = (ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
        rows.append(
            {
                "frames": frames,
                "speed": speed,
                "path_points": frames * speed,
                "auc": round(float(auc), 3),
                "distance_positive": round(float(distance[positive].mean()), 1),
                "distance_negative": round(float(distance[~positive].mean()), 1),
            }
        )
    return rows


def check_matched(names: list[str]) -> dict[str, int]:
    """Parameter counts of the claim's models; raise if InT and the 3D CNN differ by more than the tolerance."""
    counts = {
        n: count_parameters(TrackingClassifier(MODELS[n]["backbone"], dict(MODELS[n]["backbone_config"])))
        for n in names
    }
    if "InT" in counts and "R3D (matched)" in counts:
        ratio = counts["R3D (matched)"] / counts["InT"]
        if abs(ratio - 1) > MATCH_TOLERANCE:
            raise ValueError(f"R3D has {ratio:.2f}x InT's parameters ({counts}); adjust MODELS to match")
    return counts


def run_arm(claim: str, name: str, seed: int, dm: TrackingDataModule, args: argparse.Namespace) -> dict[str, Any]:
    """Train one model for the claim's step budget (cached), test it on every condition; return its result row."""
    steps = args.steps[list(CLAIMS).index(claim)]
    cache = args.out / "runs" / f"{claim}_{name.replace(' ', '_')}_s{seed}.json"
    settings = {
        "model": MODELS[name],
        "steps": steps,
        "lr": args.lr,
        "seed": seed,
        "quick": args.quick,
        "data": dict(dm.hparams),
    }
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("settings") == json.loads(json.dumps(settings, default=str)):
            return cached
    L.seed_everything(seed, workers=True, verbose=False)
    spec = MODELS[name]
    model = TrackingClassifier(
        spec["backbone"], dict(spec["backbone_config"]), lr=args.lr, synchrony_weight=spec.get("synchrony_weight", 1.0)
    )
    curve = LearningCurve(metric="val/balanced_acc")
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=min(args.val_every, steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        callbacks=[curve],
        default_root_dir=str(args.out / "lightning"),
    )
    start = time.perf_counter()
    with quiet_lightning_fit():
        trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - start
    tested = trainer.test(model, datamodule=dm, verbose=False)[0]
    row = {
        "claim": claim,
        "model": name,
        "seed": seed,
        "parameters": count_parameters(model),
        "steps": int(trainer.global_step),
        "train_seconds": round(seconds, 1),
        "accuracy": {
            c: float(tested[f"test/balanced_acc/{c}"]) for c in dm.condition_names if f"test/balanced_acc/{c}" in tested
        },
        "train_loss": curve.train,
        "val_balanced_acc": curve.val,
        "settings": json.loads(json.dumps(settings, default=str)),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(row, indent=1))
    return row


def summarise(
    rows: list[dict[str, Any]], conditions: list[tuple[str, str]]
) -> dict[str, dict[str, tuple[float, float]]]:
    """model -> requested condition -> (mean, s.d. over seeds) of the test balanced accuracy."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        values = {
            asked: [r["accuracy"][c] for r in rows if r["model"] == name and c in r["accuracy"]]
            for asked, c in conditions
        }
        out[name] = {
            c: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0) for c, v in values.items() if v
        }
    return out


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(ax, rows: list[dict[str, Any]], colors: dict[str, str], smooth: int = 10) -> None:
    """Training BCE (moving average over ``smooth`` steps) against optimiser steps, every seed; ln 2 = chance.

    Runs with a synchrony loss are left out: their recorded loss is BCE plus the synchrony term.
    """
    for r in rows:
        spec = MODELS[r["model"]]
        if r["train_loss"] and not (spec["backbone"] == "cvrnn" and spec.get("synchrony_weight", 1.0) > 0):
            steps, loss = np.array(r["train_loss"]).T
            width = max(1, min(smooth, len(loss)))
            ax.plot(
                steps[width - 1 :],
                np.convolve(loss, np.ones(width) / width, mode="valid"),
                lw=1,
                color=colors[r["model"]],
                alpha=0.7,
                label=r["model"] if r["seed"] == 0 else None,
            )
    ax.axhline(np.log(2), color="gray", ls="--", lw=1, label="ln 2 (chance)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"training BCE (mean of {smooth} steps)")
    ax.legend(fontsize=7)


def plot_learning(ax, rows: list[dict[str, Any]], colors: dict[str, str]) -> None:
    """Validation balanced accuracy on the training condition against optimiser steps, every seed."""
    for r in rows:
        if r["val_balanced_acc"]:
            steps, acc = np.array(r["val_balanced_acc"]).T
            ax.plot(
                steps,
                acc,
                "o-",
                ms=2,
                lw=1,
                color=colors[r["model"]],
                alpha=0.7,
                label=r["model"] if r["seed"] == 0 else None,
            )
    ax.axhline(0.5, color="gray", ls="--", lw=1)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("val balanced accuracy (training condition)")
    ax.set_ylim(0.3, 1.0)
    ax.legend(fontsize=7)


def plot_claim(
    claim: str, rows: list[dict[str, Any]], conditions: list[tuple[str, str]], n_test: int, png: Path, title: str
) -> Path:
    """One figure per claim: accuracy per test condition (mean +/- s.d. over seeds) and learning curves."""
    plt = pyplot()
    summary = summarise(rows, conditions)
    colors = dict(zip(summary, ("tab:red", "tab:blue", "tab:green", "tab:purple")))
    band = 1.96 * 0.5 / np.sqrt(n_test)
    if claim == "pathtracker":
        axes_of = {}
        for c, _ in conditions:
            axis, value = c.split("=")
            axes_of.setdefault(axis, []).append((float(value), c))
        fig, axes = plt.subplots(1, len(axes_of) + 2, figsize=(4.2 * (len(axes_of) + 2), 3.8))
        for ax, (axis, points) in zip(axes, axes_of.items()):
            for name, per in summary.items():
                xs = [x for x, c in points if c in per]
                mean = [per[c][0] for _, c in points if c in per]
                sd = [per[c][1] for _, c in points if c in per]
                ax.errorbar(xs, mean, yerr=sd, fmt="o-", capsize=3, color=colors[name], label=name)
            ax.axhspan(0.5 - band, 0.5 + band, color="gray", alpha=0.2, label="95% chance band")
            ax.set_xlabel("distractors" if axis == "distractors" else "length (frames)")
            ax.set_ylabel("test balanced accuracy")
            ax.set_ylim(0.3, 1.0)
            ax.legend(fontsize=7)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(17, 4.2), gridspec_kw={"width_ratios": [2.6, 1, 1]})
        ax = axes[0]
        width = 0.8 / max(len(summary), 1)
        tested = [c for c, _ in conditions]
        for k, (name, per) in enumerate(summary.items()):
            xs = np.arange(len(tested)) + (k - (len(summary) - 1) / 2) * width
            ax.bar(
                xs,
                [per.get(c, (np.nan, 0))[0] for c in tested],
                width,
                yerr=[per.get(c, (0, 0))[1] for c in tested],
                capsize=2,
                color=colors[name],
                label=name,
            )
        ax.axhspan(0.5 - band, 0.5 + band, color="gray", alpha=0.2, label="95% chance band")
        ax.set_xticks(np.arange(len(tested)))
        ax.set_xticklabels([c.replace("_", "\n") for c in tested], fontsize=7)
        ax.set_ylabel("test balanced accuracy")
        ax.set_ylim(0.3, 1.0)
        ax.legend(fontsize=7, ncol=2)
    plot_learning(axes[-2], rows, colors)
    plot_loss(axes[-1], rows, colors)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def table(rows: list[dict[str, Any]], conditions: list[tuple[str, str]], counts: dict[str, int]) -> str:
    """Markdown: one row per model, one column per test condition (mean +/- s.d. over seeds)."""
    summary = summarise(rows, conditions)
    tested = [c for c, _ in conditions]
    lines = [f"| model | params | {' | '.join(tested)} |", "|---|---:|" + "---:|" * len(tested)]
    for name, per in summary.items():
        cells = [f"{per[c][0]:.3f} ± {per[c][1]:.3f}" if c in per else "-" for c in tested]
        lines.append(f"| {name} | {counts[name]:,} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.steps, args.val_every = 1, [4, 4], 2
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "steps": args.steps,
        "lr": args.lr,
        "seeds": args.seeds,
        "threads": args.threads,
        "pathtracker": PATHTRACKER,
        "featuretracker": FEATURETRACKER,
        "models": MODELS,
    }
    start = time.perf_counter()
    if "pathtracker" in args.claims:
        results["marker_shortcut"] = marker_shortcut(n=40 if args.quick else 300)
        print("start-goal marker distance as the only cue (ROC AUC, 0.5 = none):", flush=True)
        for r in results["marker_shortcut"]:
            print(
                f"  {r['frames']} frames x speed {r['speed']} ({r['path_points']} path points): AUC {r['auc']}, "
                f"mean distance positives {r['distance_positive']} px, negatives {r['distance_negative']} px",
                flush=True,
            )
    for claim in args.claims:
        names = CLAIMS[claim]
        counts = check_matched(names)
        t0 = time.perf_counter()
        dm = claim_data(claim, args.out / "data", args.quick)
        print(
            f"[{time.perf_counter() - start:6.0f} s] {claim}: data ready in {time.perf_counter() - t0:.0f} s "
            f"({dm.condition_names})",
            flush=True,
        )
        rows = []
        for seed in range(args.seeds):
            for name in names:
                row = run_arm(claim, name, seed, dm, args)
                rows.append(row)
                accuracy = {k: round(v, 3) for k, v in row["accuracy"].items()}
                print(
                    f"[{time.perf_counter() - start:6.0f} s] {claim} {name} seed {seed}: "
                    f"{row['train_seconds']:.0f} s, {accuracy}",
                    flush=True,
                )
        conditions = tested_conditions(dm)
        hp = dm.hparams
        steps = args.steps[list(CLAIMS).index(claim)]
        title = (
            f"{claim}: {steps} steps x {hp.batch_size} videos, lr {args.lr}, {args.seeds} seed(s), "
            f"{hp.n_train} training videos, {hp.frames} frames; trained on {dm.condition_names[0]}"
        )
        png = plot_claim(claim, rows, conditions, int(dm.hparams.n_test), args.figures / f"tracking_{claim}.png", title)
        text = table(rows, conditions, counts)
        results[claim + "_rows"] = rows
        results[claim + "_table"] = text
        print(f"\n{title}\n{text}\nfigure: {png}\n", flush=True)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    (args.out / "tracking_evidence.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"total {results['wall_seconds']:.0f} s; wrote {args.out / 'tracking_evidence.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
