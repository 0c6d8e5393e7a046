"""Blockwise segmentation: equality with the in-memory and whole-volume results, thresholds, dust, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from connectomics.affinities import NEAREST_OFFSETS, compute_affinities
from connectomics.io import create_ome_zarr_array, open_volume
from connectomics.metrics import adapted_rand_error
from connectomics.segment import (
    RegionGraph,
    agglomerate,
    boundary_map,
    cli,
    grow_along_affinities,
    segment_blockwise,
    segment_in_memory,
)

SHAPE = (16, 48, 48)
BLOCK = (8, 24, 24)
SEEDS = dict(seed_radius=2, min_seed_distance=1.0)  # cells here are ~13 voxels across


def cylinders(shape=SHAPE, seed=0) -> np.ndarray:
    """Touching convex cells (Voronoi in the plane) extruded along z and sheared, so they cross blocks."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, shape[1], size=(14, 2))
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    labels = np.zeros(shape, np.uint64)
    for z in range(shape[0]):
        dy = yy[None] - centres[:, 0, None, None] - 0.3 * z
        d = dy**2 + (xx[None] - centres[:, 1, None, None]) ** 2
        labels[z] = d.argmin(axis=0) + 1
    return labels


def noisy_affinities(labels: np.ndarray, sigma: float = 0.1, seed: int = 0) -> np.ndarray:
    affs, _ = compute_affinities(labels, NEAREST_OFFSETS)
    noise = np.random.default_rng(seed).normal(0, sigma, affs.shape)
    return np.clip(0.8 * affs + 0.1 + noise, 0, 1).astype(np.float32)


@pytest.fixture()
def volume(tmp_path: Path):
    gt = cylinders()
    affs = noisy_affinities(gt)
    arr = create_ome_zarr_array(tmp_path / "pred.zarr/affs", shape=affs.shape, dtype="float32",
                                chunks=(3, 8, 24, 24), axes=("c", "z", "y", "x"), voxel_size=(4.0, 4.0, 4.0))
    arr[...] = affs
    arr.attrs["affinity_offsets"] = NEAREST_OFFSETS
    return tmp_path, gt, affs


def read(path: Path) -> np.ndarray:
    return np.asarray(open_volume(str(path)).data.compute())


def test_blockwise_equals_in_memory_and_whole_volume(volume):
    tmp, gt, affs = volume
    summary = segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), thresholds=[0.3, 0.6],
                                block_shape=BLOCK, context=(2, 8, 8), progress=False, workers=2, **SEEDS)
    assert set(summary["segmentations"]) == {0.3, 0.6}
    in_memory = segment_in_memory(affs, NEAREST_OFFSETS, thresholds=[0.3, 0.6], block_shape=BLOCK,
                                  context=(2, 8, 8), sampling=(4.0, 4.0, 4.0), **SEEDS)
    whole = segment_in_memory(affs, NEAREST_OFFSETS, thresholds=[0.3], sampling=(4.0, 4.0, 4.0), **SEEDS)[0.3]
    blockwise = read(tmp / "seg.zarr/seg_0.3")
    assert blockwise.dtype == np.uint64
    np.testing.assert_array_equal(blockwise, in_memory[0.3])  # same algorithm, same ids
    # whole-volume (one block, no faces) vs blockwise: equal up to relabelling
    assert adapted_rand_error(blockwise, whole, seg_zero="label").error == 0.0
    assert adapted_rand_error(whole, blockwise, seg_zero="label").error == 0.0
    assert adapted_rand_error(blockwise, gt).error < 0.05
    # fragments are globally unique across blocks and more numerous than segments
    fragments = read(tmp / "seg.zarr/fragments")
    assert len(np.unique(fragments)) == summary["n_fragments"] > summary["n_segments"][0.3]
    # more merging at the higher threshold, and OME-Zarr multiscale metadata for viewers
    assert len(np.unique(read(tmp / "seg.zarr/seg_0.6"))) <= len(np.unique(blockwise))
    ome = zarr.open_group(str(tmp / "seg.zarr"), mode="r")["seg_0.3"].attrs["ome"]
    assert ome["multiscales"][0]["axes"][0]["name"] == "z"


def test_rerun_resumes_and_other_settings_are_refused(volume):
    tmp, gt, affs = volume
    kwargs = dict(thresholds=[0.5], block_shape=BLOCK, context=(2, 8, 8), progress=False, **SEEDS)
    segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), **kwargs)
    first = read(tmp / "seg.zarr/seg_0.5")
    markers = tmp / "seg.zarr.blockwise/seg_0.5_done"
    assert len(list(markers.iterdir())) == 2 * 2 * 2
    # a lost block (marker removed, data zeroed) is redone and nothing else changes
    (markers / "0").unlink()
    arr = zarr.open_array(str(tmp / "seg.zarr"), path="seg_0.5/0", mode="r+")
    arr[:8, :24, :24] = 0
    segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), **kwargs)
    np.testing.assert_array_equal(read(tmp / "seg.zarr/seg_0.5"), first)
    with pytest.raises(ValueError, match="refusing to resume"):
        segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), **(kwargs | {"min_size": 10}))


def test_dust_removal_and_cli(volume, capsys):
    tmp, gt, affs = volume
    args = ["--thresholds", "0.5", "--block", "8,24,24", "--context", "2,8,8", "--min-size", "400",
            "--seed-radius", "2", "--min-seed-distance", "1"]
    code = cli([str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), *args, "--no-progress"])
    assert code == 0 and "n_fragments" in capsys.readouterr().out
    seg = read(tmp / "seg.zarr/seg_0.5")
    ids, sizes = np.unique(seg[seg > 0], return_counts=True)
    assert sizes.min() >= 400
    code = cli([str(tmp / "pred.zarr/affs"), str(tmp / "mem.zarr"), *args, "--in-memory"])
    assert code == 0
    np.testing.assert_array_equal(read(tmp / "mem.zarr/seg_0.5"), seg)
    assert cli([str(tmp / "missing.zarr/affs"), str(tmp / "x.zarr")]) == 1


def test_agglomeration_hand_computed():
    # fragments 1-2 strongly linked (mean 0.9), 2-3 weakly (0.35), 1-3 (0.5, two pairs)
    graph = RegionGraph(u=np.array([1, 2, 1], np.uint64), v=np.array([2, 3, 3], np.uint64),
                        affinity_sum=np.array([1.8, 0.35, 1.0]), count=np.array([2, 1, 2]),
                        fragments=np.array([1, 2, 3], np.uint64), sizes=np.array([5, 3, 1]))
    luts = agglomerate(graph, [0.05, 0.2, 0.6], min_size=2)
    assert luts[0.05].tolist() == [1, 2, 0]  # no merge; fragment 3 (size 1) is dust
    assert luts[0.2].tolist() == [1, 1, 0]  # {1,2}; then the pooled edge {1,2}-3 has mean (0.35+1)/3 = 0.45
    assert luts[0.6].tolist() == [1, 1, 1]  # score 0.55 < 0.6 merges all


def test_boundary_and_growth_follow_the_edges():
    labels = np.zeros((1, 1, 6), np.int64)
    affs = np.ones((3, 1, 1, 6), np.float32)
    affs[2, 0, 0, 3] = 0.0  # cut between voxels 2 and 3
    assert boundary_map(affs)[0, 0].tolist() == [0, 0, 1, 1, 0, 0]
    labels[0, 0, 0], labels[0, 0, 5] = 1, 2
    assert grow_along_affinities(labels, affs)[0, 0].tolist() == [1, 1, 1, 2, 2, 2]
