"""Benchmark 2: peak memory of blockwise predict and segment does not grow with the volume.

Runs ``connectomics predict`` and ``connectomics segment`` (blockwise, same block shape) in subprocesses on
a volume and on one 8x larger (2x per axis), reading each subprocess's peak RSS with ``os.wait4``.
Target: peak RSS on the larger volume within 1.3x of the smaller. The default block makes the smaller volume
8 blocks, so both runs keep the same number of blocks in flight (2 worker threads).

    .venv/bin/python benchmarks/connectomics_memory.py [--small 16,128,128] [--block 8,64,64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from connectomics_overhead import make_checkpoint, make_raw

from connectomics.blocks import parse_coordinate

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mib(args: list[str]) -> float:
    """Run ``python -m connectomics.cli ARGS`` and return its peak resident set size in MiB."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # /usr/bin/time (a small C program) forks the CLI: a fork straight from this Python process would
    # count this process's resident pages in the child's peak (Linux keeps the pre-exec high-water mark)
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        code = subprocess.call(["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name, sys.executable, "-m",
                                "connectomics.cli", *args], env=env, stdout=subprocess.DEVNULL)
        if code != 0:
            raise RuntimeError(f"connectomics {' '.join(args)} failed")
        return int(rss.read().split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", default="16,128,128")
    parser.add_argument("--block", default="8,64,64")
    args = parser.parse_args()
    small = parse_coordinate(args.small, name="--small")
    block = ",".join(str(b) for b in parse_coordinate(args.block, name="--block"))
    tmp = Path(tempfile.mkdtemp(prefix="connectomics_memory_"))
    ckpt = make_checkpoint(tmp / "model.ckpt", config={"features": [4], "kernel_size": [3, 3, 3],
                                                       "norm": "none"})
    rows = {}
    for name, shape in (("small", small), ("8x larger", tuple(2 * s for s in small))):
        make_raw(str(tmp / f"{name}.zarr/raw"), shape, parse_coordinate(args.block, name="--block"))
        pred = peak_rss_mib(["predict", str(ckpt), str(tmp / f"{name}.zarr/raw"), str(tmp / f"{name}_p.zarr/affs"),
                             "--block", block, "--context", "2,8,8", "--workers", "2", "--no-progress"])
        seg = peak_rss_mib(["segment", str(tmp / f"{name}_p.zarr/affs"), str(tmp / f"{name}_s.zarr"), "--block",
                            block, "--context", "2,8,8", "--workers", "2", "--no-progress"])
        rows[name] = (shape, pred, seg)
        print(f"{name:>10} {shape}: peak RSS predict {pred:.0f} MiB, segment {seg:.0f} MiB")
    (_, p0, s0), (_, p1, s1) = rows.values()
    print(f"ratio 8x-larger / small: predict {p1 / p0:.3f}, segment {s1 / s0:.3f} (target <= 1.3)")


if __name__ == "__main__":
    main()
