"""Stable dynamics past the trained T: hGRU trained at T = 6 with C-RBP, BPTT and C-BPTT, tested at T = 1..40.

The claim (Linsley*, Ashok*, Govindarajan* et al., NeurIPS 2020): a recurrent circuit trained with C-RBP
(recurrent back-propagation at a fixed point + the Lipschitz coefficient penalty) keeps its accuracy when
run for more steps than it was trained for, while BPTT-trained circuits decay (their COCO table: BPTT-5
falls from 41.5 to 32.4 PQ at step 30, C-RBP-20 holds 41.6). Arms, each trained at ``--train-t`` steps for
the same optimiser steps on the same images:

* ``C-RBP``: ``mode="crbp"``, penalty on (lambda 0.9, weight 10, as published for Pathfinder);
* ``BPTT``: ``mode="bptt"``, no penalty (the plain hGRU of ``hgru_sample_efficiency.py``, shared cache);
* ``C-BPTT``: ``mode="bptt"`` with ``lipschitz_penalty=True`` (needs a backbone that reports the penalty
  outside C-RBP mode; the arm is skipped with a message otherwise).

Each trained model is run for ``max(--test-t)`` steps on the test set with the readout applied after every
step (= running it for t steps), giving accuracy against test-time T. The mechanism is measured on the
same models: the relative state change ``||h_t - h_{t-1}|| / ||h_t||`` per step and the spectral radius of
the step's Jacobian ``dF/dh`` (power iteration) at the trained T and at the last T. Contraction (radius < 1,
shrinking state change) is what lets a circuit settle; growth is what makes it drift.

Output (``--out``): ``crbp_stability.json`` and ``crbp_stability.png`` (accuracy vs test T, mean +/- s.d.
over seeds; state change per step; spectral radius). The table is printed.

    python benchmarks/crbp_stability.py --out runs/evidence                 # 3 arms x 3 seeds
    python benchmarks/crbp_stability.py --out /tmp/stab --quick             # ~1 min smoke run
"""

from __future__ import annotations

import argparse
import hashlib
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
    demo_stimulus,
    hgru_spec,
    mean_spread,
    penalty_is_reported,
    prepare_data,
    pyplot,
    state_dynamics,
    train_steps,
    training_subset,
)

# BPTT last: with the same --out its runs are usually cached by hgru_sample_efficiency.py already
ARMS: dict[str, dict] = {
    "C-RBP": {"mode": "crbp", "lipschitz_penalty": True, "penalty_lambda": 0.9},
    "C-BPTT": {"mode": "bptt", "lipschitz_penalty": True, "penalty_lambda": 0.9},
    "BPTT": {"mode": "bptt", "lipschitz_penalty": False},
}
COLORS = {"C-RBP": "tab:green", "BPTT": "tab:red", "C-BPTT": "tab:purple"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("runs/evidence"), help="output folder (data, runs, figure)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="training modes")
    p.add_argument("--n-train", type=int, default=10000, help="training images")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds are first-seed .. first-seed + seeds - 1 (to split one figure over processes)",
    )
    p.add_argument("--steps", type=int, default=300, help="optimiser steps per run (all arms)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-test", type=int, default=1000, help="test images")
    p.add_argument("--train-t", type=int, default=6, help="timesteps while training (published code: 6)")
    p.add_argument("--test-t", type=int, nargs="+", default=[6, 12, 24, 40], help="test-time T to tabulate")
    p.add_argument("--probe-images", type=int, default=32, help="test images for the dynamics probe")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=2, help="data generation processes")
    p.add_argument(
        "--no-train",
        action="store_true",
        help="only gather cached runs (skip the others): the last call of a figure split over processes",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 200 training images, 1 seed, 10 steps, 100 test images, test T 6 12",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.seeds, args.steps, args.n_test, args.test_t = 200, 1, 10, 100, [6, 12]
        args.probe_images = 8
    check_common_args(p, args)
    if args.n_train < 2 or args.n_test < 2 or args.train_t < 1 or min(args.test_t) < 1 or args.probe_images < 1:
        p.error("--n-train, --n-test must be >= 2 and --train-t, --test-t, --probe-images >= 1")
    return args


def plot(
    curves: dict[str, np.ndarray], dynamics: dict[str, list[dict]], png: Path, *, train_t: int, title: str, n_test: int
) -> Path:
    """Three panels: accuracy vs test T, relative state change per step, Jacobian spectral radius."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    band = 1.96 * 0.5 / np.sqrt(n_test)
    for arm, acc in curves.items():  # acc: (seeds, T)
        t = np.arange(1, acc.shape[1] + 1)
        mean, sd = acc.mean(axis=0), acc.std(axis=0, ddof=1) if acc.shape[0] > 1 else np.zeros(acc.shape[1])
        axes[0].plot(t, mean, color=COLORS[arm], label=arm)
        axes[0].fill_between(t, mean - sd, mean + sd, color=COLORS[arm], alpha=0.2)
        residual = np.array([d["residual"] for d in dynamics[arm]])
        axes[1].plot(t, residual.mean(axis=0), color=COLORS[arm], label=arm)
    axes[0].axhspan(0.5 - band, 0.5 + band, color="gray", alpha=0.15, label="chance (95% band)")
    axes[0].set_ylim(0.4, 1.0)
    axes[0].set_xlabel("test-time steps T")
    axes[0].set_ylabel("test accuracy (mean ± s.d. over seeds)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step t")
    axes[1].set_ylabel("||h_t - h_{t-1}|| / ||h_t|| (mean over seeds)")
    for ax in axes[:2]:
        ax.axvline(train_t, color="black", ls=":", lw=1, label=f"trained T = {train_t}")
        ax.legend(fontsize=8)
    arms = list(dynamics)
    probes = sorted({s for d in dynamics[arms[0]] for s in d["spectral_radius"]}) if arms else []
    width = 0.8 / max(len(probes), 1)
    for j, step in enumerate(probes):
        for i, arm in enumerate(arms):
            values = [d["spectral_radius"][step] for d in dynamics[arm]]
            axes[2].bar(
                i + (j - (len(probes) - 1) / 2) * width,
                np.mean(values),
                width,
                yerr=np.std(values, ddof=1) if len(values) > 1 else 0,
                color=COLORS[arm],
                alpha=0.5 + 0.5 * j / max(len(probes) - 1, 1),
                capsize=3,
            )
            axes[2].scatter([i + (j - (len(probes) - 1) / 2) * width] * len(values), values, color="black", s=8)
    axes[2].axhline(1.0, color="black", ls="--", lw=1)
    axes[2].set_xticks(range(len(arms)), arms)
    axes[2].set_ylabel("spectral radius of dF/dh (bars: " + ", ".join(f"t={s}" for s in probes) + ")")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def evaluate(model, key: str, test, probe: torch.Tensor, args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    """Accuracy at every test T and the state dynamics of one trained run, cached next to its weights."""
    max_t = max(max(args.test_t), args.train_t)
    settings = {"n_test": len(test), "max_t": max_t, "probe_images": len(probe), "train_t": args.train_t}
    tag = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    cache = args.out / "runs" / f"{key}.stability-{tag}.json"
    if cache.exists():
        stored = json.loads(cache.read_text())
        dyn = {
            **stored["dynamics"],
            "spectral_radius": {int(k): v for k, v in stored["dynamics"]["spectral_radius"].items()},
        }
        return np.asarray(stored["accuracy_by_t"]), dyn
    acc = accuracy_by_step(model, test, max_t)
    dyn = state_dynamics(model, probe, max_t, probe_steps=(args.train_t, max_t))
    cache.write_text(json.dumps({"settings": settings, "accuracy_by_t": acc.tolist(), "dynamics": dyn}))
    return acc, dyn


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    stimulus = demo_stimulus()
    size = stimulus["image_size"]
    arms = {}
    for arm in args.arms:
        spec = hgru_spec(**ARMS[arm], timesteps=args.train_t)
        if ARMS[arm]["lipschitz_penalty"] and not penalty_is_reported(spec, size):
            print(
                f"  skipping {arm}: this build's hGRU does not compute the Lipschitz penalty in "
                f"mode={ARMS[arm]['mode']!r}",
                flush=True,
            )
            continue
        arms[arm] = spec
    if not arms:
        print("crbp_stability: no arm can be trained in this build", file=sys.stderr)
        return 2
    start = time.perf_counter()
    data_root = args.out / "data" / "_".join(f"{k}{v}" for k, v in sorted(stimulus.items()))
    pool, test = prepare_data(data_root, stimulus, n_pool=args.n_train, n_test=args.n_test, workers=args.workers)
    generation_s = time.perf_counter() - start
    train_set = training_subset(pool, args.n_train)
    max_t = max(max(args.test_t), args.train_t)
    probe = test.images[: args.probe_images]
    curves: dict[str, np.ndarray] = {}
    dynamics: dict[str, list[dict]] = {}
    runs = []
    for arm, spec in arms.items():
        accs, dyns = [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            try:
                model, row = train_steps(
                    spec,
                    train_set,
                    steps=args.steps,
                    batch_size=args.batch_size,
                    seed=seed,
                    out=args.out,
                    train=not args.no_train,
                )
            except LookupError as err:
                print(f"  {arm:6s} seed={seed} skipped: {err}", flush=True)
                continue
            acc, dyn = evaluate(model, row["key"], test, probe, args)
            accs.append(acc)
            dyns.append(dyn)
            runs.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "accuracy_by_t": acc.tolist(),
                    **dyn,
                    **{k: row[k] for k in ("parameters", "steps", "train_seconds", "cached", "key")},
                }
            )
            print(
                f"  {arm:6s} seed={seed} "
                + " ".join(f"T{t}={acc[t - 1]:.3f}" for t in args.test_t)
                + f" rho(T{args.train_t})={dyn['spectral_radius'][args.train_t]:.2f}"
                + f" rho(T{max_t})={dyn['spectral_radius'][max_t]:.2f} train_s={row['train_seconds']}"
                + (" (cached)" if row["cached"] else ""),
                flush=True,
            )
        if accs:
            curves[arm], dynamics[arm] = np.stack(accs), dyns
    if not curves:
        print("crbp_stability: no run to report", file=sys.stderr)
        return 2
    summary = []
    for arm in curves:
        entry = {"arm": arm, "seeds": int(curves[arm].shape[0])}
        for t in args.test_t:
            entry[f"acc_T{t}"] = mean_spread(curves[arm][:, t - 1])
        for step in (args.train_t, max_t):
            entry[f"rho_t{step}"] = mean_spread([d["spectral_radius"][step] for d in dynamics[arm]])
            entry[f"residual_t{step}"] = mean_spread([d["residual"][step - 1] for d in dynamics[arm]])
        summary.append(entry)
    args.out.mkdir(parents=True, exist_ok=True)
    title = (
        f"hGRU trained at T={args.train_t} on Pathfinder-{stimulus['contour_length']} {size}x{size} px, "
        f"{args.n_train} images, {args.steps} steps x batch {args.batch_size}, {args.seeds} seed(s), "
        f"{args.n_test} test images"
    )
    png = plot(curves, dynamics, args.out / "crbp_stability.png", train_t=args.train_t, title=title, n_test=args.n_test)
    (args.out / "crbp_stability.json").write_text(
        json.dumps(
            {
                "stimulus": stimulus,
                "arms": arms,
                "n_train": args.n_train,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "n_test": args.n_test,
                "train_t": args.train_t,
                "test_t": args.test_t,
                "threads": args.threads,
                "generation_seconds": round(generation_s, 1),
                "summary": summary,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"\n{title}; mean ± s.d. over seeds")
    heads = [f"acc T={t}" for t in args.test_t] + [
        f"rho(J) t={args.train_t}",
        f"rho(J) t={max_t}",
        f"dh/h t={args.train_t}",
        f"dh/h t={max_t}",
    ]
    print("| arm | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(heads))
    for entry in summary:
        cells = [entry[f"acc_T{t}"] for t in args.test_t] + [entry[f"rho_t{args.train_t}"], entry[f"rho_t{max_t}"]]
        text = [f"{m:.3f} ± {s:.3f}" for m, s in cells]
        text += [f"{entry[f'residual_t{s}'][0]:.2e}" for s in (args.train_t, max_t)]
        print(f"| {entry['arm']} ({entry['seeds']} seeds) | " + " | ".join(text) + " |")
    print(f"wrote {png} and {args.out / 'crbp_stability.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
