"""Benchmark 2: peak memory of blockwise predict and segment does not grow with the volume.

Runs ``connectomics predict`` and ``connectomics segment`` (blockwise, same block shape, 2 worker threads) in
subprocesses on a simulated volume and on one 8x larger (2x per axis), reading each subprocess's peak RSS with
``/usr/bin/time``. Target: peak RSS on the larger volume within 1.3x of the smaller.

* ``predict`` runs an (untrained) U-Net 3D (features [8, 16]) on the simulated raw; its memory does not
  depend on the weights.
* ``segment`` runs on affinities made from the simulated ground truth, ``clip(0.8 same_object + 0.1 +
  0.15 noise)`` for the 12 default offsets, so it sees a realistic number of fragments and region-graph
  edges (an untrained model's affinities give a handful of fragments and would hide the graph's growth).

    .venv/bin/python benchmarks/connectomics_memory.py [--small 64,256,256] [--block 32,128,128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from connectomics_overhead import make_checkpoint

from connectomics.affinities import DEFAULT_OFFSETS, compute_affinities
from connectomics.blocks import Roi, block_grid, parse_coordinate
from connectomics.io import create_ome_zarr_array, open_volume
from connectomics.simulate import simulate_to_zarr

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mib(args: list[str]) -> tuple[float, str]:
    """Run ``python -m connectomics.cli ARGS``; return its peak resident set size in MiB and its stdout."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # /usr/bin/time (a small C program) forks the CLI: a fork straight from this Python process would
    # count this process's resident pages in the child's peak (Linux keeps the pre-exec high-water mark)
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        proc = subprocess.run(
            ["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name, sys.executable, "-m", "connectomics.cli", *args],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"connectomics {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
        return int(rss.read().split()[-1]) / 1024, proc.stdout


def write_noisy_affinities(
    labels_path: str, out_path: str, block: tuple[int, int, int], sigma: float = 0.15, seed: int = 0
) -> None:
    """Affinities ``clip(0.8 same_object + 0.1 + sigma N)`` of a label volume, written block by block.

    Each block reads its labels grown by the largest offset on the low side, so edges across block faces are
    those of the whole volume; the noise is drawn per block from ``(seed, block_id)``.
    """
    labels = open_volume(labels_path)
    shape = tuple(labels.data.shape)
    halo = tuple(max(-o[a] for o in DEFAULT_OFFSETS) for a in range(3))
    out = create_ome_zarr_array(
        out_path,
        shape=(len(DEFAULT_OFFSETS),) + shape,
        dtype="float32",
        chunks=(len(DEFAULT_OFFSETS),) + block,
        axes=("c", "z", "y", "x"),
        voxel_size=tuple(labels.voxel_size),
    )
    out.attrs["affinity_offsets"] = DEFAULT_OFFSETS
    for b in block_grid(Roi((0, 0, 0), shape), block, halo):
        lab = np.asarray(labels.data[b.read_roi.to_slices()].compute(scheduler="synchronous"))
        affs, _ = compute_affinities(lab, DEFAULT_OFFSETS)
        affs = affs[(slice(None),) + b.write_roi.to_slices(relative_to=b.read_roi)]
        noise = np.random.default_rng([seed, b.block_id]).standard_normal(affs.shape, np.float32)
        out[(slice(None),) + b.write_roi.to_slices()] = np.clip(0.8 * affs + 0.1 + sigma * noise, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", default="64,256,256")
    parser.add_argument("--block", default="32,128,128")
    parser.add_argument("--context", default="6,16,16", help="predict context")
    parser.add_argument(
        "--segment-options",
        default="",
        help="extra options of the segment step (default none: waterz's fragments unchanged, "
        "the CLI default; e.g. '--size-threshold 25 --merge-low 0.5' for zwatershed's "
        "size merge inside blocks)",
    )
    parser.add_argument("--steps", default="predict,segment", help="which steps to measure")
    args = parser.parse_args()
    small = parse_coordinate(args.small, name="--small")
    block = parse_coordinate(args.block, name="--block")
    block_text = ",".join(map(str, block))
    tmp = Path(tempfile.mkdtemp(prefix="connectomics_memory_"))
    ckpt = make_checkpoint(tmp / "model.ckpt")
    rows = {}
    for name, shape in (("small", small), ("8x larger", tuple(2 * s for s in small))):
        vol = tmp / f"{name.replace(' ', '_')}"
        simulate_to_zarr(f"{vol}.zarr", "sstem", shape, seed=1, chunks=block, workers=2, progress=False)
        pred = np.nan
        if "predict" in args.steps:
            pred, _ = peak_rss_mib(
                [
                    "predict",
                    str(ckpt),
                    f"{vol}.zarr/raw",
                    f"{vol}_pred.zarr/affs",
                    "--block",
                    block_text,
                    "--context",
                    args.context,
                    "--workers",
                    "2",
                    "--no-progress",
                ]
            )
        if "segment" not in args.steps:
            rows[name] = (shape, pred, np.nan)
            continue
        write_noisy_affinities(f"{vol}.zarr/labels", f"{vol}_affs.zarr/affs", block)
        seg, out = peak_rss_mib(
            [
                "segment",
                f"{vol}_affs.zarr/affs",
                f"{vol}_seg.zarr",
                "--block",
                block_text,
                "--context",
                "2,16,16",
                "--thresholds",
                "0.3,0.5,0.7",
                "--workers",
                "2",
                "--no-progress",
                *args.segment_options.split(),
            ]
        )
        summary = json.loads(out.strip().splitlines()[-1].partition("segment: ")[2])
        rows[name] = (shape, pred, seg)
        print(
            f"{name:>10} {shape}: peak RSS predict {pred:.0f} MiB, segment {seg:.0f} MiB "
            f"({summary['n_fragments']} fragments, {summary['n_edges']} region-graph edges)"
        )
    (_, p0, s0), (_, p1, s1) = rows.values()
    print(f"ratio 8x-larger / small: predict {p1 / p0:.3f}, segment {s1 / s0:.3f} (target <= 1.3)")


if __name__ == "__main__":
    main()
