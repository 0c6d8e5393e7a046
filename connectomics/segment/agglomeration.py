"""Stage 3, agglomeration: hierarchical merging of the region graph (waterz's ``IterativeRegionMerging``),
and stage 4, relabelling fragments through the resulting lookup table.

The edge with the lowest score is merged next; edges that become parallel pool their statistics and are
scored again; the partition is recorded each time the next score reaches a threshold (several thresholds
in one run, as waterz does). Segments smaller than ``min_size`` voxels (dust) become background 0.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from connectomics.hashtable import delete_slot, find_slot
from connectomics.segment.region_graph import RegionGraph
from connectomics.segment.settings import SegmentSettings, resolve


@numba.njit(cache=True)
def _before(scores, keys, i, j):  # pragma: no cover - compiled
    """Heap order: lower score first, then the lower tie key ``keys[:, :2]`` (deterministic ties)."""
    if scores[i] != scores[j]:
        return scores[i] < scores[j]
    return keys[i, 0] < keys[j, 0] or (keys[i, 0] == keys[j, 0] and keys[i, 1] < keys[j, 1])


@numba.njit(cache=True)
def _swap(scores, keys, i, j):  # pragma: no cover - compiled
    scores[i], scores[j] = scores[j], scores[i]
    for c in range(3):
        keys[i, c], keys[j, c] = keys[j, c], keys[i, c]


@numba.njit(cache=True)
def _sift_down(scores, keys, size, i):  # pragma: no cover - compiled
    """Restore the min-heap below entry ``i`` (entry: ``scores[i]``; ``keys[i]`` = tie key pair, edge)."""
    while True:
        smallest, left = i, 2 * i + 1
        if left < size and _before(scores, keys, left, smallest):
            smallest = left
        if left + 1 < size and _before(scores, keys, left + 1, smallest):
            smallest = left + 1
        if smallest == i:
            return
        _swap(scores, keys, i, smallest)
        i = smallest


@numba.njit(cache=True)
def _push(scores, keys, size, score, tu, tv, edge):  # pragma: no cover - compiled
    """Add an entry to the heap of ``size`` entries; returns the new size."""
    i = size
    scores[i], keys[i, 0], keys[i, 1], keys[i, 2] = score, tu, tv, edge
    while i > 0 and _before(scores, keys, i, (i - 1) // 2):
        _swap(scores, keys, i, (i - 1) // 2)
        i = (i - 1) // 2
    return size + 1


@numba.njit(cache=True)
def _score(e, sums, counts, links, histogram, quantile):  # pragma: no cover - compiled
    """Merge score of edge ``e``: ``1 - mean`` or ``1 - quantile`` of its affinities; -1 (before anything
    else) for an edge between pieces of one fragment (``links``).

    The quantile is waterz's ``HistogramQuantileProvider``: the bin holding the ``Q * n // 100 + 1``-th
    smallest of the ``n`` affinities, at its centre ``(bin + 0.5) / bins``.
    """
    if links[e] > 0:
        return -1.0
    if quantile < 0:
        return 1.0 - sums[e] / max(counts[e], 1)
    bins = histogram.shape[1]
    pivot = quantile * counts[e] // 100 + 1
    total, b = 0, 0
    for b in range(bins):
        total += histogram[e, b]
        if total >= pivot:
            break
    return 1.0 - (b + 0.5) / bins


@numba.njit(cache=True)
def merge_regions(
    ends_u, ends_v, sums, counts, links, histogram, tops, quantile, frozen, highest
):  # pragma: no cover - compiled
    """The merge loop (waterz's ``IterativeRegionMerging``) up to score ``highest``, with frozen regions.

    Parameters (all pooled or overwritten in place)
    ----------
    ends_u, ends_v : int64 (n_edges,) region indices of each edge, distinct pairs; on return the current
        region (root) at each end of the edges still alive.
    sums : float64 (n_edges,); counts, links : int64 (n_edges,); histogram : uint32 (n_edges, bins)
        affinity histograms (bins may be 0 for the mean score).
    tops : int64 (n_regions,) the largest fragment of each region, as a region index (regions are indexed in
        increasing fragment id order), updated as regions merge. Equal scores are merged in increasing order
        of the two regions' (smaller, larger) top: a key that belongs to the pair of regions, not to how its
        edge was pooled, and that only grows as they merge.
    quantile : the score's quantile in percent, -1 for the mean.
    frozen : bool (n_regions,) regions that may not merge (their edges are not all known); a region whose
        best edge leads to a frozen region is frozen too on return (it must wait for it).
    highest : only merges with score < ``highest`` are made.

    Returns
    -------
    merge_a, merge_b : int64 (n_merges,) the two regions of each merge (``b`` joined ``a``, which stays the
    root); merge_score : float64 (n_merges,) its score; parent : int64 (n_regions,) union-find parents;
    alive : bool (n_edges,) edges neither merged nor pooled into another.

    Merges are those of the greedy loop: mean and quantile linkage are reducible (an edge pooled from two
    never comes before the better of them, tie key included), so a pair of regions that are each other's
    best edge may merge at any time, in any order, and the merge tree and its scores stay those of the
    global loop. With no frozen region, the lowest edge is merged next (the global loop itself); with
    frozen ones, the lowest edge between two unfrozen regions is such a mutual best pair (all their edges
    are known), which is what makes the blockwise hierarchy (:mod:`connectomics.segment.hierarchy`) exact.

    Edges live in a hash map keyed by their (smaller, larger) endpoint pair and in a linked incidence list
    per region. Merging region ``b`` into ``a`` (``b`` has the shorter list) moves each edge ``b - w`` to
    ``a - w``, pooling sum and count with an existing ``a - w`` edge (whose score changes, so it is queued
    again; the older queue entry goes stale and is skipped when popped) and appends ``b``'s list to ``a``'s.
    """
    n, n_edges = len(frozen), len(ends_u)
    alive = np.ones(n_edges, np.bool_)
    parent = np.arange(n)
    # (smaller, larger) region pair -> edge in a linear-probing table (with numba's typed dict the loop took
    # 233 instead of 105 bytes per edge and twice the time); edges only disappear: load stays below 2/3
    bits = 1
    while (1 << bits) < 3 * n_edges // 2 + 1:
        bits += 1
    edge_keys, edge_slots = np.full(1 << bits, -1, np.int64), np.empty(1 << bits, np.int64)
    for e in range(n_edges):
        key = min(ends_u[e], ends_v[e]) * n + max(ends_u[e], ends_v[e])
        h = find_slot(edge_keys, key, bits)
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
    # only edges that can merge below ``highest`` are queued; an edge whose score later drops (by pooling
    # with a merged neighbour) is queued again at that merge. A binary min-heap in two arrays (numba's heapq
    # on a list of tuples took 2x longer); each pooling pushes one entry and removes one edge, so 2 * n_edges
    # entries always suffice
    # keys (tie pair, edge) as int32: 20 instead of 32 bytes per entry (graphs stay far below 2**31 edges)
    heap_scores, heap_keys, queued = np.empty(2 * n_edges + 1), np.empty((2 * n_edges + 1, 3), np.int32), 0
    for e in range(n_edges):
        score = _score(e, sums, counts, links, histogram, quantile)
        if score < highest:
            heap_scores[queued] = score
            heap_keys[queued, 0] = min(tops[ends_u[e]], tops[ends_v[e]])
            heap_keys[queued, 1], heap_keys[queued, 2] = max(tops[ends_u[e]], tops[ends_v[e]]), e
            queued += 1
    for i in range(queued // 2 - 1, -1, -1):
        _sift_down(heap_scores, heap_keys, queued, i)
    merge_a, merge_b = np.empty(n, np.int64), np.empty(n, np.int64)
    merge_score, n_merges = np.empty(n), 0
    while queued:
        score, tu, tv, e = heap_scores[0], heap_keys[0, 0], heap_keys[0, 1], heap_keys[0, 2]
        queued -= 1
        _swap(heap_scores, heap_keys, 0, queued)
        _sift_down(heap_scores, heap_keys, queued, 0)
        if not alive[e] or _score(e, sums, counts, links, histogram, quantile) != score:
            continue  # merged away or pooled since it was queued
        a, b = ends_u[e], ends_v[e]
        if min(tops[a], tops[b]) != tu or max(tops[a], tops[b]) != tv:  # a region grew: its key did too
            queued = _push(heap_scores, heap_keys, queued, score, min(tops[a], tops[b]), max(tops[a], tops[b]), e)
            continue
        if frozen[a] or frozen[b]:
            frozen[a] = frozen[b] = True  # this is the unfrozen one's best edge: it waits for the frozen one
            continue
        if length[a] < length[b]:
            a, b = b, a  # move the shorter incidence list
        alive[e] = False
        delete_slot(edge_keys, edge_slots, find_slot(edge_keys, min(a, b) * n + max(a, b), bits), bits)
        parent[b] = a
        tops[a] = max(tops[a], tops[b])
        merge_a[n_merges], merge_b[n_merges], merge_score[n_merges] = a, b, score
        n_merges += 1
        entry = first[b]
        while entry >= 0:
            g = entry // 2
            entry_next = nxt[entry]
            if alive[g]:
                w = ends_v[g] if ends_u[g] == b else ends_u[g]
                delete_slot(edge_keys, edge_slots, find_slot(edge_keys, min(b, w) * n + max(b, w), bits), bits)
                key = min(a, w) * n + max(a, w)
                h = find_slot(edge_keys, key, bits)
                if edge_keys[h] == key:
                    f = edge_slots[h]
                    sums[f] += sums[g]
                    counts[f] += counts[g]
                    histogram[f] += histogram[g]
                    links[f] += links[g]
                    alive[g] = False
                    pooled = _score(f, sums, counts, links, histogram, quantile)
                    if pooled < highest:
                        queued = _push(
                            heap_scores, heap_keys, queued, pooled, min(tops[a], tops[w]), max(tops[a], tops[w]), f
                        )
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
    return merge_a[:n_merges], merge_b[:n_merges], merge_score[:n_merges], parent, alive


@numba.njit(cache=True)
def find_roots(parent):  # pragma: no cover - compiled
    """The root of every element of a union-find forest (compressing its paths in place)."""
    roots = np.empty(len(parent), np.int64)
    for i in range(len(parent)):
        root = i
        while parent[root] != root:
            root = parent[root]
        node = i
        while parent[node] != root:
            parent[node], node = root, parent[node]
        roots[i] = root
    return roots


@numba.njit(cache=True)
def union_merges(parent, merge_a, merge_b, merge_score, low, high):  # pragma: no cover - compiled
    """Join the two elements of every merge with ``low <= score < high`` in the union-find ``parent``."""
    for i in range(len(merge_a)):
        if low <= merge_score[i] < high:
            a, b = merge_a[i], merge_b[i]
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            while parent[b] != b:
                parent[b] = parent[parent[b]]
                b = parent[b]
            if a != b:
                parent[max(a, b)] = min(a, b)


def agglomerate(graph: RegionGraph, settings: SegmentSettings | None = None, **options: Any) -> dict[float, np.ndarray]:
    """Hierarchical agglomeration of a region graph to several thresholds (waterz's merge loop).

    The lowest-score edge is merged next (score ``1 - mean affinity`` or ``1 - quantile``, after
    ``settings.score``; ties in order of the regions' largest fragments); edges that become parallel
    pool their statistics. One compiled run (:func:`merge_regions`) up to the highest threshold records
    every merge and its score; the segmentation at threshold ``t`` joins the merges scoring below ``t``, so
    the segmentations are nested: each segment at a higher threshold is a union of segments at a lower one.

    Parameters
    ----------
    graph : the global region graph (with affinity histograms for a quantile score).
    settings : uses ``thresholds`` (at threshold ``t`` every merge with score ``< t`` has been made),
        ``score`` and ``min_size`` (segments with fewer voxels become 0); ``options`` override fields.

    Returns
    -------
    dict threshold -> ndarray of shape (n_fragments,), uint64 segment id of each fragment of
    ``graph.fragments`` (ids 1..k numbered by first fragment, 0 for dust).

    Examples
    --------
    >>> graph = RegionGraph(u=np.array([1, 2], np.uint64), v=np.array([2, 3], np.uint64),
    ...                     affinity_sum=np.array([0.9, 0.2]), count=np.array([1, 1]),
    ...                     fragments=np.array([1, 2, 3], np.uint64), sizes=np.array([4, 4, 4]))
    >>> {t: lut.tolist() for t, lut in agglomerate(graph, thresholds=[0.5, 0.9]).items()}
    {0.5: [1, 1, 2], 0.9: [1, 1, 1]}
    """
    settings = resolve(settings, options)
    if settings.quantile >= 0 and graph.histogram.shape[1] == 0:
        raise ValueError(f"score {settings.score!r} needs a region graph with affinity histograms")
    histogram = graph.histogram if settings.quantile >= 0 else np.zeros((len(graph.u), 0), np.uint32)
    index_u = np.searchsorted(graph.fragments, graph.u).astype(np.int64, copy=False)
    index_v = np.searchsorted(graph.fragments, graph.v).astype(np.int64, copy=False)
    merge_a, merge_b, merge_score, _, _ = merge_regions(  # the index arrays are fresh: the kernel may overwrite
        index_u,
        index_v,
        np.array(graph.affinity_sum, np.float64),
        np.array(graph.count, np.int64),
        np.array(graph.links, np.int64),
        np.array(histogram, np.uint32),
        np.arange(len(graph.fragments)),
        np.int64(settings.quantile),
        np.zeros(len(graph.fragments), np.bool_),
        np.float64(settings.thresholds[-1]),
    )
    parent = np.arange(len(graph.fragments))
    luts, low = {}, -np.inf
    for t in settings.thresholds:
        union_merges(parent, merge_a, merge_b, merge_score, low, t)
        luts[t] = number_segments(find_roots(parent), np.asarray(graph.sizes, np.int64), settings.min_size)
        low = t
    return luts


def number_segments(roots: np.ndarray, sizes: np.ndarray, min_size: int) -> np.ndarray:
    """Segment ids 1..k in order of each segment's first fragment; segments under ``min_size`` voxels -> 0.

    Parameters
    ----------
    roots : ndarray of shape (n_fragments,), int64 the root (a fragment index) of each fragment's segment.
    sizes : ndarray of shape (n_fragments,), int64 voxels per fragment; may be None when ``min_size`` is 0.
    min_size : dust threshold (voxels).

    Returns
    -------
    ndarray of shape (n_fragments,), uint64.
    """
    root_sizes = np.bincount(roots, sizes, len(roots)).astype(np.int64) if min_size else np.zeros(0, np.int64)
    return _number_segments(roots, root_sizes, np.int64(min_size))


@numba.njit(cache=True)
def _number_segments(roots, root_sizes, min_size):  # pragma: no cover - compiled
    """Segment ids 1..k in order of each segment's first fragment; dust (root size < min_size) -> 0.

    ``roots`` (int64, n_fragments) holds each fragment's root, a fragment index; ``root_sizes`` the voxels
    of each root (empty when there is no dust to remove).
    """
    ids = np.zeros(len(roots), np.uint64)  # id of each root, 0 until its first fragment is met
    out = np.zeros(len(roots), np.uint64)
    next_id = np.uint64(1)
    for i in range(len(roots)):
        root = roots[i]
        if len(root_sizes) and root_sizes[root] < min_size:
            continue
        if ids[root] == 0:
            ids[root] = next_id
            next_id += np.uint64(1)
        out[i] = ids[root]
    return out


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
    last, value = fragments[0] + 1, segment_ids[0]  # differs from the first id: looked up at i = 0
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
            value = segment_ids[low] if low < len(fragment_ids) and fragment_ids[low] == last else segment_ids[0] * 0
        out[i] = value


def relabel(fragments: np.ndarray, fragment_ids: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
    """Map fragment ids to segment ids through a lookup table.

    Parameters
    ----------
    fragments : ndarray of any shape, uint64 fragment ids; ids not in ``fragment_ids`` (background 0)
        map to 0.
    fragment_ids : ndarray of shape (n_fragments,), uint64, sorted.
    segment_ids : ndarray of shape (n_fragments,), the segment of each fragment.

    Returns
    -------
    ndarray of the shape of ``fragments``, dtype of ``segment_ids``.
    """
    out = np.zeros(fragments.shape, segment_ids.dtype)
    if fragments.size and len(fragment_ids):
        fragments = np.ascontiguousarray(fragments, fragment_ids.dtype).reshape(-1)
        _relabel_kernel(fragments, fragment_ids, segment_ids, out.reshape(-1))
    return out
