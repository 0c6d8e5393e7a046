"""Affinities to a consistent neuron segmentation at any scale: ``connectomics segment``.

The pipeline (lsd/volara-style, four stages, each resumable):

1. **fragments**, per block (:func:`watershed_fragments`): boundary map ``1 - min`` of the six
   nearest-neighbour affinities of each voxel; seeds are the local maxima of the distance transform of
   ``boundary < seed_threshold``; a watershed of the negative distance from the seeds fills the interior, and
   the boundary voxels left join the neighbour they are most strongly linked to (edge-aware growth). It runs
   over the block's read ROI (write ROI + context, so seeds and basins just outside the block shape the
   fragments inside it) and is cropped to the write ROI. Fragment ids are globally unique uint64:
   ``block_id * read_voxels + local id``.
2. **region graph**, per block: for every nearest-neighbour voxel pair owned by the block (the voxel storing
   the affinity lies in the write ROI; its partner may lie in the neighbouring block, which is how pairs
   across block faces enter), the affinity is added to the edge between the two fragments (sum, count),
   and fragment sizes are counted.
3. **agglomeration**, once, on the global region graph: hierarchical merging by mean affinity (the waterz
   ``OneMinus<MeanAffinity>`` score ``1 - mean affinity``): the edge with the lowest score is merged next,
   merged edges pool their sums and counts, and the partition is recorded each time the next score reaches
   a threshold (several thresholds in one run, as waterz does). Segments smaller than ``min_size`` voxels
   (dust) become background 0. The result is a lookup table fragment -> segment per threshold.
4. **relabel**, per block: the lookup table is applied to the fragments, giving ``seg_<threshold>``.

Because fragments are cut on a fixed block grid and everything after them is a function of the global
region graph, the segmentation does not depend on how blocks are scheduled (threads, a cluster, a resumed
run) and the in-memory fast path (:func:`segment_in_memory`) with the same block shape gives the same
result. Fragments are cut at block faces and re-joined by the agglomeration through the face edges (at a
score equal to the mean affinity across the face), so on clean data the result also matches one
whole-volume watershed; a different block shape can change the result where affinities are ambiguous.

Affinity convention: ``affs[c, z, y, x]`` is the affinity between voxel ``(z, y, x)`` and voxel
``(z, y, x) + offsets[c]``; the offsets come from the prediction's ``affinity_offsets`` attribute (written by
``connectomics predict``) or ``--offsets``. Only the three nearest-neighbour channels are used.

The region graph (one entry per fragment pair) is held in memory during agglomeration: memory grows with
the number of fragments, not with voxels; every voxel-sized step is bounded by the block size.
"""

from __future__ import annotations

import heapq
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from connectomics.blocks import (
    Block,
    DoneMarkers,
    Roi,
    as_coordinate,
    atomic_write_text,
    block_grid,
    check_chunk_aligned,
    check_or_write_manifest,
    open_input,
    open_output,
    parse_coordinate,
    read_region,
    run_blockwise,
)

NEAREST_NEIGHBOUR_OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))


# --------------------------------------------------------------------------------------------------------
# stage 1: fragments


def nearest_neighbour_channels(offsets: Sequence[Sequence[int]]) -> list[tuple[int, tuple[int, int, int]]]:
    """The (channel, offset) of the three nearest-neighbour affinities, in axis order (plane, row, column).

    Raises ``ValueError`` unless each axis has a channel with offset -1 along it (the Turaga/waterz
    convention of :mod:`connectomics.affinities`; convert others with ``shift_affinities``).
    """
    found: dict[int, tuple[int, tuple[int, int, int]]] = {}
    for c, off in enumerate(offsets):
        off = tuple(int(v) for v in off)
        if sorted(off) == [-1, 0, 0]:
            found.setdefault(off.index(-1), (c, off))
    if len(found) != 3:
        raise ValueError(f"affinity offsets {[list(o) for o in offsets]} need the nearest-neighbour offsets "
                         "(-1,0,0), (0,-1,0), (0,0,-1) (edge to the previous voxel, as waterz expects)")
    return [found[a] for a in range(3)]


def as_probabilities(affs: np.ndarray) -> np.ndarray:
    """Affinities as float32 in [0, 1] (uint8 stores ``round(255 p)``); raises on NaN or bad dtypes."""
    if affs.dtype == np.uint8:
        return affs.astype(np.float32) / 255.0
    if affs.dtype.kind != "f":
        raise TypeError(f"affinities must be float32/float16 in [0, 1] or uint8, got {affs.dtype}")
    affs = affs.astype(np.float32, copy=False)
    if np.isnan(affs).any():
        raise ValueError("affinities contain NaN")
    return affs


def _pairs(axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of voxels v (first) and of their predecessors v - 1 along ``axis`` (second)."""
    later, earlier = [slice(None)] * 3, [slice(None)] * 3
    later[axis], earlier[axis] = slice(1, None), slice(None, -1)
    return tuple(later), tuple(earlier)


def boundary_map(affs_nn: np.ndarray) -> np.ndarray:
    """Boundary probability ``1 - min`` of the affinities linking each voxel to its six neighbours.

    A voxel stores only the affinity to its predecessor; the link to its successor is stored by the
    successor. Taking both makes a cut show on both sides, so the interiors of touching objects separate.
    Links leaving the array count as 1 (no evidence).

    Parameters
    ----------
    affs_nn : ndarray of shape (3, plane, row, column), float32 nearest-neighbour affinities (offsets
        (-1,0,0), (0,-1,0), (0,0,-1)).

    Returns
    -------
    ndarray of shape (plane, row, column), float32.
    """
    lowest = affs_nn.min(axis=0)
    for axis in range(3):
        later, earlier = _pairs(axis)
        np.minimum(lowest[earlier], affs_nn[axis][later], out=lowest[earlier])
    return 1.0 - lowest


def grow_along_affinities(labels: np.ndarray, affs_nn: np.ndarray, max_iterations: int = 64,
                          levels: Sequence[float] = (0.5, -1.0)) -> np.ndarray:
    """Label the unlabelled (0) voxels from their labelled neighbours, following the strongest affinity.

    Each iteration, every unlabelled voxel with a labelled neighbour takes the label of the neighbour it is
    linked to by the highest affinity. Unlike a node watershed on a boundary map (where both sides of a
    cut look alike), this looks at the edge itself, so a membrane voxel joins the object it belongs to.
    Growth runs in ``levels``: first only across links above 0.5 (until nothing changes), then across any
    link, a two-level approximation of an edge-weighted (maximin) watershed, so a thin process without
    its own seed is reached through its own object rather than across a cut.

    Parameters
    ----------
    labels : ndarray of shape (plane, row, column), int; 0 = unlabelled. Not modified.
    affs_nn : ndarray of shape (3, plane, row, column), float32 nearest-neighbour affinities.

    Returns
    -------
    ndarray like ``labels``; voxels with no labelled voxel within ``max_iterations`` steps stay 0.
    """
    labels = labels.copy()
    for level in levels:
        for _ in range(max_iterations):
            unlabelled = labels == 0
            if not unlabelled.any():
                return labels
            best = np.full(labels.shape, np.float32(level), np.float32)
            taken = np.zeros_like(labels)
            for axis in range(3):
                later, earlier = _pairs(axis)
                link = affs_nn[axis][later]  # between v (later) and v - 1 (earlier)
                for dst, src in ((later, earlier), (earlier, later)):
                    better = (labels[src] > 0) & unlabelled[dst] & (link > best[dst])
                    best[dst][better] = link[better]
                    taken[dst][better] = labels[src][better]
            if not taken.any():
                break
            labels[unlabelled] = taken[unlabelled]
    return labels


def watershed_fragments(affs_nn: np.ndarray, *, seed_threshold: float = 0.5, seed_radius: int = 4,
                        min_seed_distance: float = 2.0,
                        sampling: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Seeded watershed of the boundary map into fragments.

    1. interior = ``boundary_map(affs_nn) < seed_threshold``; its Euclidean distance transform (in nm when
       ``sampling`` is the voxel size);
    2. seeds = local maxima of the distance within a (1, 2r+1, 2r+1) neighbourhood, at least
       ``min_seed_distance`` (in voxels of the finest axis) from the boundary, so noise bridges between
       touching objects (distance about 1) do not seed fragments that span both;
    3. watershed of the negative distance from the seeds inside the interior (thin bridges between
       touching objects have small distances, so basins split there; lsd's fragment step);
    4. the boundary voxels left are grown into along the strongest affinity
       (:func:`grow_along_affinities`); any voxel still unreached (no interior nearby) joins a fragment by a
       plain watershed of the boundary map.

    Parameters
    ----------
    affs_nn : ndarray of shape (3, plane, row, column), float32 nearest-neighbour affinities in [0, 1].

    Returns
    -------
    ndarray of shape (plane, row, column), int64 labels 1..n (every voxel belongs to a fragment).
    """
    boundary = boundary_map(affs_nn)
    interior = boundary < seed_threshold
    sampling = np.asarray(sampling, float) / min(sampling)  # distances in units of the finest axis
    distance = ndimage.distance_transform_edt(interior, sampling=sampling)
    size = (1, 2 * seed_radius + 1, 2 * seed_radius + 1)
    maxima = (distance == ndimage.maximum_filter(distance, size=size)) & (distance >= min_seed_distance)
    seeds, n_seeds = ndimage.label(maxima)
    if n_seeds == 0:  # no interior at all: one fragment for the whole region
        return np.ones(boundary.shape, np.int64)
    labels = watershed(-distance, seeds, mask=interior).astype(np.int64, copy=False)
    labels = grow_along_affinities(labels, affs_nn)
    if not labels.all():
        labels = watershed(boundary, labels).astype(np.int64, copy=False)
    return labels


def block_fragments(affs_nn: np.ndarray, block: Block, *, block_voxels: int, seed_threshold: float,
                    seed_radius: int, min_seed_distance: float, sampling: Sequence[float]) -> np.ndarray:
    """Fragments of one block, with globally unique ids.

    Parameters
    ----------
    affs_nn : ndarray of shape (3, plane, row, column), float32 nearest-neighbour affinities over the
        block's read ROI.
    block : the block; the watershed runs over ``read_roi`` and is cropped to ``write_roi``.
    block_voxels : voxels of a full read ROI (an upper bound on the fragments of a block); ids are
        ``block_id * block_voxels + local id`` (local ids start at 1).

    Returns
    -------
    ndarray of shape ``write_roi.shape``, uint64.
    """
    labels = watershed_fragments(affs_nn, seed_threshold=seed_threshold, seed_radius=seed_radius,
                                 min_seed_distance=min_seed_distance, sampling=sampling)
    labels = labels[block.write_roi.to_slices(relative_to=block.read_roi)]
    if labels.max() > block_voxels:
        raise ValueError(f"block {block.block_id}: {labels.max()} fragments exceed the id range "
                         f"{block_voxels}")
    base = np.uint64(block.block_id) * np.uint64(block_voxels)
    return labels.astype(np.uint64) + base


# --------------------------------------------------------------------------------------------------------
# stage 2: region graph


@dataclass
class RegionGraph:
    """Fragment adjacency with summed affinities.

    Attributes
    ----------
    u, v : ndarray of shape (n_edges,), uint64 fragment ids, ``u < v``.
    affinity_sum : ndarray of shape (n_edges,), float64 sum of the affinities of the voxel pairs.
    count : ndarray of shape (n_edges,), int64 number of voxel pairs.
    fragments : ndarray of shape (n_fragments,), uint64 fragment ids.
    sizes : ndarray of shape (n_fragments,), int64 voxels per fragment.
    """

    u: np.ndarray
    v: np.ndarray
    affinity_sum: np.ndarray
    count: np.ndarray
    fragments: np.ndarray
    sizes: np.ndarray

    @staticmethod
    def merge(parts: Sequence[RegionGraph]) -> RegionGraph:
        """Pool the graphs of several blocks: sums and counts of the same edge or fragment are added."""
        u = np.concatenate([p.u for p in parts])
        v = np.concatenate([p.v for p in parts])
        pairs, inverse = np.unique(np.stack([u, v], axis=1), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        sums = np.bincount(inverse, np.concatenate([p.affinity_sum for p in parts]), len(pairs))
        counts = np.bincount(inverse, np.concatenate([p.count for p in parts]), len(pairs)).astype(np.int64)
        frags, finv = np.unique(np.concatenate([p.fragments for p in parts]), return_inverse=True)
        sizes = np.bincount(finv.ravel(), np.concatenate([p.sizes for p in parts]), len(frags))
        sizes = sizes.astype(np.int64)
        return RegionGraph(pairs[:, 0].copy(), pairs[:, 1].copy(), sums, counts, frags, sizes)


def block_region_graph(fragments: np.ndarray, affs_nn: np.ndarray, write_roi: Roi, fragments_roi: Roi,
                       nn: Sequence[tuple[int, tuple[int, int, int]]]) -> RegionGraph:
    """The region graph of the voxel pairs owned by one block.

    Parameters
    ----------
    fragments : ndarray of shape ``fragments_roi.shape``, uint64; ``fragments_roi`` is ``write_roi`` grown
        by one voxel towards each offset (clipped to the volume), so partners across faces are included.
    affs_nn : ndarray of shape (3, *write_roi.shape), float32 nearest-neighbour affinities.
    nn : (channel, offset) per axis from :func:`nearest_neighbour_channels`.
    """
    own = fragments[write_roi.to_slices(relative_to=fragments_roi)]
    us, vs, values = [], [], []
    for axis, (_, offset) in enumerate(nn):
        partner_roi = write_roi.shift(offset)
        valid = partner_roi.intersect(fragments_roi)  # partners outside the volume have no edge
        if valid.empty():
            continue
        mine = valid.shift([-o for o in offset])
        a = fragments[mine.to_slices(relative_to=fragments_roi)]
        b = fragments[valid.to_slices(relative_to=fragments_roi)]
        aff = affs_nn[axis][mine.to_slices(relative_to=write_roi)]
        cut = a != b
        us.append(np.minimum(a[cut], b[cut]))
        vs.append(np.maximum(a[cut], b[cut]))
        values.append(aff[cut].astype(np.float64))
    frags, sizes = np.unique(own, return_counts=True)
    u, v, val = np.concatenate(us), np.concatenate(vs), np.concatenate(values)
    if len(u):
        ids = np.unique(np.concatenate([u, v]))
        iu, iv = np.searchsorted(ids, u).astype(np.int64), np.searchsorted(ids, v).astype(np.int64)
        key, kinv = np.unique(iu * len(ids) + iv, return_inverse=True)
        sums = np.bincount(kinv, val, len(key))
        counts = np.bincount(kinv, minlength=len(key)).astype(np.int64)
        u, v = ids[key // len(ids)], ids[key % len(ids)]
    else:
        sums, counts = np.zeros(0), np.zeros(0, np.int64)
    return RegionGraph(u.astype(np.uint64), v.astype(np.uint64), sums, counts, frags.astype(np.uint64),
                       sizes.astype(np.int64))


# --------------------------------------------------------------------------------------------------------
# stage 3: agglomeration


def agglomerate(graph: RegionGraph, thresholds: Sequence[float], *,
                min_size: int = 0) -> dict[float, np.ndarray]:
    """Mean-affinity hierarchical agglomeration of a region graph to several thresholds.

    Parameters
    ----------
    graph : the global region graph.
    thresholds : merge scores (``1 - mean affinity``, the waterz convention): at threshold ``t`` every
        merge with score ``< t`` has been made. Higher thresholds merge more.
    min_size : segments with fewer voxels become 0 (dust removal); 0 keeps everything.

    Returns
    -------
    dict threshold -> ndarray of shape (n_fragments,), uint64 segment id of each fragment of
    ``graph.fragments`` (ids 1..k numbered by first fragment, 0 for dust).
    """
    n = len(graph.fragments)
    index_u = np.searchsorted(graph.fragments, graph.u)
    index_v = np.searchsorted(graph.fragments, graph.v)
    parent = list(range(n))
    size = graph.sizes.astype(np.int64).tolist()
    adjacency: list[dict[int, list[float]]] = [{} for _ in range(n)]
    edges = zip(index_u.tolist(), index_v.tolist(), graph.affinity_sum.tolist(), graph.count.tolist())
    for a, b, s, c in edges:
        adjacency[a][b] = adjacency[b][a] = [s, c]
    # only edges that can merge at the highest threshold enter the queue now; any edge whose score later
    # drops (by pooling with a merged neighbour) is queued again at that merge
    scores = 1.0 - graph.affinity_sum / np.maximum(graph.count, 1)
    below = np.flatnonzero(scores < max(thresholds, default=0.0))
    heap = list(zip(scores[below].tolist(), index_u[below].tolist(), index_v[below].tolist()))
    heapq.heapify(heap)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    results: dict[float, np.ndarray] = {}
    for threshold in sorted(float(t) for t in thresholds):
        while heap and heap[0][0] < threshold:
            score, a, b = heapq.heappop(heap)
            if parent[a] != a or parent[b] != b:
                continue  # an endpoint was merged away: the edge lives on under its root
            stats = adjacency[a].get(b)
            if stats is None or 1.0 - stats[0] / stats[1] != score:
                continue  # stale entry: the edge's score changed since it was queued
            if len(adjacency[a]) < len(adjacency[b]):
                a, b = b, a  # merge the smaller neighbourhood into the larger
            parent[b] = a
            size[a] += size[b]
            del adjacency[a][b]
            for w, (s, c) in _pop_items(adjacency, b):
                if w == a:
                    continue
                del adjacency[w][b]
                merged = adjacency[a].get(w)
                if merged is None:
                    merged = adjacency[a][w] = adjacency[w][a] = [s, c]
                else:
                    merged[0] += s
                    merged[1] += c
                heapq.heappush(heap, (1.0 - merged[0] / merged[1], min(a, w), max(a, w)))
        roots = np.fromiter((find(i) for i in range(n)), np.int64, n)
        results[threshold] = _number_segments(roots, np.asarray(size, np.int64), min_size)
    return results


def _pop_items(adjacency: list[dict[int, list[float]]], node: int) -> list[tuple[int, list[float]]]:
    items = list(adjacency[node].items())
    adjacency[node] = {}
    return items


def _number_segments(roots: np.ndarray, root_sizes: np.ndarray, min_size: int) -> np.ndarray:
    """Segment ids 1..k in order of each segment's first fragment; dust (size < min_size) -> 0."""
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # rank of each root by its first fragment
    keep = root_sizes[roots[first]] >= min_size
    ids = np.zeros(len(first), np.uint64)
    ranks = order[keep]
    ids[keep] = (np.argsort(np.argsort(ranks)) + 1).astype(np.uint64)
    return ids[inverse.ravel()]


def relabel(fragments: np.ndarray, fragment_ids: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
    """Map fragment ids to segment ids through a lookup table (``fragment_ids`` sorted)."""
    return segment_ids[np.searchsorted(fragment_ids, fragments)]


# --------------------------------------------------------------------------------------------------------
# the in-memory fast path


def segment_in_memory(affs: np.ndarray, offsets: Sequence[Sequence[int]] = NEAREST_NEIGHBOUR_OFFSETS, *,
                      thresholds: Sequence[float] = (0.5,), block_shape: Sequence[int] | None = None,
                      context: Sequence[int] | int = 0, min_size: int = 0, seed_threshold: float = 0.5,
                      seed_radius: int = 4, min_seed_distance: float = 2.0,
                      sampling: Sequence[float] = (1.0, 1.0, 1.0)) -> dict[float, np.ndarray]:
    """Segment affinities held in memory; the same algorithm as :func:`segment_blockwise`, without IO.

    Parameters
    ----------
    affs : ndarray of shape (channel, plane, row, column), float in [0, 1] or uint8.
    offsets : the affinity offset of each channel (see the module docstring for the convention).
    thresholds : agglomeration thresholds (waterz convention: score ``1 - mean affinity``).
    block_shape : fragment block grid (default: one block, the whole volume). Give the blockwise run's
        block shape to reproduce it exactly.
    context, min_size, seed_threshold, seed_radius, min_seed_distance : as in :func:`segment_blockwise`.
    sampling : voxel size (plane, row, column) for the distance transform.

    Returns
    -------
    dict threshold -> ndarray of shape (plane, row, column), uint64 segment ids (0 = dust).

    Examples
    --------
    >>> labels = np.repeat(np.arange(4).reshape(2, 2), 8, 0).repeat(8, 1)[None].repeat(4, 0) + 1
    >>> affs = np.ones((3,) + labels.shape, np.float32)
    >>> affs[1, :, 1:] = labels[:, 1:] == labels[:, :-1]
    >>> affs[2, :, :, 1:] = labels[:, :, 1:] == labels[:, :, :-1]
    >>> seg = segment_in_memory(affs, thresholds=[0.5])[0.5]
    >>> len(np.unique(seg))
    4
    """
    if affs.ndim != 4:
        raise ValueError(f"affinities must have 4 axes (channel, plane, row, column), got shape {affs.shape}")
    if len(offsets) != affs.shape[0]:
        raise ValueError(f"{len(offsets)} offsets for {affs.shape[0]} affinity channels")
    nn = nearest_neighbour_channels(offsets)
    affs_nn = as_probabilities(np.stack([affs[c] for c, _ in nn]))
    volume = Roi((0, 0, 0), affs.shape[1:])
    block_shape = volume.shape if block_shape is None else as_coordinate(block_shape, 3, name="block_shape")
    blocks = block_grid(volume, block_shape, context)
    context = as_coordinate(context, 3, name="context")
    block_voxels = int(np.prod([b + 2 * c for b, c in zip(block_shape, context)]))
    fragments = np.zeros(volume.shape, np.uint64)
    for block in blocks:
        fragments[block.write_roi.to_slices()] = block_fragments(
            affs_nn[(slice(None),) + block.read_roi.to_slices()], block, block_voxels=block_voxels,
            seed_threshold=seed_threshold, seed_radius=seed_radius, min_seed_distance=min_seed_distance,
            sampling=sampling)
    parts = [block_region_graph(fragments, affs_nn[(slice(None),) + block.write_roi.to_slices()],
                                block.write_roi, volume, nn) for block in blocks]
    graph = RegionGraph.merge(parts) if len(parts) > 1 else parts[0]
    luts = agglomerate(graph, thresholds, min_size=min_size)
    return {t: relabel(fragments, graph.fragments, lut) for t, lut in luts.items()}


# --------------------------------------------------------------------------------------------------------
# blockwise: the per-block work, picklable (paths and settings only)


def _write(root: str, array_path: str, roi: Roi, values: np.ndarray) -> None:
    open_output(root, array_path)[roi.to_slices()] = values


@dataclass(frozen=True)
class FragmentsStep:
    """Stage 1 for one block: read affinities over the read ROI, watershed, write fragments."""

    affs_path: str
    nn: tuple[tuple[int, tuple[int, int, int]], ...]
    out_root: str
    out_array: str
    block_voxels: int
    seed_threshold: float
    seed_radius: int
    min_seed_distance: float
    sampling: tuple[float, ...]

    def __call__(self, block: Block) -> None:
        affs = as_probabilities(read_region(self.affs_path, block.read_roi, [c for c, _ in self.nn]))
        fragments = block_fragments(affs, block, block_voxels=self.block_voxels,
                                    seed_threshold=self.seed_threshold, seed_radius=self.seed_radius,
                                    min_seed_distance=self.min_seed_distance, sampling=self.sampling)
        _write(self.out_root, self.out_array, block.write_roi, fragments)


@dataclass(frozen=True)
class RegionGraphStep:
    """Stage 2 for one block: the edges of the voxel pairs it owns, saved as ``<folder>/<block_id>.npz``."""

    affs_path: str
    fragments_path: str
    nn: tuple[tuple[int, tuple[int, int, int]], ...]
    volume_roi: Roi
    folder: str

    def __call__(self, block: Block) -> None:
        neg = [max(0, -min(off[a] for _, off in self.nn)) for a in range(3)]
        pos = [max(0, max(off[a] for _, off in self.nn)) for a in range(3)]
        fragments_roi = block.write_roi.grow(neg, pos).intersect(self.volume_roi)
        fragments = read_region(self.fragments_path, fragments_roi)
        affs = as_probabilities(read_region(self.affs_path, block.write_roi, [c for c, _ in self.nn]))
        graph = block_region_graph(fragments, affs, block.write_roi, fragments_roi, self.nn)
        target = Path(self.folder) / f"{block.block_id}.npz"
        tmp = target.with_name(f".{block.block_id}.tmp.npz")
        np.savez(tmp, **vars(graph))
        tmp.replace(target)


@dataclass(frozen=True)
class RelabelStep:
    """Stage 4 for one block: apply a fragment -> segment lookup table."""

    fragments_path: str
    lut_path: str
    threshold: float
    out_root: str
    out_array: str

    def __call__(self, block: Block) -> None:
        fragment_ids, segment_ids = _load_lut(self.lut_path, self.threshold)
        fragments = read_region(self.fragments_path, block.write_roi)
        _write(self.out_root, self.out_array, block.write_roi, relabel(fragments, fragment_ids, segment_ids))


_LUTS: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}


def _load_lut(path: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    key = (path, threshold)
    if key not in _LUTS:
        with np.load(path) as lut:
            _LUTS[key] = (lut["fragments"], lut[threshold_name(threshold)])
    return _LUTS[key]


def threshold_name(threshold: float) -> str:
    """The dataset name of a threshold's segmentation: ``seg_0.5``, ``seg_0.25``."""
    return f"seg_{float(threshold):g}"


def read_affinity_offsets(affs_path: str) -> list[list[int]] | None:
    """The ``affinity_offsets`` attribute of a prediction (on its group or its level-0 array), or None."""
    import zarr

    from connectomics.io import parse_volume_path

    container, dataset = parse_volume_path(affs_path)
    if container.suffix in (".h5", ".hdf", ".hdf5"):
        return None
    node = zarr.open(str(container), path=dataset or "", mode="r")
    candidates = [node]
    if isinstance(node, zarr.Group):
        candidates += [node[k] for k in ("0", "s0") if k in node]
    for candidate in candidates:
        if "affinity_offsets" in candidate.attrs:
            return [list(map(int, o)) for o in candidate.attrs["affinity_offsets"]]
    return None


# --------------------------------------------------------------------------------------------------------
# blockwise driver


def segment_blockwise(
    affs_path: str,
    output_path: str,
    *,
    thresholds: Sequence[float] = (0.5,),
    block_shape: Sequence[int] = (64, 256, 256),
    context: Sequence[int] | int = (4, 16, 16),
    min_size: int = 0,
    seed_threshold: float = 0.5,
    seed_radius: int = 4,
    min_seed_distance: float = 2.0,
    offsets: Sequence[Sequence[int]] | None = None,
    chunks: Sequence[int] | None = None,
    n_levels: int | None = None,
    scheduler: str | Any | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment a prediction block by block into ``output_path/fragments`` and ``output_path/seg_<t>``.

    Parameters
    ----------
    affs_path : affinities (channel, plane, row, column), e.g. ``pred.zarr/affs``.
    output_path : the output container, e.g. ``seg.zarr`` (OME-Zarr images with multiscales).
    thresholds : agglomeration thresholds; one segmentation per threshold.
    block_shape : fragment/processing block (plane, row, column); the output chunks divide it.
    context : read context around each block for the watershed.
    min_size : dust removal: segments smaller than this many voxels become 0.
    seed_threshold, seed_radius, min_seed_distance : seeding of the watershed (:func:`watershed_fragments`);
        scale ``seed_radius`` with the object calibre in voxels.
    offsets : affinity offsets when the prediction has no ``affinity_offsets`` attribute.
    chunks : storage chunks of new outputs (default: the block shape).
    n_levels : multiscale levels added to each segmentation (default: until the rows/columns are <= 64).
    scheduler, workers : see :func:`connectomics.blocks.run_blockwise`.

    Returns
    -------
    dict with the output paths, the number of fragments, edges and segments per threshold.
    """
    from connectomics.io import add_multiscale_levels, create_ome_zarr_array

    volume = open_input(str(affs_path))
    if volume.data.ndim != 4:
        raise ValueError(f"affinities {affs_path} must have 4 axes (channel, plane, row, column), "
                         f"got shape {volume.data.shape}")
    offsets = read_affinity_offsets(str(affs_path)) or (None if offsets is None else
                                                         [list(map(int, o)) for o in offsets])
    if offsets is None:
        raise ValueError(f"{affs_path} has no 'affinity_offsets' attribute; pass the offsets (--offsets)")
    if len(offsets) != volume.data.shape[0]:
        raise ValueError(f"{len(offsets)} offsets for {volume.data.shape[0]} affinity channels in "
                         f"{affs_path}")
    nn = tuple(nearest_neighbour_channels(offsets))
    thresholds = sorted({float(t) for t in thresholds})
    block_shape = as_coordinate(block_shape, 3, name="block")
    context = as_coordinate(context, 3, name="context")
    chunks = block_shape if chunks is None else as_coordinate(chunks, 3, name="chunks")
    check_chunk_aligned(block_shape, chunks, what=str(output_path))
    voxel_size = tuple(float(v) for v in volume.voxel_size[-3:])
    spatial_offset = tuple(float(v) for v in volume.offset[-3:])
    volume_roi = Roi((0, 0, 0), tuple(volume.data.shape[1:]))
    folder = Path(f"{output_path}.blockwise")
    config = {
        "job": "segment", "affinities": str(affs_path), "shape": list(volume.data.shape), "offsets": offsets,
        "block": list(block_shape), "context": list(context), "chunks": list(chunks),
        "thresholds": thresholds, "min_size": int(min_size), "seed_threshold": float(seed_threshold),
        "seed_radius": int(seed_radius), "min_seed_distance": float(min_seed_distance),
    }
    check_or_write_manifest(folder / "manifest.json", config, job="segment")
    blocks = block_grid(volume_roi, block_shape, context, origin=(0, 0, 0))

    def create(name: str):
        return create_ome_zarr_array(f"{output_path}/{name}", shape=volume_roi.shape, dtype="uint64",
                                     chunks=chunks, axes=("z", "y", "x"), voxel_size=voxel_size,
                                     offset=spatial_offset, fill_value=0, exists_ok=True)

    fragments = create("fragments")
    fragments_path = f"{output_path}/fragments"
    run = dict(scheduler=scheduler, workers=workers, progress=progress)
    run_blockwise(FragmentsStep(str(affs_path), nn, str(fragments.store.root),
                                fragments.path, int(np.prod([b + 2 * c for b, c in zip(block_shape,
                                                                                        context)])),
                                float(seed_threshold),
                                int(seed_radius), float(min_seed_distance), voxel_size),
                  blocks, DoneMarkers(folder / "fragments_done"), desc="fragments", **run
                  ).raise_for_failures("segment (fragments)")
    edges = folder / "region_graph"
    edges.mkdir(parents=True, exist_ok=True)
    run_blockwise(RegionGraphStep(str(affs_path), fragments_path, nn, volume_roi, str(edges)),
                  blocks, DoneMarkers(folder / "region_graph_done"), desc="region graph", **run
                  ).raise_for_failures("segment (region graph)")

    lut_path = folder / "lut.npz"
    if not lut_path.exists():
        parts = []
        for block in blocks:
            with np.load(edges / f"{block.block_id}.npz") as part:
                parts.append(RegionGraph(**{k: part[k] for k in part.files}))
        graph = RegionGraph.merge(parts)
        luts = agglomerate(graph, thresholds, min_size=min_size)
        tmp = folder / ".lut.tmp.npz"
        np.savez(tmp, fragments=graph.fragments, n_edges=np.int64(len(graph.u)),
                 **{threshold_name(t): lut for t, lut in luts.items()})
        tmp.replace(lut_path)
    summary: dict[str, Any] = {"fragments": fragments_path}
    with np.load(lut_path) as lut:
        summary["n_fragments"] = int(len(lut["fragments"]))
        summary["n_edges"] = int(lut["n_edges"])
        summary["n_segments"] = {t: int(len(np.unique(lut[threshold_name(t)][lut[threshold_name(t)] > 0])))
                                 for t in thresholds}
    if n_levels is None:
        n_levels = max(0, int(np.floor(np.log2(max(min(volume_roi.shape[1:]), 1) / 64))) + 1) if \
            min(volume_roi.shape[1:]) > 64 else 0
    summary["segmentations"] = {}
    for t in thresholds:
        name = threshold_name(t)
        seg = create(name)
        run_blockwise(RelabelStep(fragments_path, str(lut_path), t, str(seg.store.root), seg.path), blocks,
                      DoneMarkers(folder / f"{name}_done"), desc=name, **run
                      ).raise_for_failures(f"segment ({name})")
        levels_marker = folder / f"{name}_levels_done"
        if n_levels and not levels_marker.exists():
            add_multiscale_levels(f"{output_path}/{name}", n_levels, method="mode")
            atomic_write_text(levels_marker, "")
        summary["segmentations"][t] = f"{output_path}/{name}"
    return summary


# --------------------------------------------------------------------------------------------------------
# command line

DESCRIPTION = """Affinities to a neuron segmentation, block by block, at any scale.

  connectomics segment pred.zarr/affs seg.zarr --thresholds 0.3,0.5,0.7 --block 64,256,256

Writes seg.zarr/fragments (seeded-watershed fragments, globally unique uint64 ids) and one OME-Zarr
segmentation seg.zarr/seg_<threshold> per threshold (uint64, multiscale levels by label mode), stitched
across block faces through one global region graph agglomerated by mean affinity (threshold = merge score
1 - mean affinity, as in waterz: higher thresholds merge more). Rerunning resumes: finished blocks and
stages are skipped (bookkeeping in seg.zarr.blockwise/); a rerun with other settings is refused.
--in-memory runs the same algorithm on arrays in memory (for volumes that fit) and writes the same outputs."""


def cli(argv: list[str]) -> int:
    """``connectomics segment``: see ``connectomics segment --help``."""
    from shared.cli import subcommand_parser

    parser = subcommand_parser("connectomics segment", DESCRIPTION)
    parser.add_argument("affinities", help="affinities (channel, plane, row, column), e.g. pred.zarr/affs")
    parser.add_argument("output", help="output container, e.g. seg.zarr")
    parser.add_argument("--thresholds", default="0.5", help="comma-separated merge thresholds")
    parser.add_argument("--block", default="64,256,256", help="block shape Z,Y,X (voxels)")
    parser.add_argument("--context", default="4,16,16", help="watershed context around each block, Z,Y,X")
    parser.add_argument("--min-size", type=int, default=0, help="dust removal: smaller segments become 0")
    parser.add_argument("--seed-threshold", type=float, default=0.5, help="boundary < this is seed interior")
    parser.add_argument("--seed-radius", type=int, default=4, help="in-plane radius of seed maxima (voxels)")
    parser.add_argument("--min-seed-distance", type=float, default=2.0,
                        help="seeds lie at least this far from the boundary (voxels of the finest axis)")
    parser.add_argument("--offsets", default=None,
                        help="affinity offsets 'z,y,x;z,y,x;...' if the input has no affinity_offsets attr")
    parser.add_argument("--chunks", default=None, help="storage chunks Z,Y,X (default: the block shape)")
    parser.add_argument("--in-memory", action="store_true", help="load everything and segment in memory")
    parser.add_argument("--scheduler", default=None, help="dask.distributed scheduler address")
    parser.add_argument("--workers", type=int, default=None, help="local threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        thresholds = [float(t) for t in args.thresholds.split(",")]
        offsets = None if args.offsets is None else [parse_coordinate(o, name="--offsets")
                                                     for o in args.offsets.split(";")]
        kwargs = dict(thresholds=thresholds, block_shape=parse_coordinate(args.block, name="--block"),
                      context=parse_coordinate(args.context, name="--context"), min_size=args.min_size,
                      seed_threshold=args.seed_threshold, seed_radius=args.seed_radius,
                      min_seed_distance=args.min_seed_distance, offsets=offsets,
                      chunks=None if args.chunks is None else parse_coordinate(args.chunks, name="--chunks"))
        if args.in_memory:
            summary = segment_to_zarr_in_memory(args.affinities, args.output, **kwargs)
        else:
            summary = segment_blockwise(args.affinities, args.output, scheduler=args.scheduler,
                                        workers=args.workers, progress=not args.no_progress, **kwargs)
    except (ValueError, FileNotFoundError, TypeError, RuntimeError) as err:
        print(f"connectomics segment: error: {err}", file=sys.stderr)
        return 1
    print("segment: " + json.dumps(summary, default=str))
    return 0


def segment_to_zarr_in_memory(affs_path: str, output_path: str, *, thresholds: Sequence[float],
                              block_shape: Sequence[int], context: Sequence[int] | int, min_size: int,
                              seed_threshold: float, seed_radius: int, min_seed_distance: float = 2.0,
                              offsets: Sequence[Sequence[int]] | None = None,
                              chunks: Sequence[int] | None = None) -> dict[str, Any]:
    """The fast path of the command: read the whole prediction, :func:`segment_in_memory`, write outputs.

    Writes the same ``seg_<t>`` datasets as :func:`segment_blockwise` (the outputs must not exist yet).
    """
    from connectomics.io import add_multiscale_levels, create_ome_zarr_array

    volume = open_input(str(affs_path))
    offsets = read_affinity_offsets(str(affs_path)) or offsets
    if offsets is None:
        raise ValueError(f"{affs_path} has no 'affinity_offsets' attribute; pass the offsets (--offsets)")
    affs = np.asarray(volume.data.compute())
    block_shape = as_coordinate(block_shape, 3, name="block")
    segs = segment_in_memory(affs, offsets, thresholds=thresholds, block_shape=block_shape, context=context,
                             min_size=min_size, seed_threshold=seed_threshold, seed_radius=seed_radius,
                             min_seed_distance=min_seed_distance,
                             sampling=tuple(float(v) for v in volume.voxel_size[-3:]))
    chunks = block_shape if chunks is None else as_coordinate(chunks, 3, name="chunks")
    out = {}
    for t, seg in segs.items():
        path = f"{output_path}/{threshold_name(t)}"
        array = create_ome_zarr_array(path, shape=seg.shape, dtype="uint64", chunks=chunks,
                                      axes=("z", "y", "x"), voxel_size=tuple(volume.voxel_size[-3:]),
                                      offset=tuple(volume.offset[-3:]),
                                      fill_value=0, exists_ok=False)
        array[...] = seg
        if min(seg.shape[1:]) > 64:
            add_multiscale_levels(path, int(np.floor(np.log2(min(seg.shape[1:]) / 64))) + 1, method="mode")
        out[t] = path
    return {"segmentations": out, "n_segments": {t: int(len(np.unique(s[s > 0]))) for t, s in segs.items()}}
