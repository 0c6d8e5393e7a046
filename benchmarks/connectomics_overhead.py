"""Benchmark 1: pipeline overhead of blockwise prediction.

Ratio = wall time of ``predict_blockwise`` (read zarr, forward, sigmoid, encode, write zarr, done-markers,
manifest, dask scheduling) / wall time of the bare model forward over the same input tiles already in
memory. Target <= 1.25. Context costs (the read tiles are larger than the written blocks) are reported
separately, since they are a property of the model's receptive field, not of the pipeline.

    .venv/bin/python benchmarks/connectomics_overhead.py [--shape 32,256,256] [--block 16,128,128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from connectomics.blocks import Roi, block_grid, parse_coordinate
from connectomics.io import create_ome_zarr_array
from connectomics.predict import cached_model, forward_probabilities, predict_blockwise, to_model_input

MODEL_CONFIG = {"features": [8, 16], "downsample": [[1, 2, 2]], "kernel_size": [3, 3, 3], "norm": "none"}


def make_checkpoint(path: Path, seed: int = 0, config: dict | None = None) -> Path:
    """A Lightning-format checkpoint of an (untrained) U-Net affinity model with the 12 default offsets."""
    from connectomics.train import AffinityModel

    torch.manual_seed(seed)
    model = AffinityModel(backbone="unet3d", backbone_config=dict(config or MODEL_CONFIG))
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def make_raw(path: str, shape: tuple[int, int, int], chunks: tuple[int, int, int], seed: int = 0) -> None:
    """Smoothed-noise uint8 raw written chunk by chunk (memory bounded by one chunk)."""
    arr = create_ome_zarr_array(
        path, shape=shape, dtype="uint8", chunks=chunks, axes=("z", "y", "x"), voxel_size=(40.0, 4.0, 4.0)
    )
    rng = np.random.default_rng(seed)
    for block in block_grid(Roi((0, 0, 0), shape), chunks):
        noise = ndimage.gaussian_filter(rng.random(block.write_roi.shape, np.float32), 1.5)
        arr[block.write_roi.to_slices()] = (255 * (noise - noise.min()) / np.ptp(noise)).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="32,256,256")
    parser.add_argument("--block", default="16,128,128")
    parser.add_argument("--context", default="2,8,8")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    shape, block = parse_coordinate(args.shape, name="shape"), parse_coordinate(args.block, name="block")
    context = parse_coordinate(args.context, name="context")
    tmp = Path(tempfile.mkdtemp(prefix="connectomics_overhead_"))
    ckpt = make_checkpoint(tmp / "model.ckpt")
    make_raw(str(tmp / "vol.zarr/raw"), shape, block)
    loader = "connectomics.predict:load_affinity_model"
    model, device = cached_model(str(ckpt.resolve()), loader)  # loaded once, as a worker would

    blocks = block_grid(Roi((0, 0, 0), shape), block, context)
    raw = np.asarray(__import__("zarr").open_array(str(tmp / "vol.zarr"), path="raw/0", mode="r")[...])
    tiles = [to_model_input(raw[b.read_roi.to_slices()]) for b in blocks]
    forward_probabilities(model, device, tiles[0])  # warm-up
    bare, piped = [], {1: [], 2: []}
    for r in range(args.repeats):
        start = time.perf_counter()
        for tile in tiles:
            forward_probabilities(model, device, tile)
        bare.append(time.perf_counter() - start)
        for workers in piped:
            start = time.perf_counter()
            predict_blockwise(
                ckpt,
                str(tmp / "vol.zarr/raw"),
                str(tmp / f"out_{r}_{workers}.zarr/affs"),
                block_shape=block,
                context=context,
                workers=workers,
                progress=False,
            )
            piped[workers].append(time.perf_counter() - start)
    t_bare = min(bare)
    read_voxels = sum(b.read_roi.size for b in blocks)
    print(
        f"volume {shape}, {len(blocks)} blocks of {block}, context {context}, device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"bare forward over the same tiles: {t_bare:.2f} s ({read_voxels / t_bare:.3g} input voxels/s)")
    for workers, times in piped.items():
        print(
            f"predict_blockwise, {workers} dask thread(s): {min(times):.2f} s   "
            f"overhead ratio {min(times) / t_bare:.3f} (target <= 1.25)"
        )
    print(f"context cost (read voxels / written voxels): {read_voxels / int(np.prod(shape)):.3f}")


if __name__ == "__main__":
    main()
