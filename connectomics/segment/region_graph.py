"""Stage 2, the region graph: fragment adjacency with pooled affinities, one block at a time.

For every nearest-neighbour voxel pair owned by a block (the voxel storing the affinity lies in the write
ROI; its partner may lie in the neighbouring block, which is how pairs across block faces enter), the
affinity is added to the edge between the two fragments (sum, count), and fragment sizes are counted.
Background (fragment 0) is no region: its pairs make no edges, as in waterz's ``region_graph.hpp``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from connectomics.blocks import Roi
from connectomics.hashtable import find_slot, rehash
from connectomics.segment.settings import SegmentSettings

HISTOGRAM_BINS = 256
"""Bins of the affinity histograms of quantile scores (waterz's ``HistogramQuantileAffinity<..., 256>``)."""

SUM_STEPS = float(2**24)
"""Affinities are summed as multiples of ``1 / SUM_STEPS`` (float32's resolution in [0.5, 1]; a change of
at most 3e-8 below 0.5): float64 sums of up to 2**29 such values are exact, so an edge's pooled sum does not
depend on the order in which blocks and merges pool it (what lets the blockwise hierarchy equal the
global agglomeration bit for bit)."""


@numba.njit(cache=True)
def discretize(value, bins):  # pragma: no cover - compiled
    """waterz's ``discretize``: the bin of an affinity in [0, 1] (<= 0 -> 0, >= 1 -> bins - 1)."""
    if not value > 0:
        return 0
    if value >= 1:
        return bins - 1
    return min(int(value * bins), bins - 1)


@dataclass
class RegionGraph:
    """Fragment adjacency with summed affinities.

    Attributes
    ----------
    u, v : ndarray of shape (n_edges,), uint64 fragment ids, ``u < v``.
    affinity_sum : ndarray of shape (n_edges,), float64 sum of the affinities of the voxel pairs (each
        rounded to a multiple of ``1 / SUM_STEPS``, so that sums are exact).
    count : ndarray of shape (n_edges,), int64 number of voxel pairs.
    fragments : ndarray of shape (n_fragments,), uint64 fragment ids.
    sizes : ndarray of shape (n_fragments,), int64 voxels per fragment.
    links : ndarray of shape (n_edges,), int64 voxel pairs across a block face known to lie in one
        whole-volume fragment (see :func:`connectomics.segment.watershed.block_fragments`); an edge with
        links is merged before any other.
    histogram : ndarray of shape (n_edges, bins), uint32 counts of the edge's affinities in ``bins`` equal
        bins of [0, 1] (waterz's ``discretize``), for quantile scores; ``bins`` is 0 when not needed.
    """

    u: np.ndarray
    v: np.ndarray
    affinity_sum: np.ndarray
    count: np.ndarray
    fragments: np.ndarray
    sizes: np.ndarray
    links: np.ndarray | None = None
    histogram: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.links is None:
            self.links = np.zeros(len(self.u), np.int64)
        if self.histogram is None:
            self.histogram = np.zeros((len(self.u), 0), np.uint32)

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
        links = np.bincount(inverse, np.concatenate([p.links for p in parts]), len(keys)).astype(np.int64)
        histogram = np.concatenate([p.histogram for p in parts])
        if histogram.shape[1]:  # add the rows of equal edges: sort by edge, sum each run
            order = np.argsort(inverse, kind="stable")
            histogram = np.add.reduceat(histogram[order], np.searchsorted(inverse[order], np.arange(len(keys))))
        else:
            histogram = np.zeros((len(keys), 0), np.uint32)
        return RegionGraph(
            frags[keys // n],
            frags[keys % n],
            sums,
            counts,
            frags,
            sizes,
            links,
            histogram.astype(np.uint32, copy=False),
        )


@numba.njit(cache=True)
def _region_graph_kernel(fragments, origin, affs, links, offsets, bins):  # pragma: no cover - compiled
    """Edges (u < v, affinity sum, pair count, linked pairs, histogram of ``bins`` bins; in order of
    appearance) and fragment sizes of one block.

    ``links`` (uint8, like ``affs[0]``) flags with bit ``a`` the pairs along axis ``a`` known to lie in one
    fragment.

    ``fragments`` covers the block's write ROI (starting at ``origin`` inside it) plus partners; the voxel
    ``p`` of the write ROI is paired, for each axis ``a``, with ``p + offsets[a]`` when that lies inside
    ``fragments``, with affinity ``affs[a][p]``. Fragment ids are first numbered densely (a hash map
    consulted once per run of equal ids along a row), so pairs are keyed by one int64.
    """
    flat = fragments.reshape(-1)
    dense = np.empty(flat.size, np.int32)
    bits = 10
    id_keys, id_slots = np.full(1 << bits, -1, np.int64), np.empty(1 << bits, np.int64)
    ids = np.empty(flat.size + 1, np.int64)
    ids[0] = 0  # background keeps index 0 and takes part in no edge
    n_ids, last, last_index = 1, np.int64(flat[0]), np.int64(-1)
    for i in range(flat.size):
        if np.int64(flat[i]) != last or last_index < 0:  # runs of one id along rows: look up once per run
            last = np.int64(flat[i])
            if last == 0:
                last_index = 0
            else:
                h = find_slot(id_keys, last, bits)
                if id_keys[h] == last:
                    last_index = id_slots[h]
                else:
                    last_index, ids[n_ids] = n_ids, last
                    id_keys[h], id_slots[h] = last, n_ids
                    n_ids += 1
                    if 2 * n_ids > (1 << bits):  # keep the load below one half
                        bits += 1
                        id_keys, id_slots = rehash(ids[:n_ids], bits)
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
    linked = np.zeros(capacity, np.int64)
    # for histograms, each pair's (edge, bin) is recorded and counted at the end: growing a 2-D array of
    # histograms as edges appear was 10x slower
    pair_edges, pair_bins, n_pairs = np.empty(1024 if bins else 0, np.int64), np.empty(1024 if bins else 0, np.uint8), 0
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
                    if a == b or a == 0 or b == 0:
                        continue  # background is not a region (as in waterz)
                    key = min(a, b) * n_ids + max(a, b)
                    if key == cached_key:
                        k = cached_slot
                    else:
                        h = find_slot(table_keys, key, table_bits)
                        if table_keys[h] == key:
                            k = table_slots[h]
                        else:
                            k = n
                            if n == capacity:
                                capacity *= 2
                                pairs = np.concatenate((pairs, np.empty(n, np.int64)))
                                sums = np.concatenate((sums, np.zeros(n)))
                                counts = np.concatenate((counts, np.zeros(n, np.int64)))
                                linked = np.concatenate((linked, np.zeros(n, np.int64)))
                            pairs[k] = key
                            n += 1
                            table_keys[h], table_slots[h] = key, k
                            if 2 * n > (1 << table_bits):  # keep the load below one half
                                table_bits += 1
                                table_keys, table_slots = rehash(pairs[:n], table_bits)
                    cached_key, cached_slot = key, k
                    sums[k] += np.floor(affs[axis, z, y, x] * SUM_STEPS + 0.5) / SUM_STEPS
                    if (links[z, y, x] >> axis) & 1:
                        linked[k] += 1
                    if bins:
                        if n_pairs == len(pair_edges):
                            pair_edges = np.concatenate((pair_edges, np.empty(n_pairs, np.int64)))
                            pair_bins = np.concatenate((pair_bins, np.empty(n_pairs, np.uint8)))
                        pair_edges[n_pairs], pair_bins[n_pairs] = k, discretize(affs[axis, z, y, x], bins)
                        n_pairs += 1
                    counts[k] += 1
    histogram = np.zeros((n, bins), np.uint32)
    for i in range(n_pairs):
        histogram[pair_edges[i], pair_bins[i]] += 1
    u, v = ids[pairs[:n] // n_ids], ids[pairs[:n] % n_ids]
    swap = u > v  # dense numbering follows the scan, not the ids: restore u < v
    u, v = np.where(swap, v, u), np.where(swap, u, v)
    own = sizes > 0
    own[0] = False
    return u, v, sums[:n], counts[:n], linked[:n], histogram[:n], ids[:n_ids][own], sizes[own]


def block_region_graph(
    fragments: np.ndarray,
    affs_nn: np.ndarray,
    write_roi: Roi,
    fragments_roi: Roi,
    nn: Sequence[tuple[int, tuple[int, int, int]]],
    settings: SegmentSettings | None = None,
    links: np.ndarray | None = None,
) -> RegionGraph:
    """The region graph of the voxel pairs owned by one block.

    Parameters
    ----------
    fragments : ndarray of shape ``fragments_roi.shape``, uint64; ``fragments_roi`` is ``write_roi`` grown
        by one voxel towards each offset (clipped to the volume), so partners across faces are included.
    affs_nn : ndarray of shape (3, *write_roi.shape), float32 nearest-neighbour affinities.
    nn : (channel, offset) per axis from :func:`nearest_neighbour_channels`.
    settings : a quantile ``score`` adds affinity histograms of :data:`HISTOGRAM_BINS` bins.
    links : ndarray of shape ``write_roi.shape``, uint8 face links from
        :func:`connectomics.segment.watershed.block_fragments` (default: none).
    """
    links = np.zeros(write_roi.shape, np.uint8) if links is None else np.ascontiguousarray(links, np.uint8)
    bins = HISTOGRAM_BINS if (settings or SegmentSettings()).quantile >= 0 else 0
    origin = np.array(write_roi.offset, np.int64) - np.array(fragments_roi.offset, np.int64)
    offsets = np.array([offset for _, offset in nn], np.int64)
    u, v, sums, counts, linked, histogram, frags, sizes = _region_graph_kernel(
        np.ascontiguousarray(fragments), origin, np.ascontiguousarray(affs_nn, np.float32), links, offsets, bins
    )
    order = np.lexsort((v, u))  # sorted by (u, v) so the graph does not depend on the scan order
    u, v, sums, counts, linked, histogram = (
        u[order],
        v[order],
        sums[order],
        counts[order],
        linked[order],
        histogram[order],
    )
    order = np.argsort(frags)
    frags, sizes = frags[order], sizes[order]
    return RegionGraph(
        u.astype(np.uint64),
        v.astype(np.uint64),
        sums,
        counts,
        frags.astype(np.uint64),
        sizes.astype(np.int64),
        linked,
        histogram,
    )
