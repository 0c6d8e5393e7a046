"""Does the demo's hGRU learn? The ``make demo`` Pathfinder training repeated over seeds.

    python benchmarks/pathfinder_demo_learning.py --seeds 0,1,2 --out runs/pf_demo_learning

Each seed is a full replicate of the demo: its own generated splits (data seed = seed), weights and batch
order, trained for the demo's step budget (:data:`shared.pathfinder.demo.DEMO_STEPS`) with the demo's
model and data settings (``DEMO_MODEL`` / ``DEMO_DATA``). Prints per-seed and mean +/- standard deviation
test accuracy against the target 0.80 and chance 0.5, and writes ``results.json`` and
``learning_curves.png`` (training loss and validation accuracy per seed).

Seeds are cached in ``<out>/seed<k>/result.json`` (reused only when model, data and steps are identical),
so seeds can run as separate processes, e.g. in parallel with ``--threads 1`` each, and a last call with
all seeds gathers them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.pathfinder.demo import DEMO_DATA, DEMO_MODEL, DEMO_STEPS, plot_learning_curves, train_demo_model
from shared.training import LearningCurve

TARGET = 0.80


def run_seed(out: Path, seed: int, *, model: dict[str, Any], data: dict[str, Any], steps: int) -> dict[str, Any]:
    """Train (or reload the cached result of) one seed; returns its row plus the learning curve."""
    cache = out / f"seed{seed}" / "result.json"
    settings = {"model": model, "data": data, "steps": steps, "seed": seed}
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached["settings"] == settings:
            return cached
    run = train_demo_model(out / f"seed{seed}", model=model, data=data, steps=steps, seed=seed)
    result = {
        "settings": settings,
        "row": run.row,
        "torch_threads": torch.get_num_threads(),
        "curve": {"train": run.curve.train, "val": run.curve.val},
    }
    if run.row["train_steps"] == steps:  # an interrupted run (e.g. SIGTERM) is reported but never cached
        cache.write_text(json.dumps(result, indent=1))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/pf_demo_learning"), help="output folder")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="optimiser steps per seed (default: the demo's)")
    p.add_argument("--data", default=None, help="JSON overrides of DEMO_DATA (e.g. tiny sizes for a smoke test)")
    p.add_argument("--model", default=None, help="JSON overrides of DEMO_MODEL's backbone_config")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        data = {**DEMO_DATA, **json.loads(args.data or "{}")}
        model = json.loads(json.dumps(DEMO_MODEL))
        model["backbone_config"].update(json.loads(args.model or "{}"))
    except ValueError as err:
        print(f"error: bad --seeds/--data/--model: {err}", file=sys.stderr)
        return 2
    if not seeds or args.steps < 1:
        print("error: need at least one seed and --steps >= 1", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {s: run_seed(args.out, s, model=model, data=data, steps=args.steps) for s in seeds}
    acc = np.array([r["row"]["test_acc"] for r in results.values()])
    curves = {}
    for s, r in results.items():
        curve = LearningCurve()
        curve.train, curve.val = r["curve"]["train"], r["curve"]["val"]
        curves[f"seed {s} (test {r['row']['test_acc']:.3f})"] = curve
    png = plot_learning_curves(
        curves,
        args.out / "learning_curves.png",
        title=f"demo hGRU on Pathfinder, {args.steps} steps, {len(seeds)} seeds: test "
        f"accuracy {acc.mean():.3f} +/- {acc.std(ddof=1) if len(acc) > 1 else 0:.3f}",
    )
    summary = {
        "seeds": seeds,
        "steps": args.steps,
        "model": model,
        "data": data,
        "target": TARGET,
        "test_acc": acc.tolist(),
        "mean": float(acc.mean()),
        "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "min": float(acc.min()),
        "rows": {s: r["row"] for s, r in results.items()},
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    for s, r in results.items():
        row = r["row"]
        print(
            f"seed {s}: test acc {row['test_acc']:.3f}, {row['train_steps']} steps in {row['train_seconds']:.0f} s "
            f"({row['train_steps'] / max(row['train_seconds'], 1e-9):.1f} steps/s, {r['torch_threads']} threads), "
            f"generation {row['generation_seconds']:.0f} s"
        )
    print(
        f"test accuracy over {len(seeds)} seeds: mean {summary['mean']:.3f} +/- {summary['std']:.3f} (sd), "
        f"min {summary['min']:.3f}; target {TARGET}, chance 0.5; mean/target ratio {summary['mean'] / TARGET:.2f}"
    )
    print(f"wrote {args.out / 'results.json'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
