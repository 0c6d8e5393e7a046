"""Stage 1, fragments: over-segmentations of the affinity graph.

Two methods (:data:`connectomics.segment.settings.FRAGMENT_METHODS`):

* ``waterz`` (:func:`waterz_fragments`, the default): the watershed of waterz/zwatershed
  (``basic_watershed.hpp``, Zlateski & Seung): every voxel points along its strongest edges (those equal to
  its maximum affinity, plus every edge >= ``high``); plateaus are divided breadth-first from their exits;
  the basins of this steepest-ascent graph are the fragments. A voxel whose strongest edge is <= ``low``
  joins nothing and is background 0. Thin processes get their own fragments (a voxel inside a neurite
  points along it), and large low-affinity regions do not glue objects together.
* ``seeded`` (:func:`seeded_fragments`): seeds at maxima of the distance transform of the boundary map,
  grown over the whole region by an edge watershed. It suits fat convex cells, not neurites (thin
  processes get no seed and are absorbed by their neighbours).

Affinity convention: ``affs_nn[a, z, y, x]`` is the affinity between voxel ``(z, y, x)`` and its
predecessor along axis ``a`` (offsets (-1,0,0), (0,-1,0), (0,0,-1), as waterz expects).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
from scipy import ndimage

from connectomics.blocks import Block
from connectomics.segment.settings import SegmentSettings

NEAREST_NEIGHBOUR_OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))


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
        raise ValueError(
            f"affinity offsets {[list(o) for o in offsets]} need the nearest-neighbour offsets "
            "(-1,0,0), (0,-1,0), (0,0,-1) (edge to the previous voxel, as waterz expects)"
        )
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
            nxt, item, used, top = _queue_neighbours(
                v, labels, flat_levels, shape, strides, queued, head, tail, nxt, item, used, top
            )
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
        nxt, item, used, top = _queue_neighbours(
            v, labels, flat_levels, shape, strides, queued, head, tail, nxt, item, used, top
        )


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


def seeded_fragments(
    affs_nn: np.ndarray,
    *,
    seed_threshold: float = 0.5,
    seed_radius: int = 4,
    min_seed_distance: float = 2.0,
    sampling: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
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


# waterz's direction bits: -z, -y, -x, +z, +y, +x; then the bit of the reverse direction; 0x40 = visited
_DIRECTION_BITS = np.array([0x01, 0x02, 0x04, 0x08, 0x10, 0x20], np.uint8)
_REVERSE_BITS = np.array([0x08, 0x10, 0x20, 0x01, 0x02, 0x04], np.uint8)
_VISITED = np.uint8(0x40)


@numba.njit(cache=True)
def _steepest_ascent(affs, low, high):  # pragma: no cover - compiled
    """Direction bits of every voxel: the edges equal to its strongest one or >= high (none if <= low)."""
    depth, height, width = affs.shape[1:]
    bits = np.zeros(depth * height * width, np.uint8)
    i = 0
    for z in range(depth):
        for y in range(height):
            for x in range(width):
                negz = affs[0, z, y, x] if z > 0 else low
                negy = affs[1, z, y, x] if y > 0 else low
                negx = affs[2, z, y, x] if x > 0 else low
                posz = affs[0, z + 1, y, x] if z < depth - 1 else low
                posy = affs[1, z, y + 1, x] if y < height - 1 else low
                posx = affs[2, z, y, x + 1] if x < width - 1 else low
                m = max(negz, negy, negx, posz, posy, posx)
                b = 0
                if m > low:
                    b |= 0x01 if (negz == m or negz >= high) else 0
                    b |= 0x02 if (negy == m or negy >= high) else 0
                    b |= 0x04 if (negx == m or negx >= high) else 0
                    b |= 0x08 if (posz == m or posz >= high) else 0
                    b |= 0x10 if (posy == m or posy >= high) else 0
                    b |= 0x20 if (posx == m or posx >= high) else 0
                bits[i] = b
                i += 1
    return bits


@numba.njit(cache=True)
def _basins(bits, shape):  # pragma: no cover - compiled
    """waterz's plateau division and basin labelling on the direction bits (modified in place).

    Returns int64 labels (flat): 0 for voxels without direction (background), basins numbered 1.. in scan
    order of their first voxel, exactly as ``basic_watershed.hpp`` numbers them.
    """
    n = bits.size
    step = np.array([-shape[1] * shape[2], -shape[2], -1, shape[1] * shape[2], shape[2], 1], np.int64)
    queue = np.empty(n, np.int64)
    # plateau corners: voxels with an edge that the neighbour does not return
    tail = 0
    for idx in range(n):
        for d in range(6):
            if bits[idx] & _DIRECTION_BITS[d] and not bits[idx + step[d]] & _REVERSE_BITS[d]:
                bits[idx] |= _VISITED
                queue[tail] = idx
                tail += 1
                break
    # divide the plateaus: breadth-first from the corners, each voxel keeps one edge towards the exit
    head = 0
    while head < tail:
        idx = queue[head]
        to_set = np.uint8(0)
        for d in range(6):
            if bits[idx] & _DIRECTION_BITS[d]:
                him = idx + step[d]
                if bits[him] & _REVERSE_BITS[d]:
                    if not bits[him] & _VISITED:
                        queue[tail] = him
                        tail += 1
                        bits[him] |= _VISITED
                else:
                    to_set = _DIRECTION_BITS[d]
        bits[idx] = to_set
        head += 1
    # follow the edges to a labelled voxel, or label the whole path as a new basin
    labels = np.full(n, -1, np.int64)
    next_id = 1
    for idx in range(n):
        if bits[idx] == 0 and labels[idx] < 0:
            labels[idx] = 0
        if labels[idx] < 0 and bits[idx]:
            queue[0] = idx
            head, tail = 0, 1
            bits[idx] |= _VISITED
            while head < tail:
                me = queue[head]
                for d in range(6):
                    if bits[me] & _DIRECTION_BITS[d]:
                        him = me + step[d]
                        if labels[him] >= 0:
                            for k in range(tail):
                                labels[queue[k]] = labels[him]
                            tail = 0
                            break
                        if not bits[him] & _VISITED:
                            bits[him] |= _VISITED
                            queue[tail] = him
                            tail += 1
                head += 1
            if tail:
                for k in range(tail):
                    labels[queue[k]] = next_id
                next_id += 1
    return labels


def waterz_fragments(
    affs_nn: np.ndarray, *, low: float = 0.0001, high: float = 0.9999, return_pointers: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Fragments by waterz's watershed on the affinity graph (``basic_watershed.hpp``), voxel for voxel.

    Parameters
    ----------
    affs_nn : ndarray of shape (3, plane, row, column), float32 nearest-neighbour affinities in [0, 1]
        (offsets (-1,0,0), (0,-1,0), (0,0,-1)).
    low : a voxel whose strongest edge is <= ``low`` is background (0); edges out of the array count as
        ``low``.
    high : edges >= ``high`` join their voxels whatever the voxels' strongest edges are.
    return_pointers : also return the final direction bits (uint8, plane/row/column; bits 0-5 = towards
        -z, -y, -x, +z, +y, +x): a voxel pointing to a neighbour lies in the neighbour's basin.

    Returns
    -------
    ndarray of shape (plane, row, column), int64: 0 = background, basins 1..n in order of their first
    voxel (C order), the ids waterz gives; with ``return_pointers``, (labels, pointers).

    Examples
    --------
    >>> affs = np.zeros((3, 1, 1, 5), np.float32)
    >>> affs[2, 0, 0, 1:] = [0.9, 0.2, 0.8, 0.0]  # edges x0-x1, x1-x2, x2-x3, x3-x4
    >>> waterz_fragments(affs)[0, 0].tolist()
    [1, 1, 2, 2, 0]
    """
    affs_nn = np.ascontiguousarray(affs_nn, np.float32)
    bits = _steepest_ascent(affs_nn, np.float32(low), np.float32(high))
    labels = _basins(bits, np.array(affs_nn.shape[1:], np.int64)).reshape(affs_nn.shape[1:])
    if return_pointers:
        return labels, (bits & ~_VISITED).reshape(affs_nn.shape[1:])
    return labels


@numba.njit(cache=True)
def _size_merge(u, v, counts, size_threshold):  # pragma: no cover - compiled
    """zwatershed's ``merge_segments_with_function`` loop: edges in the given order (decreasing affinity);
    join the two sets when either holds fewer than ``size_threshold`` voxels. Returns each label's root."""
    parent = np.arange(len(counts), dtype=np.int64)
    counts = counts.copy()
    for i in range(len(u)):
        a, b = u[i], v[i]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a != b and (counts[a] < size_threshold or counts[b] < size_threshold):
            if counts[a] < counts[b] or (counts[a] == counts[b] and b < a):
                a, b = b, a
            parent[b] = a
            counts[a] += counts[b]
    for i in range(len(parent)):
        root = i
        while parent[root] != root:
            root = parent[root]
        parent[i] = root
    return parent


def merge_small_fragments(labels: np.ndarray, affs_nn: np.ndarray, size_threshold: int, merge_low: float) -> np.ndarray:
    """zwatershed's size-based merge of watershed basins (Zlateski & Seung 2015, ``merge_segments_with_function``
    with ``const_above_threshold(size_threshold, merge_low)``, no dust removal).

    The region graph holds the maximum affinity between each pair of touching basins (zwatershed's
    ``get_region_graph``); its edges are visited in decreasing affinity (ties by the higher mean affinity of
    the edge's voxel pairs, then by basin ids) down to
    ``merge_low``, and two basins join when either of their current sets is smaller than ``size_threshold``
    voxels. A small fragment thus ends in the neighbour it is most strongly linked to. Background (0) joins
    nothing.

    Parameters
    ----------
    labels : ndarray of shape (plane, row, column), int64 basins from :func:`waterz_fragments` (0 =
        background).
    affs_nn : ndarray of shape (3, plane, row, column), float32 nearest-neighbour affinities (offsets
        (-1,0,0), (0,-1,0), (0,0,-1)).
    size_threshold : sets smaller than this (voxels) are merged; 0 returns ``labels`` unchanged.
    merge_low : edges below this maximum affinity merge nothing.

    Returns
    -------
    ndarray of shape (plane, row, column), int64 labels 1..m (0 = background), numbered in order of the
    smallest basin id they contain.

    Examples
    --------
    >>> labels = np.array([[[1, 1, 1, 2, 3, 3, 3]]])
    >>> affs = np.zeros((3,) + labels.shape, np.float32)
    >>> affs[2, 0, 0, 1:] = [1, 1, 0.6, 0.9, 1, 1]  # basin 2 is most strongly linked to basin 3
    >>> merge_small_fragments(labels, affs, size_threshold=2, merge_low=0.5)[0, 0].tolist()
    [1, 1, 1, 2, 2, 2, 2]
    """
    if size_threshold <= 0:
        return labels
    n = np.int64(labels.max(initial=0)) + 1
    keys, weights = [], []
    for axis in range(3):
        later, earlier = _pairs(axis)
        a, b = labels[later].ravel(), labels[earlier].ravel()
        affinity = affs_nn[axis][later].ravel()
        keep = (a != b) & (a > 0) & (b > 0) & (affinity >= merge_low)
        a, b = a[keep], b[keep]
        keys.append(np.minimum(a, b) * n + np.maximum(a, b))
        weights.append(affinity[keep])
    keys, weights = np.concatenate(keys), np.concatenate(weights)
    keys, inverse = np.unique(keys, return_inverse=True)
    strongest = np.full(len(keys), -np.inf, np.float32)
    np.maximum.at(strongest, inverse, weights)
    mean = np.bincount(inverse, weights, len(keys)) / np.bincount(inverse, minlength=len(keys))
    # decreasing maximum affinity, as zwatershed's sorted graph; clipped affinities tie at 1.0 on noisy
    # input, so ties go to the higher mean affinity (then the ids), not to an arbitrary neighbour
    order = np.lexsort((keys, -mean, -strongest))
    counts = np.bincount(labels.ravel(), minlength=n).astype(np.int64)
    roots = _size_merge(keys[order] // n, keys[order] % n, counts, np.int64(size_threshold))
    _, dense = np.unique(roots, return_inverse=True)  # root 0 (background) stays first, i.e. 0
    return dense.astype(np.int64)[labels]


def block_fragments(
    affs_nn: np.ndarray, block: Block, settings: SegmentSettings, sampling: Sequence[float] = (1.0, 1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Fragments of one block, with globally unique ids, and the links across its lower faces.

    The watershed runs over the block's read ROI and is cropped to its write ROI, so a fragment that a
    whole-volume watershed would give is cut into pieces at block faces. For ``waterz`` fragments the cut
    is undone exactly where it can be seen: a voxel ``p`` on the write ROI's lower face along axis ``a``
    and its predecessor ``q`` (in the context, owned by the previous block) lie in one basin when either
    points to the other; bit ``a`` of ``links[p]`` records that, and the agglomeration merges such pieces
    before anything else (:func:`connectomics.segment.agglomeration.agglomerate`).

    Parameters
    ----------
    affs_nn : ndarray of shape (3, plane, row, column), float32 nearest-neighbour affinities over the
        block's read ROI.
    block : the block.
    settings : fragment method and its parameters; ``block_voxels`` sets the id range of a block.
    sampling : voxel size (plane, row, column), for ``seeded`` fragments.

    Returns
    -------
    fragments : ndarray of shape ``write_roi.shape``, uint64: ``block_id * settings.block_voxels + local
        id`` (local ids start at 1), 0 = background.
    links : ndarray of shape ``write_roi.shape``, uint8 link bits (0 for ``seeded`` fragments).
    """
    write = block.write_roi.to_slices(relative_to=block.read_roi)
    links = np.zeros(block.write_roi.shape, np.uint8)
    if settings.fragments == "waterz":
        labels, pointers = waterz_fragments(affs_nn, low=settings.low, high=settings.high, return_pointers=True)
        labels = merge_small_fragments(labels, affs_nn, settings.size_threshold, settings.merge_low)
        for axis in range(3):
            if block.write_roi.offset[axis] == block.read_roi.offset[axis]:
                continue  # no predecessor in the read ROI (volume border or no context)
            face = list(write)
            face[axis] = slice(write[axis].start, write[axis].start + 1)
            before = list(face)
            before[axis] = slice(face[axis].start - 1, face[axis].start)
            linked = (pointers[tuple(face)] & _DIRECTION_BITS[axis]) | (pointers[tuple(before)] & _REVERSE_BITS[axis])
            face_out = [slice(None)] * 3
            face_out[axis] = slice(0, 1)
            links[tuple(face_out)] |= np.where(linked > 0, np.uint8(1 << axis), np.uint8(0))
    else:
        labels = seeded_fragments(
            affs_nn,
            seed_threshold=settings.seed_threshold,
            seed_radius=settings.seed_radius,
            min_seed_distance=settings.min_seed_distance,
            sampling=sampling,
        )
    labels = labels[write]
    if labels.max(initial=0) > settings.block_voxels:
        raise ValueError(
            f"block {block.block_id}: {labels.max()} fragments exceed the id range {settings.block_voxels}"
        )
    base = np.uint64(block.block_id) * np.uint64(settings.block_voxels)
    out = labels.astype(np.uint64)
    out[labels > 0] += base
    return out, links
