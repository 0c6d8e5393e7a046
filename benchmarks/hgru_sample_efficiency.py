"""Sample efficiency on Pathfinder: hGRU vs a CNN with >= 3x its parameters, at equal training images.

The claim (Linsley et al., NeurIPS 2018): one hGRU layer learns contour integration from fewer examples
than feedforward CNNs with many more parameters. Here both models train on the same nested training sets
(``--sizes`` images) for the same number of optimiser steps and batch size, over ``--seeds`` seeds, and
are scored on one held-out test set. Stimulus and hGRU: the ``make demo`` setting
(:mod:`benchmarks.pathfinder_evidence`); CNN: the ResNet baseline of ``shared.pathfinder.experiment``.
The script refuses a CNN with fewer than ``--min-param-ratio`` x the hGRU's parameters.

Output (``--out``): ``sample_efficiency.json`` (every run and the per-size mean/spread) and
``sample_efficiency.png`` (test accuracy against training images, mean +/- s.d. over seeds, chance and
the test set's 95% chance band marked). The table is printed.

    python benchmarks/hgru_sample_efficiency.py --out runs/evidence               # 1k/3k/10k, 3 seeds
    python benchmarks/hgru_sample_efficiency.py --out /tmp/se --quick             # ~1 min smoke run

Equal steps means equal optimisation effort per model, not equal compute: an hGRU step costs several CNN
steps on a CPU (T recurrent steps at full resolution).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pathfinder_evidence import (
    accuracy_by_step,
    check_common_args,
    cnn_spec,
    demo_stimulus,
    hgru_spec,
    mean_spread,
    prepare_data,
    pyplot,
    train_steps,
    training_subset,
)

from shared.pathfinder.experiment import build_model
from shared.pathfinder.module import count_parameters

# BPTT without the Lipschitz penalty: the plain hGRU (the same arm as crbp_stability.py's BPTT)
HGRU_OVERRIDES = {"mode": "bptt", "lipschitz_penalty": False}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("runs/evidence"), help="output folder (data, runs, figure)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000], help="training images")
    p.add_argument(
        "--pool",
        type=int,
        default=None,
        help="training pool to take the nested sets from (default: the largest size); runs of "
        "one figure split over processes, e.g. --sizes 1000 --pool 10000, share the pool",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per model and size")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds are first-seed .. first-seed + seeds - 1 (to split one figure over processes)",
    )
    p.add_argument("--steps", type=int, default=300, help="optimiser steps per run (all models)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-test", type=int, default=1000, help="test images")
    p.add_argument("--contour-length", type=int, default=None, help="override the demo's contour length")
    p.add_argument("--image-size", type=int, default=None, help="override the demo's image size")
    p.add_argument(
        "--models",
        nargs="+",
        default=["hGRU", "CNN"],
        choices=["hGRU", "CNN"],
        help="models to run (the parameter check always compares both)",
    )
    p.add_argument(
        "--min-param-ratio",
        type=float,
        default=3.0,
        help="the CNN must have at least this many times the hGRU's parameters",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=2, help="data generation processes")
    p.add_argument("--quick", action="store_true", help="smoke run: sizes 100 300, 1 seed, 15 steps, 100 test images")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.seeds, args.steps, args.n_test = [100, 300], 1, 15, 100
    check_common_args(p, args)
    args.pool = args.pool or max(args.sizes)
    if min(args.sizes) < 2 or args.n_test < 2 or args.pool < max(args.sizes):
        p.error("--sizes and --n-test must be >= 2 and --pool >= the largest size")
    return args


def plot(summary: list[dict], png: Path, *, title: str, n_test: int) -> Path:
    """Test accuracy vs training images (log x), mean +/- s.d. over seeds per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for model, color, marker in (("hGRU", "tab:red", "o"), ("CNN", "tab:blue", "s")):
        rows = sorted((r for r in summary if r["model"] == model), key=lambda r: r["n_train"])
        if not rows:
            continue
        n = [r["n_train"] for r in rows]
        ax.errorbar(
            n,
            [r["acc_mean"] for r in rows],
            yerr=[r["acc_sd"] for r in rows],
            color=color,
            marker=marker,
            capsize=4,
            label=f"{rows[0]['label']} ({rows[0]['parameters']:,} params)",
        )
    band = 1.96 * 0.5 / np.sqrt(n_test)
    ax.axhspan(0.5 - band, 0.5 + band, color="gray", alpha=0.15, label=f"chance (95% band, {n_test} test)")
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel("test accuracy (mean ± s.d. over seeds)")
    ax.set_ylim(0.4, 1.0)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    stimulus = demo_stimulus()
    if args.contour_length is not None:
        stimulus["contour_length"] = args.contour_length
    if args.image_size is not None:
        stimulus["image_size"] = args.image_size
    specs = {"hGRU": hgru_spec(**HGRU_OVERRIDES), "CNN": cnn_spec()}
    params = {name: count_parameters(build_model(spec)) for name, spec in specs.items()}
    models = {name: specs[name] for name in args.models}
    if params["CNN"] < args.min_param_ratio * params["hGRU"]:
        print(
            f"hgru_sample_efficiency: the CNN has {params['CNN']:,} parameters, fewer than "
            f"{args.min_param_ratio}x the hGRU's {params['hGRU']:,}",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    data_root = args.out / "data" / "_".join(f"{k}{v}" for k, v in sorted(stimulus.items()))
    pool, test = prepare_data(data_root, stimulus, n_pool=args.pool, n_test=args.n_test, workers=args.workers)
    generation_s = time.perf_counter() - start
    runs = []
    for n in sorted(args.sizes, reverse=True):  # largest first: crbp_stability.py reuses those hGRU runs
        train_set = training_subset(pool, n)
        for name, spec in models.items():
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                model, row = train_steps(
                    spec, train_set, steps=args.steps, batch_size=args.batch_size, seed=seed, out=args.out
                )
                acc = float(accuracy_by_step(model, test)[-1])
                runs.append(
                    {
                        "model": name,
                        "label": spec.get("name", spec["backbone"]),
                        "n_train": n,
                        "seed": seed,
                        "test_acc": acc,
                        **{k: row[k] for k in ("parameters", "steps", "train_seconds", "cached", "key")},
                    }
                )
                print(
                    f"  {name:5s} n={n:6d} seed={seed} test_acc={acc:.3f} steps={row['steps']} "
                    f"train_s={row['train_seconds']}{' (cached)' if row['cached'] else ''}",
                    flush=True,
                )
    summary = []
    for name in models:
        for n in sorted(args.sizes):
            accs = [r["test_acc"] for r in runs if r["model"] == name and r["n_train"] == n]
            mean, sd = mean_spread(accs)
            first = next(r for r in runs if r["model"] == name)
            summary.append(
                {
                    "model": name,
                    "label": first["label"],
                    "parameters": first["parameters"],
                    "n_train": n,
                    "acc_mean": mean,
                    "acc_sd": sd,
                    "seeds": len(accs),
                }
            )
    args.out.mkdir(parents=True, exist_ok=True)
    size = stimulus["image_size"]
    title = (
        f"Pathfinder-{stimulus['contour_length']}, {size}x{size} px, {args.steps} steps x batch "
        f"{args.batch_size} per run, {args.seeds} seed(s), CPU {args.threads} thread(s)"
    )
    png = plot(summary, args.out / "sample_efficiency.png", title=title, n_test=args.n_test)
    (args.out / "sample_efficiency.json").write_text(
        json.dumps(
            {
                "stimulus": stimulus,
                "models": models,
                "parameters": params,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "n_test": args.n_test,
                "threads": args.threads,
                "generation_seconds": round(generation_s, 1),
                "summary": summary,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(
        f"\nPathfinder-{stimulus['contour_length']} {size}x{size}, {args.steps} steps, batch {args.batch_size}, "
        f"{args.n_test} test images; hGRU {params['hGRU']:,} params, CNN {params['CNN']:,} "
        f"({params['CNN'] / params['hGRU']:.1f}x)"
    )
    print("| training images | hGRU test acc | CNN test acc | hGRU - CNN |")
    print("|---:|---:|---:|---:|")
    for n in sorted(args.sizes):
        acc = {r["model"]: (r["acc_mean"], r["acc_sd"]) for r in summary if r["n_train"] == n}
        cells = [f"{acc[m][0]:.3f} ± {acc[m][1]:.3f}" if m in acc else "-" for m in ("hGRU", "CNN")]
        gap = f"{acc['hGRU'][0] - acc['CNN'][0]:+.3f}" if len(acc) == 2 else "-"
        print(f"| {n} | {cells[0]} | {cells[1]} | {gap} |")
    print(f"wrote {png} and {args.out / 'sample_efficiency.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
