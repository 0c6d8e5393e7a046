"""Segmentation: edge watershed, compiled agglomeration against a brute-force reference, nesting across
thresholds, blockwise = in-memory = whole volume, dust, resume."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from skimage.measure import label as connected_components
from skimage.segmentation import watershed

from connectomics.affinities import NEAREST_OFFSETS, compute_affinities, noisy_affinities
from connectomics.blocks import Roi, block_grid
from connectomics.hashtable import delete_slot, find_slot
from connectomics.io import create_ome_zarr_array, open_volume
from connectomics.metrics import adapted_rand_error
from connectomics.morphology import MORPHOLOGIES, neuron_labels
from connectomics.segment import (
    RegionGraph,
    SegmentSettings,
    agglomerate,
    boundary_map,
    cli,
    edge_watershed,
    merge_small_fragments,
    relabel,
    segment_blockwise,
    segment_in_memory,
    waterz_fragments,
)
from connectomics.segment.agglomeration import merge_regions
from connectomics.segment.hierarchy import BlockHierarchy, grid_shape, segment_luts
from connectomics.segment.region_graph import block_region_graph
from connectomics.segment.watershed import block_fragments, nearest_neighbour_channels
from shared.cli import run_guarded
from shared.jobs import JobConfigError, JobLockedError
from shared.stdio import quiet_stdout

SHAPE = (16, 48, 48)
BLOCK = (8, 24, 24)
SEEDED = dict(fragments="seeded", seed_radius=2, min_seed_distance=1.0)  # cells here are ~13 voxels across
SIZE_MERGE = dict(size_threshold=30, merge_low=0.5)


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


def cylinder_affinities(labels: np.ndarray, sigma: float = 0.1, seed: int = 0) -> np.ndarray:
    affs, _ = compute_affinities(labels, NEAREST_OFFSETS)
    noise = np.random.default_rng(seed).normal(0, sigma, affs.shape)
    return np.clip(0.8 * affs + 0.1 + noise, 0, 1).astype(np.float32)


@pytest.fixture()
def volume(tmp_path: Path):
    gt = cylinders()
    affs = cylinder_affinities(gt)
    arr = create_ome_zarr_array(
        tmp_path / "pred.zarr/affs",
        shape=affs.shape,
        dtype="float32",
        chunks=(3, 8, 24, 24),
        axes=("c", "z", "y", "x"),
        voxel_size=(4.0, 4.0, 4.0),
    )
    arr[...] = affs
    arr.attrs["affinity_offsets"] = NEAREST_OFFSETS
    return tmp_path, gt, affs


def read(path: Path) -> np.ndarray:
    return np.asarray(open_volume(str(path)).data.compute())


def run_cli(argv: list[str]) -> int:
    """``connectomics segment ARGV`` as the console command runs it (user errors: one line, exit code 2)."""
    return run_guarded("connectomics segment", cli, argv)


@pytest.mark.parametrize("method", [{}, SEEDED], ids=["waterz", "seeded"])
def test_blockwise_equals_in_memory_and_whole_volume(volume, method):
    tmp, gt, affs = volume
    summary = segment_blockwise(
        str(tmp / "pred.zarr/affs"),
        str(tmp / "seg.zarr"),
        thresholds=[0.3, 0.6],
        block_shape=BLOCK,
        context=(2, 8, 8),
        progress=False,
        workers=2,
        **method,
    )
    assert set(summary["segmentations"]) == {0.3, 0.6}
    in_memory = segment_in_memory(
        affs,
        NEAREST_OFFSETS,
        thresholds=[0.3, 0.6],
        block_shape=BLOCK,
        context=(2, 8, 8),
        sampling=(4.0, 4.0, 4.0),
        **method,
    )
    whole = segment_in_memory(
        affs, NEAREST_OFFSETS, thresholds=[0.3], block_shape=SHAPE, context=0, sampling=(4.0, 4.0, 4.0), **method
    )[0.3]
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
    kwargs = dict(thresholds=[0.5], block_shape=BLOCK, context=(2, 8, 8), progress=False)
    segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), **kwargs)
    first = read(tmp / "seg.zarr/seg_0.5")
    markers = tmp / "seg.zarr/fragments/0/.job/done"
    assert len(list(markers.glob("seg_0.5-*"))) == 2 * 2 * 2
    assert not list(tmp.glob("*.blockwise"))  # nothing beside the container
    # a lost block (marker removed, data zeroed) is redone and nothing else changes
    (markers / "seg_0.5-0").unlink()
    arr = zarr.open_array(str(tmp / "seg.zarr"), path="seg_0.5/0", mode="r+")
    arr[:8, :24, :24] = 0
    segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), **kwargs)
    np.testing.assert_array_equal(read(tmp / "seg.zarr/seg_0.5"), first)
    for other, named in (
        ({"min_size": 10}, "min_size: 0 -> 10"),
        ({"score": "quantile-50"}, "score: 'mean'"),
        ({"fragments": "seeded"}, "fragments: 'waterz' -> 'seeded'"),
    ):
        with pytest.raises(JobConfigError, match=named):
            segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), **(kwargs | other))
    manifest = json.loads((tmp / "seg.zarr/fragments/0/.job/manifest.json").read_text())
    settings = SegmentSettings(thresholds=[0.5], block_shape=BLOCK, context=(2, 8, 8))
    assert manifest["command"] == "connectomics segment"
    assert {k: manifest["config"][k] for k in settings.to_manifest()} == settings.to_manifest()
    assert manifest["config"]["score"] == "mean" and manifest["config"]["fragments"] == "waterz"


def test_dust_removal_and_cli(volume, capsys):
    tmp, gt, affs = volume
    args = [
        "--thresholds",
        "0.5",
        "--block",
        "8,24,24",
        "--context",
        "2,8,8",
        "--min-size",
        "400",
        "--score",
        "quantile-50",
    ]
    code = cli([str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), *args, "--no-progress"])
    assert code == 0 and "n_fragments" in capsys.readouterr().out
    seg = read(tmp / "seg.zarr/seg_0.5")
    ids, sizes = np.unique(seg[seg > 0], return_counts=True)
    assert sizes.min() >= 400
    code = cli([str(tmp / "pred.zarr/affs"), str(tmp / "mem.zarr"), *args, "--in-memory"])
    assert code == 0
    np.testing.assert_array_equal(read(tmp / "mem.zarr/seg_0.5"), seg)
    assert run_cli([str(tmp / "missing.zarr/affs"), str(tmp / "x.zarr")]) == 2
    assert run_cli([str(tmp / "pred.zarr/affs"), str(tmp / "y.zarr"), "--score", "median"]) == 2
    assert "quantile-Q" in capsys.readouterr().err


def test_edge_table_matches_a_dict_under_inserts_and_deletes():
    # the merge loop's linear-probing table with backward-shift deletion, on tiny tables where probe runs
    # collide and wrap around the end
    rng = np.random.default_rng(1)
    for _ in range(100):
        bits = int(rng.integers(2, 6))
        keys, slots, reference = np.full(1 << bits, -1, np.int64), np.empty(1 << bits, np.int64), {}
        for step, key in enumerate(rng.integers(0, 40, 150).tolist()):
            h = find_slot(keys, key, bits)
            if key in reference:
                assert (keys[h], slots[h]) == (key, reference[key])
                if rng.random() < 0.6:
                    delete_slot(keys, slots, h, bits)
                    del reference[key]
            elif len(reference) < (1 << bits) - 1:
                assert keys[h] == -1
                keys[h], slots[h], reference[key] = key, step, step
            assert {int(k): int(v) for k, v in zip(keys, slots) if k >= 0} == reference


def test_agglomeration_hand_computed():
    # fragments 1-2 strongly linked (mean 0.9), 2-3 weakly (0.35), 1-3 (0.5, two pairs)
    graph = RegionGraph(
        u=np.array([1, 2, 1], np.uint64),
        v=np.array([2, 3, 3], np.uint64),
        affinity_sum=np.array([1.8, 0.35, 1.0]),
        count=np.array([2, 1, 2]),
        fragments=np.array([1, 2, 3], np.uint64),
        sizes=np.array([5, 3, 1]),
    )
    luts = agglomerate(graph, thresholds=[0.05, 0.2, 0.6], min_size=2)
    assert luts[0.05].tolist() == [1, 2, 0]  # no merge; fragment 3 (size 1) is dust
    assert luts[0.2].tolist() == [1, 1, 0]  # {1,2}; then the pooled edge {1,2}-3 has mean (0.35+1)/3 = 0.45
    assert luts[0.6].tolist() == [1, 1, 1]  # score 0.55 < 0.6 merges all


def test_edge_watershed_keeps_cut_voxels_where_the_node_watershed_fails():
    # row 1: A = columns 0..4, B = 5..9 (cut between 4 and 5); row 0: C above A's columns 3..4, so A's
    # voxel (1, 3) also touches a cut and A's last voxels sit on the boundary plateau like B's first ones
    gt = np.array([[1, 1, 1, 3, 3, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]])[None]
    affs = np.ones((3,) + gt.shape, np.float32)
    affs[1, :, 1:] = gt[:, 1:] == gt[:, :-1]
    affs[2, :, :, 1:] = gt[:, :, 1:] == gt[:, :, :-1]
    seeds = np.zeros(gt.shape, np.int64)
    seeds[0, 1, 0], seeds[0, 1, 6], seeds[0, 0, 3] = 1, 2, 3
    boundary = boundary_map(affs)
    assert boundary[0, 1].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    node = watershed(boundary, seeds)  # both sides of the cut look alike: B floods A's voxel (1, 4)
    assert node[0, 1, 4] == 2
    np.testing.assert_array_equal(edge_watershed(seeds, affs), gt)
    assert seeds[0, 1, 4] == 0  # the input is not modified


def test_edge_watershed_follows_maximin_paths():
    rng = np.random.default_rng(3)
    affs = rng.integers(0, 256, size=(3, 3, 4, 5)).astype(np.float32) / 255  # distinct levels matter
    seeds = np.zeros((3, 4, 5), np.int64)
    seeds[0, 0, 0], seeds[2, 3, 4], seeds[1, 2, 0] = 1, 2, 3
    labels = edge_watershed(seeds, affs)
    # reference: each voxel takes the seed with the widest (maximin) path, by Floyd-Warshall on bottlenecks
    shape, n = seeds.shape, seeds.size
    width = np.full((n, n), -1.0)
    np.fill_diagonal(width, 2.0)
    for axis in range(3):
        for v in np.ndindex(shape):
            if v[axis] > 0:
                w = list(v)
                w[axis] -= 1
                i, j = np.ravel_multi_index(v, shape), np.ravel_multi_index(tuple(w), shape)
                width[i, j] = width[j, i] = affs[(axis,) + v]
    for k in range(n):
        width = np.maximum(width, np.minimum(width[:, k, None], width[None, k, :]))
    seed_index = np.flatnonzero(seeds.ravel())
    best = width[:, seed_index].max(axis=1)
    for v in range(n):
        reachable = seeds.ravel()[seed_index[width[v, seed_index] == best[v]]]
        assert labels.ravel()[v] in reachable  # ties between seeds may go either way


def reference_agglomeration(graph: RegionGraph, threshold: float) -> list[int]:
    """Brute force: repeatedly merge the pair of segments with the lowest pooled score below threshold."""
    index = {int(f): i for i, f in enumerate(graph.fragments)}
    segment = list(range(len(graph.fragments)))
    while True:
        pooled: dict[tuple[int, int], list[float]] = {}
        for u, v, s, c in zip(graph.u, graph.v, graph.affinity_sum, graph.count):
            a, b = segment[index[int(u)]], segment[index[int(v)]]
            if a != b:
                stats = pooled.setdefault((min(a, b), max(a, b)), [0.0, 0])
                stats[0] += s
                stats[1] += c
        if not pooled:
            break
        (a, b), (s, c) = min(pooled.items(), key=lambda item: 1 - item[1][0] / item[1][1])
        if 1 - s / c >= threshold:
            break
        segment = [a if x == b else x for x in segment]
    return segment


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_agglomeration_equals_brute_force_and_nests(seed):
    rng = np.random.default_rng(seed)
    n = 12
    u, v = np.triu_indices(n, 1)
    keep = rng.random(len(u)) < 0.4
    count = rng.integers(1, 5, keep.sum())
    graph = RegionGraph(
        u=(u[keep] * 10 + 10).astype(np.uint64),
        v=(v[keep] * 10 + 10).astype(np.uint64),
        affinity_sum=rng.random(keep.sum()) * count,
        count=count,
        fragments=(np.arange(n) * 10 + 10).astype(np.uint64),
        sizes=rng.integers(1, 9, n),
    )
    thresholds = [0.2, 0.4, 0.6, 0.8, 1.0]
    luts = agglomerate(graph, thresholds=thresholds)
    for t in thresholds:
        reference = np.array(reference_agglomeration(graph, t))
        same_ref = reference[:, None] == reference[None, :]
        same_ours = luts[t][:, None] == luts[t][None, :]
        np.testing.assert_array_equal(same_ours, same_ref)  # the same partition
    assert len(np.unique(luts[0.2])) > len(np.unique(luts[1.0]))
    for low, high in zip(thresholds, thresholds[1:]):  # nested: a segment never splits at a higher threshold
        for segment in np.unique(luts[low]):
            assert len(np.unique(luts[high][luts[low] == segment])) == 1


@pytest.mark.parametrize("spread", [1, 10**12])  # dense ids (direct table) and sparse ids (binary search)
def test_relabel_matches_a_lookup(spread):
    rng = np.random.default_rng(0)
    fragment_ids = np.unique(rng.integers(1, 1000, 50)).astype(np.uint64) * np.uint64(spread)
    segment_ids = rng.integers(0, 9, len(fragment_ids)).astype(np.uint64)
    fragments = fragment_ids[rng.integers(0, len(fragment_ids), (3, 5, 7))]
    expected = {int(f): int(s) for f, s in zip(fragment_ids, segment_ids)}
    out = relabel(fragments, fragment_ids, segment_ids)
    assert out.shape == fragments.shape and out.dtype == np.uint64
    assert out.ravel().tolist() == [expected[int(f)] for f in fragments.ravel()]


# --------------------------------------------------------------------------------------------------------
# thin neuron shapes (issue 13)

THIN = (12, 48, 48)
THIN_BLOCK = dict(block_shape=(6, 24, 24), context=(2, 8, 8))


@functools.lru_cache
def neurons(morphology: str) -> np.ndarray:
    """Simulated tissue of one class (cached: the tests below share it)."""
    labels = neuron_labels(morphology, THIN, seed=1)
    labels.flags.writeable = False
    return labels


def waterz_segmentations(affs: np.ndarray, thresholds, **kwargs) -> list[np.ndarray]:
    waterz = pytest.importorskip("waterz")
    with quiet_stdout():
        return [s.copy() for s in waterz.agglomerate(np.ascontiguousarray(affs[:3]), thresholds, **kwargs)]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renaming (0 compared as a label)."""
    return (
        adapted_rand_error(a, b, seg_zero="label").error == 0.0
        and adapted_rand_error(b, a, seg_zero="label").error == 0.0
    )


@pytest.mark.parametrize("options", [{}, SIZE_MERGE], ids=["waterz", "size-merge"])
@pytest.mark.parametrize("morphology", MORPHOLOGIES)
def test_noise_free_neuron_shapes_give_arand_zero(morphology, options):
    gt = neurons(morphology)
    assert len(np.unique(gt)) > 5
    # a neuron may leave the volume and come back, or touch itself only along an edge: no nearest-neighbour
    # affinity joins such pieces, so the reference is the 6-connected pieces of every object; a piece of
    # one voxel has no affinity 1 at all and is background to any affinity-based method
    pieces = connected_components(gt, background=0, connectivity=1)
    ids, sizes = np.unique(pieces, return_counts=True)
    pieces[np.isin(pieces, ids[sizes == 1])] = 0
    segs = segment_in_memory(
        noisy_affinities(gt, 0.0), NEAREST_OFFSETS, thresholds=[0.2, 0.5, 0.8], **THIN_BLOCK, **options
    )
    for seg in segs.values():
        assert adapted_rand_error(seg, pieces).error == 0.0
        assert adapted_rand_error(seg, gt).precision == 1.0  # against the objects: no merge at all
        assert (seg[pieces == 0] == 0).all()  # no affinity 1 there: waterz's watershed leaves it 0


def zwatershed_size_merge(labels: np.ndarray, affs: np.ndarray, size: int, low: float) -> np.ndarray:
    """Plain-Python transcription of zwatershed's get_region_graph + merge_segments_with_function."""
    strongest: dict[tuple[int, int], float] = {}
    pairs: dict[tuple[int, int], list[float]] = {}
    for axis in range(3):
        for later in zip(*np.nonzero(np.ones(labels.shape, bool))):
            if later[axis] == 0:
                continue
            earlier = tuple(c - (a == axis) for a, c in enumerate(later))
            a, b = int(labels[later]), int(labels[earlier])
            if a and b and a != b:
                key = (min(a, b), max(a, b))
                strongest[key] = max(strongest.get(key, -1.0), float(affs[(axis, *later)]))
                pairs.setdefault(key, []).append(float(affs[(axis, *later)]))
    counts = dict(zip(*np.unique(labels, return_counts=True)))
    parent = {int(i): int(i) for i in counts}

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    # zwatershed's order (decreasing maximum); ties (clipped affinities) by the higher mean, then the ids
    for (a, b), weight in sorted(strongest.items(), key=lambda item: (-item[1], -np.mean(pairs[item[0]]), item[0])):
        if weight < low:
            break
        a, b = find(a), find(b)
        if a != b and (counts[a] < size or counts[b] < size):
            parent[b] = a
            counts[a] += counts[b]
    return np.vectorize(find)(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_size_merge_equals_zwatershed_transcription(seed):
    rng = np.random.default_rng(seed)
    affs = rng.random((3, 4, 12, 13)).astype(np.float32)
    affs[:, rng.random(affs.shape[1:]) < 0.1] = 0.0  # some background
    affs[affs > 0.8] = 1.0  # ties, as clipped noisy affinities have
    labels = waterz_fragments(affs)
    merged = merge_small_fragments(labels, affs, size_threshold=6, merge_low=0.4)
    assert same_partition(merged, zwatershed_size_merge(labels, affs, 6, 0.4))
    assert ((merged == 0) == (labels == 0)).all()  # background joins nothing
    assert 0 < merged.max() < labels.max()
    np.testing.assert_array_equal(merge_small_fragments(labels, affs, 0, 0.4), labels)  # 0 = off


def test_size_merge_blockwise_equals_in_memory_with_fewer_fragments(volume):
    tmp, gt, affs = volume
    options = dict(thresholds=[0.5], block_shape=BLOCK, context=(2, 8, 8))
    summary = segment_blockwise(
        str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), progress=False, **options, **SIZE_MERGE
    )
    plain = segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "plain.zarr"), progress=False, **options)
    assert summary["n_fragments"] < plain["n_fragments"] / 2
    blockwise = read(tmp / "seg.zarr/seg_0.5")
    np.testing.assert_array_equal(blockwise, segment_in_memory(affs, NEAREST_OFFSETS, **options, **SIZE_MERGE)[0.5])
    assert adapted_rand_error(blockwise, gt).error < 0.05


def test_waterz_fragments_equal_waterz_voxel_for_voxel():
    rng = np.random.default_rng(0)
    affs = rng.random((3, 6, 20, 21)).astype(np.float32)
    affs[:, :, :10] = np.round(affs[:, :, :10] * 4) / 4  # plateaus (ties) are divided as waterz does
    affs[:, rng.random(affs.shape[1:]) < 0.2] = 0.0  # background voxels
    theirs = waterz_segmentations(affs, [0.0])[0]  # threshold 0: no merge, the watershed's own ids
    np.testing.assert_array_equal(waterz_fragments(affs), theirs)


@pytest.mark.parametrize("morphology", MORPHOLOGIES)
def test_blocks_with_face_links_equal_one_block_and_waterz(morphology):
    gt = neurons(morphology)
    affs = noisy_affinities(gt, 0.3, seed=2)
    thresholds = [0.3, 0.6, 0.9]
    blocks = segment_in_memory(affs, NEAREST_OFFSETS, thresholds=thresholds, **THIN_BLOCK)
    whole = segment_in_memory(affs, NEAREST_OFFSETS, thresholds=thresholds, block_shape=THIN, context=0)
    for t, theirs in zip(thresholds, waterz_segmentations(affs, thresholds)):
        assert same_partition(blocks[t], whole[t])  # fragment pieces cut at faces are re-joined first
        assert same_partition(whole[t], theirs)


def test_median_score_equals_waterz_quantile():
    gt = neurons("thin")
    affs = noisy_affinities(gt, 0.2, seed=3)
    thresholds = [0.3, 0.6]
    ours = segment_in_memory(affs, NEAREST_OFFSETS, thresholds=thresholds, score="quantile-50", **THIN_BLOCK)
    theirs = waterz_segmentations(
        affs,
        thresholds,
        scoring_function="OneMinus<HistogramQuantileAffinity<RegionGraphType, 50, ScoreValue, 256, false>>",
    )
    for t, seg in zip(thresholds, theirs):
        assert adapted_rand_error(ours[t], seg, seg_zero="label").error < 0.01
    mean = segment_in_memory(affs, NEAREST_OFFSETS, thresholds=thresholds, **THIN_BLOCK)
    assert any(not same_partition(ours[t], mean[t]) for t in thresholds)  # the score is not ignored


def test_quantile_agglomeration_hand_computed():
    # edge 1-2: affinities 0.1, 0.2, 0.9 (median bin of 0.2); edge 2-3: 0.6 (one pair)
    histogram = np.zeros((2, 256), np.uint32)
    for edge, values in ((0, [0.1, 0.2, 0.9]), (1, [0.6])):
        for value in values:
            histogram[edge, int(value * 256)] += 1
    graph = RegionGraph(
        u=np.array([1, 2], np.uint64),
        v=np.array([2, 3], np.uint64),
        affinity_sum=np.array([1.2, 0.6]),
        count=np.array([3, 1]),
        fragments=np.array([1, 2, 3], np.uint64),
        sizes=np.array([1, 1, 1]),
        histogram=histogram,
    )
    # mean of 1-2 is 0.4 (score 0.6); its median is 0.2 (score ~0.8)
    assert agglomerate(graph, thresholds=[0.7])[0.7].tolist() == [1, 1, 1]
    assert agglomerate(graph, thresholds=[0.7], score="quantile-50")[0.7].tolist() == [1, 2, 2]
    with pytest.raises(ValueError, match="histograms"):
        agglomerate(
            RegionGraph(graph.u, graph.v, graph.affinity_sum, graph.count, graph.fragments, graph.sizes),
            score="quantile-50",
        )


@pytest.mark.parametrize("in_memory", [False, True], ids=["blockwise", "in-memory"])
def test_segmentations_are_label_images_over_their_raw_image(volume, in_memory, capsys):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v05.image_label import ImageLabel
    from ome_zarr_models.v05.labels import Labels as LabelsGroup

    from connectomics.io import write_ome_zarr

    tmp, gt, _ = volume
    write_ome_zarr(tmp / "sim.zarr" / "raw", gt.astype(np.uint8), axes="zyx", voxel_size=(4, 4, 4), chunks=(8, 24, 24))
    args = [
        str(tmp / "pred.zarr/affs"),
        str(tmp / "seg.zarr"),
        "--thresholds",
        "0.3,0.6",
        "--block",
        "8,24,24",
        "--context",
        "2,8,8",
        "--image",
        str(tmp / "sim.zarr/raw"),
        "--no-progress",
    ]
    assert cli(args + (["--in-memory"] if in_memory else [])) == 0
    for name in ("seg_0.3", "seg_0.6"):
        group = zarr.open_group(str(tmp / "seg.zarr" / name), mode="r")
        meta = ImageLabel.from_zarr(group).ome_attributes  # validates the NGFF 0.5 image-label metadata
        assert meta.image_label.source.image == "../../sim.zarr/raw/"
        nodes = list(Reader(parse_url(str(tmp / "seg.zarr" / name)))())
        assert [Path(str(n.zarr.path)).name for n in nodes] == ["raw", name]  # the image, then the labels
        assert Label in {type(s) for s in nodes[1].specs}
        np.testing.assert_array_equal(np.asarray(nodes[1].data[0]), read(tmp / f"seg.zarr/{name}"))
    # the container root is a labels group listing them: a reader given seg.zarr opens each over the image
    root = open_ome_zarr(zarr.open_group(str(tmp / "seg.zarr"), mode="r"))
    assert isinstance(root, LabelsGroup) and root.ome_attributes.labels == ["seg_0.3", "seg_0.6"]
    nodes = list(Reader(parse_url(str(tmp / "seg.zarr")))())
    assert [Path(str(n.zarr.path)).name for n in nodes] == ["seg.zarr", "raw", "seg_0.3", "seg_0.6"]
    # an image of another shape is refused with a one-line error
    write_ome_zarr(
        tmp / "other.zarr" / "raw", np.zeros((4, 8, 8), np.uint8), axes="zyx", voxel_size=(4, 4, 4), chunks=(4, 8, 8)
    )
    bad = [
        str(tmp / "pred.zarr/affs"),
        str(tmp / "bad.zarr"),
        "--image",
        str(tmp / "other.zarr/raw"),
        "--no-progress",
        "--block",
        "8,24,24",
    ]
    capsys.readouterr()
    assert run_cli(bad + (["--in-memory"] if in_memory else [])) == 2
    err = capsys.readouterr().err
    assert "match" in err and "other.zarr/raw" in err and len(err.strip().splitlines()) == 1
    assert in_memory or not (tmp / "bad.zarr").exists()  # refused before any block was segmented


def test_thresholds_outside_0_1_are_refused():
    from connectomics.segment.settings import SegmentSettings

    with pytest.raises(ValueError, match=r"thresholds are merge scores .* in \[0, 1\], got 0.5, 1.5"):
        SegmentSettings(thresholds=(0.5, 1.5))


# ---------------------------------------------------------------------------------------------- the job (issue 15)
KILL_BLOCK = (8, 12, 12)  # 2 x 4 x 4 = 32 blocks per stage: room to kill a run midway
JOB_SETTINGS = dict(thresholds=[0.3, 0.6], block_shape=KILL_BLOCK, context=(2, 8, 8))


def slow_segment_process(tmp: Path, out: str, delay: float) -> subprocess.Popen:
    """``segment_blockwise`` in a subprocess, each block of each stage delayed by ``delay`` seconds."""
    script = (
        "import time\n"
        "import connectomics.segment.blockwise as b\n"
        "for step in (b.FragmentsStep, b.RegionGraphStep, b.RelabelStep):\n"
        f"    def slow(self, block, call=step.__call__):\n"
        f"        time.sleep({delay})\n"
        "        call(self, block)\n"
        "    step.__call__ = slow\n"
        f"b.segment_blockwise({str(tmp / 'pred.zarr/affs')!r}, {out!r}, workers=1, progress=False, "
        f"**{JOB_SETTINGS!r})\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]), OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", script], env=env)


def n_done(container: Path) -> int:
    done = container / "fragments/0/.job/done"
    return len([n for n in os.listdir(done) if not n.startswith(".")]) if done.is_dir() else 0


def outputs(container: Path) -> dict[str, np.ndarray]:
    return {name: read(container / name) for name in ("fragments", "seg_0.3", "seg_0.6")}


def test_killed_run_resumes_to_the_uninterrupted_result(volume):
    """kill -9 in the region-graph stage (fragments done, some per-block graphs written), then the same call
    again: the result equals an uninterrupted run, voxel for voxel."""
    tmp, _, _ = volume
    proc = slow_segment_process(tmp, str(tmp / "k.zarr"), delay=0.05)
    deadline = time.time() + 120
    while time.time() < deadline and n_done(tmp / "k.zarr") < 40 and proc.poll() is None:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    n_before = n_done(tmp / "k.zarr")
    assert 40 <= n_before < 64, f"the run should have been killed in the region-graph stage ({n_before} marked)"
    graphs = tmp / "k.zarr/fragments/0/.job/region_graph"
    (graphs / f".31.npz.{proc.pid}-1.tmp").write_bytes(b"half a file")  # what a kill mid-write leaves
    with pytest.warns(UserWarning, match=f"taking over the lock .* left by pid {proc.pid}"):
        segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "k.zarr"), progress=False, **JOB_SETTINGS)
    segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "u.zarr"), progress=False, **JOB_SETTINGS)
    resumed, uninterrupted = outputs(tmp / "k.zarr"), outputs(tmp / "u.zarr")
    for name in resumed:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name)
    assert n_done(tmp / "k.zarr") == 32 * 4 + 1  # fragments, graph, two relabels, the lookup table


def test_a_copied_container_keeps_its_protection(volume):
    """Issue 15: a container copied with `cp -r` carries its bookkeeping (nothing lives beside it), so other
    settings are refused naming the setting, a deleted manifest does not make old markers count, and only
    --overwrite starts over."""
    tmp, _, _ = volume
    affs = str(tmp / "pred.zarr/affs")
    segment_blockwise(affs, str(tmp / "seg.zarr"), progress=False, **JOB_SETTINGS)
    assert not list(tmp.glob("seg.zarr?*"))
    shutil.copytree(tmp / "seg.zarr", tmp / "copy.zarr")
    before = outputs(tmp / "copy.zarr")
    with pytest.raises(JobConfigError, match=r"min_size: 0 -> 400.*--overwrite"):
        segment_blockwise(affs, str(tmp / "copy.zarr"), progress=False, min_size=400, **JOB_SETTINGS)
    segment_blockwise(affs, str(tmp / "copy.zarr"), progress=False, **JOB_SETTINGS)  # same settings: all done
    for name, array in outputs(tmp / "copy.zarr").items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)
    (tmp / "copy.zarr/fragments/0/.job/manifest.json").unlink()
    with pytest.raises(JobConfigError, match="no manifest.json"):
        segment_blockwise(affs, str(tmp / "copy.zarr"), progress=False, min_size=400, **JOB_SETTINGS)
    segment_blockwise(affs, str(tmp / "copy.zarr"), progress=False, min_size=400, overwrite=True, **JOB_SETTINGS)
    segment_blockwise(affs, str(tmp / "fresh.zarr"), progress=False, min_size=400, **JOB_SETTINGS)
    for name, array in outputs(tmp / "fresh.zarr").items():
        np.testing.assert_array_equal(read(tmp / "copy.zarr" / name), array, err_msg=name)
    assert not np.array_equal(read(tmp / "copy.zarr/seg_0.3"), before["seg_0.3"])  # dust removal changed it
    for name, array in outputs(tmp / "seg.zarr").items():  # the original is untouched
        np.testing.assert_array_equal(array, before[name], err_msg=name)


def test_arrays_it_did_not_write_need_overwrite(volume, capsys):
    """A segmentation written by another command (here the in-memory path) is never replaced silently."""
    tmp, _, _ = volume
    args = ["--thresholds", "0.3,0.6", "--block", "8,12,12", "--context", "2,8,8", "--no-progress"]
    assert run_cli([str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), *args, "--in-memory"]) == 0
    in_memory = read(tmp / "seg.zarr/seg_0.3")
    capsys.readouterr()
    assert run_cli([str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), *args, "--in-memory"]) == 2
    assert "already holds seg_0.3, seg_0.6; pass --overwrite" in capsys.readouterr().err
    assert run_cli([str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), *args, "--in-memory", "--overwrite"]) == 0
    np.testing.assert_array_equal(read(tmp / "seg.zarr/seg_0.3"), in_memory)
    assert run_cli([str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), *args]) == 2
    err = capsys.readouterr().err
    assert "holds seg_0.3, seg_0.6, not written by `connectomics segment`" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp / "seg.zarr/fragments").exists()
    assert run_cli([str(tmp / "pred.zarr/affs"), str(tmp / "seg.zarr"), *args, "--overwrite"]) == 0
    np.testing.assert_array_equal(read(tmp / "seg.zarr/seg_0.3"), in_memory)  # same algorithm, same ids
    assert n_done(tmp / "seg.zarr") == 32 * 4 + 1


def test_a_second_run_refuses_or_waits_and_redoes_nothing(volume, capsys):
    """Two segment runs into one container used to collide with a zarr error. The second now refuses naming
    the first (one line, exit code 2 on the command line), or waits for it and finds everything done."""
    tmp, _, _ = volume
    out = tmp / "two.zarr"
    proc = slow_segment_process(tmp, str(out), delay=0.03)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and n_done(out) < 1 and proc.poll() is None:
            time.sleep(0.02)
        with pytest.raises(JobLockedError, match=f"two.zarr is in use by pid {proc.pid} .*--wait"):
            segment_blockwise(str(tmp / "pred.zarr/affs"), str(out), progress=False, **JOB_SETTINGS)
        capsys.readouterr()
        argv = [
            str(tmp / "pred.zarr/affs"),
            str(out),
            "--thresholds",
            "0.3,0.6",
            "--block",
            "8,12,12",
            "--context",
            "2,8,8",
            "--no-progress",
        ]
        assert run_cli(argv) == 2
        err = capsys.readouterr().err
        assert f"in use by pid {proc.pid}" in err and len(err.strip().splitlines()) == 1
        assert run_cli(argv + ["--wait"]) == 0
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    lut = out / "fragments/0/.job/agglomeration/summary.json"
    written = lut.stat().st_mtime_ns
    segment_blockwise(str(tmp / "pred.zarr/affs"), str(out), progress=False, wait=True, **JOB_SETTINGS)
    assert lut.stat().st_mtime_ns == written  # nothing redone
    segment_blockwise(str(tmp / "pred.zarr/affs"), str(tmp / "ref.zarr"), progress=False, **JOB_SETTINGS)
    for name, array in outputs(tmp / "ref.zarr").items():
        np.testing.assert_array_equal(read(out / name), array, err_msg=name)


def test_bad_affinities_are_refused_in_one_line_before_anything_is_created(volume, capsys):
    tmp, _, affs = volume
    cases = {
        "nan": (affs, np.nan, "1 non-finite value"),
        "inf": (affs, np.inf, "1 non-finite value"),
        "big": (affs, 1.5, r"range [0.0, 1.5]"),
        "int": (affs.astype(np.int16), 0, "must be float or uint8"),
        "three": (affs[0], 0.5, "must have 4 axes"),
    }
    for name, (values, bad, message) in cases.items():
        values = values.copy()
        values.flat[7] = bad
        arr = create_ome_zarr_array(
            tmp / f"{name}.zarr/affs",
            shape=values.shape,
            dtype=values.dtype,
            chunks=values.shape,
            axes=("c", "z", "y", "x")[-values.ndim :],
            voxel_size=(4.0, 4.0, 4.0),
        )
        arr[...] = values
        arr.attrs["affinity_offsets"] = NEAREST_OFFSETS
        capsys.readouterr()
        for mode in ([], ["--in-memory"]):
            argv = [str(tmp / f"{name}.zarr/affs"), str(tmp / f"seg_{name}.zarr"), "--block", "8,24,24", *mode]
            assert run_cli(argv) == 2
            err = capsys.readouterr().err
            assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
            assert not (tmp / f"seg_{name}.zarr").exists()


def test_command_line_options_come_from_the_settings_dataclass():
    """`connectomics segment`'s settings options are generated from SegmentSettings: the old flag names and
    defaults still parse to the same settings."""
    from shared.cli import add_dataclass_arguments, dataclass_from_args, subcommand_parser

    parser = subcommand_parser("connectomics segment", "")
    add_dataclass_arguments(parser, SegmentSettings)
    assert dataclass_from_args(SegmentSettings, parser.parse_args([])) == SegmentSettings()
    argv = [
        "--thresholds",
        "0.6,0.3",
        "--block",
        "8,24,24",
        "--context",
        "2",
        "--fragments",
        "seeded",
        "--size-threshold",
        "30",
        "--score",
        "quantile-50",
        "--min-seed-distance",
        "1.5",
    ]
    assert dataclass_from_args(SegmentSettings, parser.parse_args(argv)) == SegmentSettings(
        thresholds=(0.3, 0.6),
        block_shape=(8, 24, 24),
        context=(2, 2, 2),
        fragments="seeded",
        size_threshold=30,
        score="quantile-50",
        min_seed_distance=1.5,
    )
    assert "default: 64,256,256" in " ".join(parser.format_help().split())
    for bad in (["--thresholds", "0.3;0.5"], ["--block", "8,x,8"], ["--fragments", "slic"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_frozen_regions_wait_and_their_best_neighbours_with_them():
    # regions 0-1-2-3 in a chain, scores 0.1 (0-1), 0.4 (1-2), 0.3 (2-3); region 0 is frozen
    ends_u, ends_v = np.array([0, 1, 2]), np.array([1, 2, 3])
    sums = 1 - np.array([0.1, 0.4, 0.3])
    frozen = np.array([True, False, False, False])
    merge_a, merge_b, score, _, alive = merge_regions(
        ends_u,
        ends_v,
        sums,
        np.ones(3, np.int64),
        np.zeros(3, np.int64),
        np.zeros((3, 0), np.uint32),
        np.arange(4),
        np.int64(-1),
        frozen,
        0.5,
    )
    # 1's best edge leads to frozen 0, so 1 waits; 2-3 are each other's best and merge; then {2, 3}'s best
    # edge (0.4, below the highest threshold) leads to the waiting 1, so {2, 3} (root 2) waits too
    assert (merge_a.tolist(), merge_b.tolist()) == ([2], [3]) and np.allclose(score, [0.3])
    assert frozen.tolist() == [True, True, True, False]
    assert alive.tolist() == [True, True, False]


def block_graphs(affs: np.ndarray, settings: SegmentSettings) -> tuple[list, list[RegionGraph]]:
    """Fragments and region graph of every block of the settings' grid (block-id order)."""
    volume = Roi((0, 0, 0), affs.shape[1:])
    blocks = block_grid(volume, settings.block_shape, settings.context)
    fragments, links = np.zeros(volume.shape, np.uint64), np.zeros(volume.shape, np.uint8)
    for block in blocks:
        fragments[block.write_roi.to_slices()], links[block.write_roi.to_slices()] = block_fragments(
            affs[(slice(None),) + block.read_roi.to_slices()], block, settings
        )
    nn = nearest_neighbour_channels(NEAREST_OFFSETS)
    return blocks, [
        block_region_graph(
            fragments,
            affs[(slice(None),) + block.write_roi.to_slices()],
            block.write_roi,
            volume,
            nn,
            settings,
            links[block.write_roi.to_slices()],
        )
        for block in blocks
    ]


@pytest.mark.parametrize("score", ["mean", "quantile-50"])
@pytest.mark.parametrize("grid", [(6, 24, 24), (4, 16, 48), (12, 12, 16)])
def test_block_hierarchy_equals_the_global_merge_loop(score, grid):
    # the octree over blocks (frozen face regions, merges of mutual best pairs) against the one global loop
    # on the pooled graph: the same lookup tables, ids included, at every threshold
    affs = noisy_affinities(neurons("dense"), 0.3, seed=4)[:3]
    settings = SegmentSettings(thresholds=np.arange(0.05, 1.0, 0.1), score=score, block_shape=grid, context=(2, 8, 8))
    blocks, graphs = block_graphs(affs, settings)
    flat_graph = RegionGraph.merge(graphs)
    numbers = flat_graph.fragments.astype(np.int64)
    merges = []
    BlockHierarchy(grid_shape(blocks), settings.block_voxels, lambda b: vars(graphs[b]), settings).run(
        lambda a, b, score: merges.append((np.searchsorted(numbers, a), np.searchsorted(numbers, b), score))
    )
    assert 0 < sum(len(a) for a, _, _ in merges[:-1])  # groups below the top merged something
    ours = dict(segment_luts([len(g.fragments) for g in graphs], lambda: merges, settings, flat_graph.sizes))
    flat = agglomerate(flat_graph, settings)
    for t in settings.thresholds:
        np.testing.assert_array_equal(np.concatenate(ours[t]), flat[t])
