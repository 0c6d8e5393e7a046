"""Affinities to a consistent neuron segmentation at any scale: ``connectomics segment``.

The pipeline (lsd/volara-style, four stages, each resumable):

1. **fragments**, per block (:func:`watershed_fragments`): boundary map ``1 - min`` of the six
   nearest-neighbour affinities of each voxel; seeds are the local maxima of the distance transform of
   ``boundary < seed_threshold``; the seeds grow by a seeded watershed on the affinity edge graph
   (:func:`edge_watershed`: a priority flood in decreasing affinity, i.e. Prim/maximin order), so a voxel
   next to a cut joins the object its strongest edge leads to. It runs over the block's read ROI (write
   ROI + context, so seeds and basins just outside the block shape the fragments inside it) and is cropped
   to the write ROI. Fragment ids are globally unique uint64: ``block_id * read_voxels + local id``.
2. **region graph**, per block: for every nearest-neighbour voxel pair owned by the block (the voxel storing
   the affinity lies in the write ROI; its partner may lie in the neighbouring block, which is how pairs
   across block faces enter), the affinity is added to the edge between the two fragments (sum, count),
   and fragment sizes are counted.
3. **agglomeration**, once, on the global region graph: hierarchical merging by mean affinity (the waterz
   ``OneMinus<MeanAffinity>`` score ``1 - mean affinity``): the edge with the lowest score is merged next,
   merged edges pool their sums and counts, and the partition is recorded each time the next score reaches
   a threshold (several thresholds in one run, as waterz does). Segments smaller than ``min_size`` voxels
   (dust) become background 0. The result is a lookup table fragment -> segment per threshold. The merge
   loop is compiled with numba (:func:`_merge_regions`; the first call in a fresh install compiles it and
   caches the machine code).
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

The region graph (one entry per fragment pair) is held in memory during agglomeration: about 140 bytes
per edge (32 for the graph, ~105 for the merge loop's arrays, edge table and queue), so memory grows with
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

import numba
import numpy as np
from scipy import ndimage

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
    trim_free_memory,
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


AFFINITY_LEVELS = 256
"""Quantisation of the affinities for the bucketed priority queue of :func:`edge_watershed` (uint8 exact)."""


@numba.njit(cache=True)
def _queue_neighbours(v, labels, flat_levels, shape, strides, queued, head, tail, nxt, item, used, top):
    """Queue the unlabelled neighbours of voxel ``v`` at the level of their edge to it (FIFO buckets)."""
    z = v // strides[0]
    y = (v - z * strides[0]) // strides[1]
    coords = (z, y, v - z * strides[0] - y * strides[1])
    for a in range(3):
        for step in (-1, 1):
            if (step < 0 and coords[a] == 0) or (step > 0 and coords[a] == shape[a] - 1):
                continue
            w = v + step * strides[a]
            if labels[w] != 0:
                continue
            level = np.int64(flat_levels[a, v] if step < 0 else flat_levels[a, w])
            if level <= queued[w]:
                continue
            queued[w] = level
            if used == len(item):  # grow the entry pool (rarely: it starts at two entries per voxel)
                nxt = np.concatenate((nxt, np.empty(len(item), np.int64)))
                item = np.concatenate((item, np.empty(len(item), np.int64)))
            nxt[used], item[used] = -1, w
            if tail[level] < 0:
                head[level] = used
            else:
                nxt[tail[level]] = used
            tail[level] = used
            used += 1
            top = max(top, level)
    return nxt, item, used, top


@numba.njit(cache=True)
def _flood(labels, levels, n_levels):  # pragma: no cover - compiled
    """Grow ``labels`` (flat, 0 = unlabelled) in place in decreasing edge level (bucketed Prim order).

    ``levels[a, v]`` (int64, 0..n_levels-1) is the quantised affinity between voxel ``v`` and its
    predecessor along axis ``a``. A voxel is queued at the level of its strongest edge to a labelled voxel
    (again when a stronger one appears); when popped it takes the label of the labelled neighbour it is most
    strongly linked to. Buckets are FIFO, so plateaus fill breadth-first from the seeds.
    """
    shape = levels.shape[1:]
    n = labels.size
    strides = (np.int64(shape[1] * shape[2]), np.int64(shape[2]), np.int64(1))
    flat_levels = levels.reshape(3, n)
    head = np.full(n_levels, -1, np.int64)
    tail = np.full(n_levels, -1, np.int64)
    nxt = np.empty(max(1024, 2 * n), np.int64)
    item = np.empty(max(1024, 2 * n), np.int64)
    queued = np.full(n, -1, np.int64)  # the highest level each voxel has been queued at
    used, top = np.int64(0), np.int64(-1)
    for v in range(n):
        if labels[v] != 0:
            nxt, item, used, top = _queue_neighbours(v, labels, flat_levels, shape, strides, queued, head,
                                                     tail, nxt, item, used, top)
    while top >= 0:
        entry = head[top]
        if entry < 0:
            top -= 1
            continue
        head[top] = nxt[entry]
        if head[top] < 0:
            tail[top] = -1
        v = item[entry]
        if labels[v] != 0:
            continue
        z = v // strides[0]
        y = (v - z * strides[0]) // strides[1]
        coords = (z, y, v - z * strides[0] - y * strides[1])
        best, best_label = np.int64(-1), labels[v]
        for a in range(3):
            for step in (-1, 1):
                if (step < 0 and coords[a] == 0) or (step > 0 and coords[a] == shape[a] - 1):
                    continue
                w = v + step * strides[a]
                level = np.int64(flat_levels[a, v] if step < 0 else flat_levels[a, w])
                if labels[w] != 0 and level > best:
                    best, best_label = level, labels[w]
        labels[v] = best_label
        nxt, item, used, top = _queue_neighbours(v, labels, flat_levels, shape, strides, queued, head, tail,
                                                 nxt, item, used, top)


def edge_watershed(seeds: np.ndarray, affs_nn: np.ndarray) -> np.ndarray:
    """Seeded watershed on the affinity edge graph: every voxel joins the seed of its maximin path.

    A priority flood from the seeds in decreasing affinity (Prim's order on the six-connected voxel graph
    whose edge weights are the nearest-neighbour affinities): the unlabelled voxel with the strongest edge to
    a labelled one is labelled next, from the neighbour at the other end of that edge. Unlike a node
    watershed on a boundary map, where both voxels beside a cut look alike, the decision is made on the
    edge itself, so each voxel next to a cut stays with its own object. Affinities are quantised to
    :data:`AFFINITY_LEVELS` levels (a bucketed queue, O(voxels)); equal levels fill breadth-first.

    Parameters
    ----------
    seeds : ndarray of shape (plane, row, column), int; 0 = unlabelled. Not modified.
    affs_nn : ndarray of shape (3, plane, row, column), float32 nearest-neighbour affinities in [0, 1]
        (offsets (-1,0,0), (0,-1,0), (0,0,-1)).

    Returns
    -------
    ndarray of shape (plane, row, column), int64; every voxel connected to a seed is labelled (all of them
    when there is at least one seed).

    Examples
    --------
    >>> affs = np.ones((3, 1, 1, 6), np.float32)
    >>> affs[2, 0, 0, 3] = 0.0  # a cut between voxels 2 and 3
    >>> seeds = np.zeros((1, 1, 6), np.int64); seeds[0, 0, 0], seeds[0, 0, 5] = 1, 2
    >>> edge_watershed(seeds, affs)[0, 0].tolist()
    [1, 1, 1, 2, 2, 2]
    """
    if affs_nn.shape != (3,) + seeds.shape:
        raise ValueError(f"affinities of shape {affs_nn.shape} do not match seeds of shape {seeds.shape}")
    levels = np.rint(np.clip(affs_nn, 0.0, 1.0) * (AFFINITY_LEVELS - 1)).astype(np.uint8)
    labels = np.ascontiguousarray(seeds, dtype=np.int64).copy()
    _flood(labels.reshape(-1), np.ascontiguousarray(levels), AFFINITY_LEVELS)
    return labels


def watershed_fragments(affs_nn: np.ndarray, *, seed_threshold: float = 0.5, seed_radius: int = 4,
                        min_seed_distance: float = 2.0,
                        sampling: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Fragments: seeds from the distance transform of the boundary map, grown on the affinity edges.

    1. interior = ``boundary_map(affs_nn) < seed_threshold``; its Euclidean distance transform (in nm when
       ``sampling`` is the voxel size);
    2. seeds = local maxima of the distance within a (1, 2r+1, 2r+1) neighbourhood, at least
       ``min_seed_distance`` (in voxels of the finest axis) from the boundary, so noise bridges between
       touching objects (distance about 1) do not seed fragments that span both;
    3. the seeds grow over the whole region by :func:`edge_watershed` (maximin order on the affinities).

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
    return edge_watershed(seeds, affs_nn)


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
        frags, finv = np.unique(np.concatenate([p.fragments for p in parts]), return_inverse=True)
        sizes = np.bincount(finv.ravel(), np.concatenate([p.sizes for p in parts]), len(frags)).astype(np.int64)
        # one int64 key per edge from the fragments' indices: far less memory than np.unique over pairs
        n = np.int64(len(frags))
        keys = np.searchsorted(frags, np.concatenate([p.u for p in parts])).astype(np.int64) * n
        keys += np.searchsorted(frags, np.concatenate([p.v for p in parts]))
        keys, inverse = np.unique(keys, return_inverse=True)
        sums = np.bincount(inverse, np.concatenate([p.affinity_sum for p in parts]), len(keys))
        counts = np.bincount(inverse, np.concatenate([p.count for p in parts]), len(keys)).astype(np.int64)
        return RegionGraph(frags[keys // n], frags[keys % n], sums, counts, frags, sizes)


@numba.njit(cache=True)
def _hash_slot(key, bits):  # pragma: no cover - compiled
    """Fibonacci hashing of an integer key (int64 >= 0 or uint64) to ``bits`` bits."""
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))


@numba.njit(cache=True)
def _find_slot(table_keys, key, bits):  # pragma: no cover - compiled
    """Slot of ``key`` in a linear-probing table (``-1`` = empty), or of the empty slot it would take."""
    h = _hash_slot(key, bits)
    while table_keys[h] != key and table_keys[h] >= 0:
        h = (h + 1) & ((1 << bits) - 1)
    return h


@numba.njit(cache=True)
def _rehash(keys, bits):  # pragma: no cover - compiled
    """An open-addressing table (keys, slots) of ``2**bits`` entries holding ``keys[i] -> i``."""
    table_keys, table_slots = np.full(1 << bits, -1, np.int64), np.empty(1 << bits, np.int64)
    for i in range(len(keys)):
        h = _find_slot(table_keys, keys[i], bits)
        table_keys[h], table_slots[h] = keys[i], i
    return table_keys, table_slots


@numba.njit(cache=True)
def _delete_slot(table_keys, table_slots, h, bits):  # pragma: no cover - compiled
    """Empty slot ``h`` of a linear-probing table, moving later entries of its run back (no tombstones).

    An entry at ``j`` may fill the hole at ``h`` only if ``h`` lies on its probe path, that is, if its home
    slot is not cyclically within ``(h, j]``.
    """
    mask = (1 << bits) - 1
    j = h
    while True:
        j = (j + 1) & mask
        if table_keys[j] < 0:
            break
        home = _hash_slot(table_keys[j], bits)
        if (j > h and (home <= h or home > j)) or (j < h and home <= h and home > j):
            table_keys[h], table_slots[h] = table_keys[j], table_slots[j]
            h = j
    table_keys[h] = -1


@numba.njit(cache=True)
def _region_graph_kernel(fragments, origin, affs, offsets):  # pragma: no cover - compiled
    """Edges (u < v, affinity sum, pair count; in order of appearance) and fragment sizes of one block.

    ``fragments`` covers the block's write ROI (starting at ``origin`` inside it) plus partners; the voxel
    ``p`` of the write ROI is paired, for each axis ``a``, with ``p + offsets[a]`` when that lies inside
    ``fragments``, with affinity ``affs[a][p]``. Fragment ids are first numbered densely (a hash map
    consulted once per run of equal ids along a row), so pairs are keyed by one int64.
    """
    flat = fragments.reshape(-1)
    dense = np.empty(flat.size, np.int32)
    bits = 10
    id_keys, id_slots = np.zeros(1 << bits, fragments.dtype), np.full(1 << bits, -1, np.int64)
    ids = np.empty(flat.size, fragments.dtype)
    n_ids, zero_index, last, last_index = 0, -1, flat[0], -1
    for i in range(flat.size):
        if flat[i] != last or last_index < 0:  # runs of one id along rows: look up once per run
            last = flat[i]
            if last == 0:  # 0 marks empty table entries, so it has its own slot
                if zero_index < 0:
                    zero_index, ids[n_ids] = n_ids, last
                    n_ids += 1
                last_index = zero_index
            else:
                h = _hash_slot(last, bits)
                while id_keys[h] != last and id_keys[h] != 0:
                    h = (h + 1) & ((1 << bits) - 1)
                if id_keys[h] == last:
                    last_index = id_slots[h]
                else:
                    last_index, ids[n_ids] = n_ids, last
                    id_keys[h], id_slots[h] = last, n_ids
                    n_ids += 1
                    if 2 * n_ids > (1 << bits):  # keep the load below one half
                        bits += 1
                        id_keys, id_slots = np.zeros(1 << bits, fragments.dtype), np.full(1 << bits, -1, np.int64)
                        for j in range(n_ids):
                            if ids[j] != 0:
                                h = _hash_slot(ids[j], bits)
                                while id_keys[h] != 0:
                                    h = (h + 1) & ((1 << bits) - 1)
                                id_keys[h], id_slots[h] = ids[j], j
        dense[i] = last_index
    dense = dense.reshape(fragments.shape)
    shape = affs.shape[1:]
    sizes = np.zeros(n_ids, np.int64)
    # open-addressing hash map key -> slot (numba's dict is several times slower for this inner loop)
    table_bits = 12
    table_keys, table_slots = np.full(1 << table_bits, -1, np.int64), np.empty(1 << table_bits, np.int64)
    capacity = 1024
    pairs = np.empty(capacity, np.int64)
    sums, counts = np.zeros(capacity), np.zeros(capacity, np.int64)
    n = 0
    for z in range(shape[0]):
        for y in range(shape[1]):
            for x in range(shape[2]):
                sizes[dense[z + origin[0], y + origin[1], x + origin[2]]] += 1
    for axis in range(3):
        cached_key, cached_slot = np.int64(-1), np.int64(-1)  # pairs along a face repeat: skip the map
        for z in range(shape[0]):
            p0 = z + origin[0]
            q0 = p0 + offsets[axis, 0]
            if q0 < 0 or q0 >= fragments.shape[0]:
                continue  # partners outside the volume have no edge
            for y in range(shape[1]):
                p1 = y + origin[1]
                q1 = p1 + offsets[axis, 1]
                if q1 < 0 or q1 >= fragments.shape[1]:
                    continue
                for x in range(shape[2]):
                    p2 = x + origin[2]
                    q2 = p2 + offsets[axis, 2]
                    if q2 < 0 or q2 >= fragments.shape[2]:
                        continue
                    a, b = np.int64(dense[p0, p1, p2]), np.int64(dense[q0, q1, q2])
                    if a == b:
                        continue
                    key = min(a, b) * n_ids + max(a, b)
                    if key == cached_key:
                        k = cached_slot
                    else:
                        h = _find_slot(table_keys, key, table_bits)
                        if table_keys[h] == key:
                            k = table_slots[h]
                        else:
                            k = n
                            if n == capacity:
                                capacity *= 2
                                pairs = np.concatenate((pairs, np.empty(n, np.int64)))
                                sums = np.concatenate((sums, np.zeros(n)))
                                counts = np.concatenate((counts, np.zeros(n, np.int64)))
                            pairs[k] = key
                            n += 1
                            table_keys[h], table_slots[h] = key, k
                            if 2 * n > (1 << table_bits):  # keep the load below one half
                                table_bits += 1
                                table_keys, table_slots = _rehash(pairs[:n], table_bits)
                    cached_key, cached_slot = key, k
                    sums[k] += affs[axis, z, y, x]
                    counts[k] += 1
    u, v = ids[pairs[:n] // n_ids], ids[pairs[:n] % n_ids]
    swap = u > v  # dense numbering follows the scan, not the ids: restore u < v
    u, v = np.where(swap, v, u), np.where(swap, u, v)
    own = sizes > 0
    return u, v, sums[:n], counts[:n], ids[:n_ids][own], sizes[own]


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
    origin = np.array(write_roi.offset, np.int64) - np.array(fragments_roi.offset, np.int64)
    offsets = np.array([offset for _, offset in nn], np.int64)
    u, v, sums, counts, frags, sizes = _region_graph_kernel(np.ascontiguousarray(fragments), origin,
                                                            np.ascontiguousarray(affs_nn, np.float32), offsets)
    order = np.lexsort((v, u))  # sorted by (u, v) so the graph does not depend on the scan order
    u, v, sums, counts = u[order], v[order], sums[order], counts[order]
    order = np.argsort(frags)
    frags, sizes = frags[order], sizes[order]
    return RegionGraph(u.astype(np.uint64), v.astype(np.uint64), sums, counts, frags.astype(np.uint64),
                       sizes.astype(np.int64))


# --------------------------------------------------------------------------------------------------------
# stage 3: agglomeration


@numba.njit(cache=True)
def _merge_regions(index_u, index_v, affinity_sum, count, sizes, thresholds):  # pragma: no cover - compiled
    """The mean-affinity merge loop; returns the root of every fragment and the root sizes per threshold.

    Parameters
    ----------
    index_u, index_v : int64 (n_edges,) fragment indices of each edge, distinct pairs (overwritten).
    affinity_sum : float64 (n_edges,); count : int64 (n_edges,).
    sizes : int64 (n_fragments,) voxels per fragment.
    thresholds : float64 (n_thresholds,), increasing.

    Returns
    -------
    roots : int64 (n_thresholds, n_fragments); root_sizes : int64 (n_thresholds, n_fragments), the size of
    each root (meaningful at roots only).

    Edges live in a hash map keyed by their (smaller, larger) endpoint pair and in a linked incidence list
    per region. Merging region ``b`` into ``a`` (``b`` has the shorter list) moves each edge ``b - w`` to
    ``a - w``, pooling sum and count with an existing ``a - w`` edge (whose score changes, so it is queued
    again; the older queue entry goes stale and is skipped when popped) and appends ``b``'s list to ``a``'s.
    """
    n, n_edges = len(sizes), len(index_u)
    ends_u, ends_v = index_u, index_v  # overwritten as regions merge
    sums, counts = affinity_sum.copy(), count.copy()
    alive = np.ones(n_edges, np.bool_)
    size = sizes.copy()
    parent = np.arange(n)
    # (smaller, larger) region pair -> edge in a linear-probing table (with numba's typed dict the loop took
    # 233 instead of 105 bytes per edge and twice the time); edges only disappear: load stays below 2/3
    bits = 1
    while (1 << bits) < 3 * n_edges // 2 + 1:
        bits += 1
    edge_keys, edge_slots = np.full(1 << bits, -1, np.int64), np.empty(1 << bits, np.int64)
    for e in range(n_edges):
        key = min(ends_u[e], ends_v[e]) * n + max(ends_u[e], ends_v[e])
        h = _find_slot(edge_keys, key, bits)
        edge_keys[h], edge_slots[h] = key, e
    # incidence lists: entry 2e (in u's list) and 2e + 1 (in v's list) stand for edge e
    first = np.full(n, -1, np.int64)
    last = np.full(n, -1, np.int64)
    nxt = np.full(2 * n_edges, -1, np.int64)
    length = np.zeros(n, np.int64)
    for entry in range(2 * n_edges):
        node = ends_u[entry // 2] if entry % 2 == 0 else ends_v[entry // 2]
        if first[node] < 0:
            first[node] = entry
        else:
            nxt[last[node]] = entry
        last[node] = entry
        length[node] += 1
    # only edges that can merge at the highest threshold are queued now; an edge whose score later drops
    # (by pooling with a merged neighbour) is queued again at that merge
    highest = thresholds[-1] if len(thresholds) else 0.0
    heap = [(np.float64(1.0), np.int64(0)) for _ in range(0)]
    for e in range(n_edges):
        score = 1.0 - sums[e] / max(counts[e], 1)
        if score < highest:
            heap.append((score, np.int64(e)))
    heapq.heapify(heap)
    roots = np.empty((len(thresholds), n), np.int64)
    root_sizes = np.empty((len(thresholds), n), np.int64)
    for k in range(len(thresholds)):
        while len(heap) and heap[0][0] < thresholds[k]:
            score, e = heapq.heappop(heap)
            if not alive[e] or 1.0 - sums[e] / counts[e] != score:
                continue  # merged away or pooled since it was queued
            a, b = ends_u[e], ends_v[e]
            if length[a] < length[b]:
                a, b = b, a  # move the shorter incidence list
            alive[e] = False
            _delete_slot(edge_keys, edge_slots, _find_slot(edge_keys, min(a, b) * n + max(a, b), bits), bits)
            parent[b] = a
            size[a] += size[b]
            entry = first[b]
            while entry >= 0:
                g = entry // 2
                entry_next = nxt[entry]
                if alive[g]:
                    w = ends_v[g] if ends_u[g] == b else ends_u[g]
                    _delete_slot(edge_keys, edge_slots, _find_slot(edge_keys, min(b, w) * n + max(b, w), bits), bits)
                    key = min(a, w) * n + max(a, w)
                    h = _find_slot(edge_keys, key, bits)
                    if edge_keys[h] == key:
                        f = edge_slots[h]
                        sums[f] += sums[g]
                        counts[f] += counts[g]
                        alive[g] = False
                        pooled = 1.0 - sums[f] / counts[f]
                        if pooled < highest:
                            heapq.heappush(heap, (pooled, f))
                    else:
                        if ends_u[g] == b:
                            ends_u[g] = a
                        else:
                            ends_v[g] = a
                        edge_keys[h], edge_slots[h] = key, g
                entry = entry_next
            if first[b] >= 0:
                if first[a] < 0:
                    first[a] = first[b]
                else:
                    nxt[last[a]] = first[b]
                last[a] = last[b]
            length[a] += length[b]
        for i in range(n):
            root = i
            while parent[root] != root:
                root = parent[root]
            node = i
            while parent[node] != root:  # path compression
                parent[node], node = root, parent[node]
            roots[k, i] = root
        root_sizes[k] = size
    return roots, root_sizes


def agglomerate(graph: RegionGraph, thresholds: Sequence[float], *,
                min_size: int = 0) -> dict[float, np.ndarray]:
    """Mean-affinity hierarchical agglomeration of a region graph to several thresholds.

    The lowest-score edge (score ``1 - sum / count`` of its affinities) is merged next; edges that become
    parallel pool their sums and counts. One compiled run (:func:`_merge_regions`) serves all thresholds,
    so the segmentations are nested: each segment at a higher threshold is a union of segments at a
    lower one.

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

    Examples
    --------
    >>> graph = RegionGraph(u=np.array([1, 2], np.uint64), v=np.array([2, 3], np.uint64),
    ...                     affinity_sum=np.array([0.9, 0.2]), count=np.array([1, 1]),
    ...                     fragments=np.array([1, 2, 3], np.uint64), sizes=np.array([4, 4, 4]))
    >>> {t: lut.tolist() for t, lut in agglomerate(graph, [0.5, 0.9]).items()}
    {0.5: [1, 1, 2], 0.9: [1, 1, 1]}
    """
    order = sorted({float(t) for t in thresholds})
    roots, root_sizes = _merge_regions(  # the index arrays are fresh, so the kernel may overwrite them
        np.searchsorted(graph.fragments, graph.u).astype(np.int64, copy=False),
        np.searchsorted(graph.fragments, graph.v).astype(np.int64, copy=False),
        np.asarray(graph.affinity_sum, np.float64), np.asarray(graph.count, np.int64),
        np.asarray(graph.sizes, np.int64), np.asarray(order, np.float64))
    return {t: _number_segments(roots[k], root_sizes[k], min_size) for k, t in enumerate(order)}


def _number_segments(roots: np.ndarray, root_sizes: np.ndarray, min_size: int) -> np.ndarray:
    """Segment ids 1..k in order of each segment's first fragment; dust (size < min_size) -> 0."""
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # rank of each root by its first fragment
    keep = root_sizes[roots[first]] >= min_size
    ids = np.zeros(len(first), np.uint64)
    ranks = order[keep]
    ids[keep] = (np.argsort(np.argsort(ranks)) + 1).astype(np.uint64)
    return ids[inverse.ravel()]


@numba.njit(cache=True)
def _relabel_kernel(fragments, fragment_ids, segment_ids, out):  # pragma: no cover - compiled
    """``out[i] = segment_ids[j]`` with ``fragment_ids[j] == fragments[i]``.

    The ids of one block span a short range (``block_id * block_voxels + local id``), so a direct table over
    that range is used when it is at most four times the voxels; otherwise a binary search per new id.
    """
    lo, hi = fragments.min(), fragments.max()
    if np.int64(hi - lo) < 4 * len(fragments):
        first = np.searchsorted(fragment_ids, lo)
        table = np.zeros(np.int64(hi - lo) + 1, segment_ids.dtype)
        for j in range(first, len(fragment_ids)):
            if fragment_ids[j] > hi:
                break
            table[fragment_ids[j] - lo] = segment_ids[j]
        for i in range(len(fragments)):
            out[i] = table[fragments[i] - lo]
        return
    last, value = fragments[0], segment_ids[np.searchsorted(fragment_ids, fragments[0])]
    for i in range(len(fragments)):
        if fragments[i] != last:
            last = fragments[i]
            low, high = 0, len(fragment_ids)  # binary search: first index with fragment_ids[j] >= last
            while low < high:
                middle = (low + high) >> 1
                if fragment_ids[middle] < last:
                    low = middle + 1
                else:
                    high = middle
            value = segment_ids[low]
        out[i] = value


def relabel(fragments: np.ndarray, fragment_ids: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
    """Map fragment ids to segment ids through a lookup table.

    Parameters
    ----------
    fragments : ndarray of any shape, uint64 fragment ids, each one of ``fragment_ids``.
    fragment_ids : ndarray of shape (n_fragments,), uint64, sorted.
    segment_ids : ndarray of shape (n_fragments,), the segment of each fragment.

    Returns
    -------
    ndarray of the shape of ``fragments``, dtype of ``segment_ids``.
    """
    out = np.empty(fragments.shape, segment_ids.dtype)
    if fragments.size:
        fragments = np.ascontiguousarray(fragments, fragment_ids.dtype).reshape(-1)
        _relabel_kernel(fragments, fragment_ids, segment_ids, out.reshape(-1))
    return out


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
        trim_free_memory()  # the global graph should not sit on top of the block stages' freed buffers
        parts = []
        for block in blocks:
            with np.load(edges / f"{block.block_id}.npz") as part:
                parts.append(RegionGraph(**{k: part[k] for k in part.files}))
        graph = RegionGraph.merge(parts)
        del parts  # the per-block graphs are not needed during the agglomeration
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
