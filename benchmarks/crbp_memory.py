"""Peak memory and time per training step of BPTT vs C-RBP on a 2D gamma-Net, as T grows.

Target (issue 2): C-RBP peak memory at T=64 within 1.2x of its T=4 peak, while BPTT grows about linearly
in T. One training step is forward + loss (+ the Lipschitz penalty for C-RBP, weight 10 as published for
Pathfinder) + backward + Adam step.

Memory is measured per configuration in a fresh child process, so allocator caching from one
configuration cannot hide another's peak:

* CPU: peak resident set size of the child (``resource.getrusage`` ``ru_maxrss``) after the training
  steps minus its resident set size just before the first one (torch, model and input already loaded;
  the glibc heap keeps freed pages, so the baseline must be taken before any step);
* CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the first step.

Both include the gradients and Adam state (constant in T, small for gamma-Net) besides the activations.

Usage::

    python benchmarks/crbp_memory.py                       # CPU, 64x64, T in 4 8 16 32 64
    python benchmarks/crbp_memory.py --device cuda --size 256 --batch 4
    python benchmarks/crbp_memory.py --timesteps 4 16 --size 64

Prints one row per (mode, T) and the ratios; ``--json PATH`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MODES = ("bptt", "crbp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to benchmark on")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (activations dominate memory)")
    p.add_argument("--batch", type=int, default=2, help="batch size")
    p.add_argument("--features", type=int, nargs="+", default=[16, 24, 32], help="gamma-Net channels per level")
    p.add_argument(
        "--neumann-rules",
        action="store_true",
        help="apply the C-RBP stopping rules (default: off, so every step pays all 15 Neumann "
        "iterations, the worst case; an untrained net would otherwise stop at once)",
    )
    p.add_argument("--timesteps", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="values of T")
    p.add_argument("--steps", type=int, default=1, help="timed training steps (after one warm-up step)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads in each child (more than free cores slows everything down)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    p.add_argument("--child", nargs=2, metavar=("MODE", "T"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.size < 16 or args.batch < 1 or args.steps < 1 or min(args.timesteps) < 1:
        p.error("--size must be >= 16 and --batch, --steps, --timesteps >= 1")
    return args


def _rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(args: argparse.Namespace, mode: str, timesteps: int) -> dict:
    """One configuration, in this (fresh) process: peak memory delta and mean time of a training step."""
    import warnings

    import torch
    import torch.nn.functional as F

    from shared.backbones import create

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    net = create(
        "gammanet2d",
        features=tuple(args.features),
        timesteps=timesteps,
        mode=mode,
        out_channels=1,
        neumann_stopping=args.neumann_rules,
    ).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 1, args.size, args.size, device=device)
    target = (torch.rand(args.batch, 1, args.size, args.size, device=device) > 0.5).float()

    def train_step() -> object:
        opt.zero_grad(set_to_none=False)
        out = net(x, return_steps=False)
        loss = F.binary_cross_entropy_with_logits(out, target)
        stats = net.last_stats
        if stats.penalty is not None:
            loss = loss + 10.0 * stats.penalty
        loss.backward()
        opt.step()
        return stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # untrained gamma-Nets are not yet contractive
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() / 2**20
        else:
            base = _rss_mb()
        train_step()  # warm-up (allocates gradients and optimiser state)
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            stats = train_step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _peak_rss_mb()) - base
    return {
        "mode": mode,
        "timesteps": timesteps,
        "peak_mb": round(peak, 1),
        "step_s": round(sum(times) / len(times), 3),
        "neumann_iterations": stats.neumann_iterations,
        "neumann_stop": stats.neumann_stop,
    }


def run_child(args: argparse.Namespace, mode: str, timesteps: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        str(timesteps),
        "--device",
        args.device,
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--features",
        *map(str, args.features),
    ]
    if args.neumann_rules:
        cmd.append("--neumann-rules")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} T={timesteps} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args, args.child[0], int(args.child[1]))))
        return 0
    ts = sorted(set(args.timesteps))
    print(
        f"gamma-Net 2D features={tuple(args.features)} image {args.size}x{args.size} batch {args.batch} "
        f"on {args.device}; {args.steps} timed training step(s) per config; memory = peak - before; "
        f"C-RBP stopping rules {'on' if args.neumann_rules else 'off (all 15 Neumann iterations)'}"
    )
    rows = []
    try:
        from tqdm import tqdm

        configs = tqdm([(m, t) for t in ts for m in MODES], desc="configs", file=sys.stderr)
    except ImportError:  # tqdm is a dependency; this keeps the script usable in a bare torch env
        configs = [(m, t) for t in ts for m in MODES]
    for mode, t in configs:
        rows.append(run_child(args, mode, t))
    by = {(r["mode"], r["timesteps"]): r for r in rows}
    print(
        f"\n{'T':>4} | {'BPTT peak MB':>12} | {'C-RBP peak MB':>13} | {'BPTT/C-RBP':>10} | "
        f"{'BPTT s/step':>11} | {'C-RBP s/step':>12} | Neumann iters (stop rule)"
    )
    for t in ts:
        b, c = by[("bptt", t)], by[("crbp", t)]
        ratio = b["peak_mb"] / c["peak_mb"]
        print(
            f"{t:>4} | {b['peak_mb']:>12.1f} | {c['peak_mb']:>13.1f} | {ratio:>10.2f} | "
            f"{b['step_s']:>11.3f} | {c['step_s']:>12.3f} | "
            f"{c['neumann_iterations']} ({c['neumann_stop']})"
        )
    lo, hi = ts[0], ts[-1]
    crbp_ratio = by[("crbp", hi)]["peak_mb"] / by[("crbp", lo)]["peak_mb"]
    bptt_ratio = by[("bptt", hi)]["peak_mb"] / by[("bptt", lo)]["peak_mb"]
    print(
        f"\nC-RBP peak(T={hi}) / peak(T={lo}) = {crbp_ratio:.2f}   (target <= 1.2: "
        f"{'met' if crbp_ratio <= 1.2 else 'NOT met'})"
    )
    print(f"BPTT  peak(T={hi}) / peak(T={lo}) = {bptt_ratio:.2f}   (linear growth would be {hi / lo:.0f})")
    print(
        f"BPTT / C-RBP peak at T={hi}: {by[('bptt', hi)]['peak_mb'] / by[('crbp', hi)]['peak_mb']:.1f}x; "
        f"time per step at T={hi}: BPTT {by[('bptt', hi)]['step_s']:.2f} s, "
        f"C-RBP {by[('crbp', hi)]['step_s']:.2f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
