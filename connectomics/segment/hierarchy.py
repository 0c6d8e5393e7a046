"""Exact agglomeration of a blockwise region graph in bounded memory: a tree of block groups.

The global merge loop (:func:`connectomics.segment.agglomeration.merge_regions`) needs the whole region
graph at once, about 200 bytes per edge, and on noisy affinities the edges grow with the voxels. Mean and
quantile linkage are *reducible*: an edge pooled from two never scores below the better of them. So any
two regions that are each other's best edge may merge at any time, and the merge tree (which regions
merge, at which score) is that of the global loop whatever the order (the argument of the
nearest-neighbour-chain algorithm; ABISS distributes waterz's mean-affinity agglomeration over chunks the
same way, Lu, Zlateski & Seung 2021, arXiv 2106.10795).

The hierarchy runs that loop on groups of blocks, smallest first: single blocks, then groups cut in two
across their smallest cross-section, up to the whole grid:

* a group's graph is its two halves' leftover graphs plus the raw edges between them (edges of the block
  graphs whose fragments lie in different halves), mapped onto the halves' regions;
* a region holding a fragment with an edge to a block outside the group is **frozen**: its edges are not
  all known, so it may not merge yet; a region whose best edge leads to a frozen region waits too;
* the loop merges, up to the highest threshold, every pair of unfrozen regions whose edge is the lowest
  left (such a pair is each other's best), and records each merge and its score;
* regions left unfrozen have no edge below the highest threshold and never will (pooling never lowers
  the best edge of a region): they and their edges are dropped. What goes up to the parent is the graph
  of the frozen regions, which fragments stand for them, and the raw edges still leaving the group.

The top group holds the whole volume and nothing is frozen there. The segmentation at threshold ``t``
joins the recorded merges scoring below ``t`` (:func:`segment_luts`, a union-find over fragments).
Equal scores are ordered by the two regions' largest fragments (a key of the pair of regions that only
grows as they merge, so it keeps the order reducible), and sums are exact
(:data:`connectomics.segment.region_graph.SUM_STEPS`), so the hierarchy gives the global loop's
segmentation exactly; the tests compare both on several volumes and grids.

Memory: a group holds the regions along the cut between its halves (and those waiting on them), not the
regions inside, so the largest graph held is about that of the volume's smallest mid-plane: it grows with
an area, not with the voxels (an octree, cutting three planes at once, held three times as much at the
top). The final union-find holds a few integers per fragment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from connectomics.blocks import Block, atomic_write_text, return_freed_buffers_to_os
from connectomics.segment.agglomeration import find_roots, merge_regions, number_segments, union_merges
from connectomics.segment.settings import SegmentSettings

MergeSink = Callable[[np.ndarray, np.ndarray, np.ndarray], None]
"""Receives each group's merges: fragment ids ``a``, ``b`` (int64) of the two regions and the score."""


@dataclass
class Edges:
    """Edges between regions (each named by its largest fragment id) with their pooled statistics.

    Attributes
    ----------
    u, v : ndarray of shape (n,), int64 region names (fragment ids).
    sums : float64 (n,); counts, links : int64 (n,); histogram : uint32 (n, bins), bins 0 for the mean
        score (see :class:`connectomics.segment.region_graph.RegionGraph`).
    """

    u: np.ndarray
    v: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    links: np.ndarray
    histogram: np.ndarray

    @staticmethod
    def of_graph(graph: Mapping[str, np.ndarray], bins: int) -> Edges:
        """The raw edges of a block's region graph (:class:`RegionGraph` fields; ``bins`` 0 drops histograms)."""
        u, v = np.asarray(graph["u"]).astype(np.int64), np.asarray(graph["v"]).astype(np.int64)
        histogram = np.asarray(graph["histogram"]) if bins else np.zeros((len(u), 0), np.uint32)
        return Edges(
            u,
            v,
            np.asarray(graph["affinity_sum"], np.float64),
            np.asarray(graph["count"], np.int64),
            np.asarray(graph["links"], np.int64),
            histogram,
        )

    def take(self, index: np.ndarray) -> Edges:
        return Edges(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def concat(parts: Sequence[Edges], bins: int) -> Edges:
        if not parts:
            empty = np.zeros(0, np.int64)
            return Edges(empty, empty, np.zeros(0), empty, empty, np.zeros((0, bins), np.uint32))
        return Edges(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Edges)))

    def pooled(self) -> Edges:
        """One edge per region pair (``u < v``), statistics added."""
        if not len(self.u):
            return self
        u, v = np.minimum(self.u, self.v), np.maximum(self.u, self.v)
        order = np.lexsort((v, u))
        u, v = u[order], v[order]
        start = np.flatnonzero(np.r_[True, (u[1:] != u[:-1]) | (v[1:] != v[:-1])])

        def add(values: np.ndarray) -> np.ndarray:
            return np.add.reduceat(values[order], start)

        return Edges(
            u[start],
            v[start],
            add(self.sums),
            add(self.counts),
            add(self.links),
            add(self.histogram).astype(np.uint32, copy=False),
        )


@dataclass
class _Leftover:
    """What a group hands to its parent.

    ``edges`` join its frozen regions; ``faces`` (k, 2) int64 rows (fragment, block) say which of its
    fragments have an edge to which block outside it, ``face_regions`` (k,) the region of each such
    fragment; ``crossing`` are the raw block-graph edges leaving it (fragment ids)."""

    edges: Edges
    faces: np.ndarray
    face_regions: np.ndarray
    crossing: Edges


class BlockHierarchy:
    """The agglomeration of per-block region graphs over a tree of block groups (see the module docstring).

    Parameters
    ----------
    grid_shape : blocks per axis (plane, row, column); block ids are row-major over this grid.
    block_voxels : the id range of each block's fragments (``block_id * block_voxels + local id``).
    load : ``load(block_id)`` gives the block's region graph as a mapping of
        :class:`~connectomics.segment.region_graph.RegionGraph` fields (e.g. an open ``.npz``; only the
        fields used are read).
    settings : uses ``thresholds`` (the highest bounds the merges) and ``score``.

    Examples
    --------
    >>> from connectomics.segment.region_graph import RegionGraph
    >>> empty = np.zeros(0, np.uint64)
    >>> graphs = [  # block 0 holds fragment 1; block 1 holds fragment 11 and the edge to its -1 neighbour
    ...     RegionGraph(u=empty, v=empty, affinity_sum=np.zeros(0), count=np.zeros(0, np.int64),
    ...                 fragments=np.array([1], np.uint64), sizes=np.array([5])),
    ...     RegionGraph(u=np.array([1], np.uint64), v=np.array([11], np.uint64), affinity_sum=np.array([0.75]),
    ...                 count=np.array([1]), fragments=np.array([11], np.uint64), sizes=np.array([5]))]
    >>> merges = []
    >>> BlockHierarchy((1, 1, 2), 10, lambda b: vars(graphs[b]), SegmentSettings()).run(
    ...     lambda a, b, s: merges.append((a.tolist(), b.tolist(), s.round(3).tolist())))
    >>> merges
    [([], [], []), ([], [], []), ([1], [11], [0.25])]
    """

    def __init__(
        self,
        grid_shape: Sequence[int],
        block_voxels: int,
        load: Callable[[int], Mapping[str, np.ndarray]],
        settings: SegmentSettings,
    ) -> None:
        self.grid_shape = tuple(int(n) for n in grid_shape)
        self.block_shape = np.array(settings.block_shape)
        self.block_voxels = np.int64(block_voxels)
        self.load = load
        self.quantile = np.int64(settings.quantile)
        self.bins = 0 if settings.quantile < 0 else None  # set from the first graph read
        self.highest = np.float64(settings.thresholds[-1])

    def run(self, sink: MergeSink) -> None:
        """Agglomerate, passing each group's merges to ``sink`` (leaves first, the whole grid last)."""
        self._group(np.zeros(3, np.int64), np.array(self.grid_shape), sink)

    def _inside(self, block_ids: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Whether each block lies in the group of blocks ``lo <= grid index < hi``."""
        index = np.stack(np.unravel_index(block_ids, self.grid_shape), axis=-1)
        return ((index >= lo) & (index < hi)).all(axis=-1)

    def _group(self, lo: np.ndarray, hi: np.ndarray, sink: MergeSink) -> _Leftover:
        if (hi - lo == 1).all():
            return self._block(tuple(int(i) for i in lo), sink)
        # two halves across the smallest cross-section (in voxels): the regions left frozen for the parent are
        # those along the cut, so the largest group graph is that of the volume's smallest mid-plane
        extent = (hi - lo) * self.block_shape
        planes = [np.prod(np.delete(extent, axis)) if hi[axis] - lo[axis] > 1 else np.inf for axis in range(3)]
        axis = int(np.argmin(planes))
        middle = lo.copy()
        middle[axis] = (lo[axis] + hi[axis] + 1) // 2
        upper = hi.copy()
        upper[axis] = middle[axis]
        children = [self._group(lo, upper, sink), self._group(middle, hi, sink)]
        crossing = Edges.concat([c.crossing for c in children], self.bins or 0)
        faces = np.concatenate([c.faces for c in children])
        face_regions = np.concatenate([c.face_regions for c in children])
        child_edges = [c.edges for c in children]
        del children
        # the raw edges between the halves are inside this group: map their fragments onto the halves'
        # regions and pool them (edges inside one half are distinct from them)
        inner = self._inside(crossing.u // self.block_voxels, lo, hi) & self._inside(
            crossing.v // self.block_voxels, lo, hi
        )
        joined = crossing.take(inner)
        known, first = np.unique(faces[:, 0], return_index=True)
        joined.u = face_regions[first][np.searchsorted(known, joined.u)]
        joined.v = face_regions[first][np.searchsorted(known, joined.v)]
        leaving = crossing.take(~inner)
        del crossing
        edges = Edges.concat(child_edges + [joined.pooled()], self.bins or 0)
        del child_edges, joined
        return self._agglomerate(lo, hi, edges, faces, face_regions, leaving, sink)

    def _block(self, index: tuple[int, ...], sink: MergeSink) -> _Leftover:
        """A leaf: one block's own edges; its edges to other blocks, and theirs into it, make its faces."""
        block = int(np.ravel_multi_index(index, self.grid_shape))
        graph = self.load(block)
        if self.bins is None:
            self.bins = int(np.asarray(graph["histogram"]).shape[1])
        edges = Edges.of_graph(graph, self.bins)
        inner = (edges.u // self.block_voxels == block) & (edges.v // self.block_voxels == block)
        crossing = edges.take(~inner)
        faces = [self._face_rows(crossing.u, crossing.v, block)]
        for axis in range(3):  # edges into this block are owned by the next block along each axis
            if index[axis] + 1 < self.grid_shape[axis]:
                after = list(index)
                after[axis] += 1
                other = self.load(int(np.ravel_multi_index(after, self.grid_shape)))
                faces.append(
                    self._face_rows(
                        np.asarray(other["u"]).astype(np.int64), np.asarray(other["v"]).astype(np.int64), block
                    )
                )
        rows = np.unique(np.concatenate(faces), axis=0)
        lo = np.array(index)
        return self._agglomerate(lo, lo + 1, edges.take(inner), rows, rows[:, 0].copy(), crossing, sink)

    def _face_rows(self, u: np.ndarray, v: np.ndarray, block: int) -> np.ndarray:
        """(fragment of ``block``, block of its partner) for each edge that crosses ``block``'s faces."""
        bu, bv = u // self.block_voxels, v // self.block_voxels
        return np.concatenate(
            [
                np.stack([u, bv], axis=1)[(bu == block) & (bv != block)],
                np.stack([v, bu], axis=1)[(bv == block) & (bu != block)],
            ]
        ).reshape(-1, 2)

    def _agglomerate(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        edges: Edges,
        faces: np.ndarray,
        face_regions: np.ndarray,
        crossing: Edges,
        sink: MergeSink,
    ) -> _Leftover:
        outside = ~self._inside(faces[:, 1], lo, hi)
        regions = np.unique(np.concatenate([edges.u, edges.v]))
        frozen = np.zeros(len(regions), np.bool_)
        frozen[np.searchsorted(regions, face_regions[outside])[np.isin(face_regions[outside], regions)]] = True
        # the kernel pools statistics in place and moves each alive edge's ends to the current roots
        edges.u, edges.v = np.searchsorted(regions, edges.u), np.searchsorted(regions, edges.v)
        tops = np.arange(len(regions))  # a region is named by its largest fragment, which orders ties
        merge_a, merge_b, merge_score, parent, alive = merge_regions(
            edges.u,
            edges.v,
            edges.sums,
            edges.counts,
            edges.links,
            edges.histogram,
            tops,
            self.quantile,
            frozen,
            self.highest,
        )
        sink(regions[merge_a], regions[merge_b], merge_score)  # a fragment of each of the two regions
        left = edges.take(alive & frozen[edges.u] & frozen[edges.v])  # unfrozen roots are done
        left.u, left.v = regions[tops[left.u]], regions[tops[left.v]]
        # each face fragment's region becomes its root (a region without edges here stays as it is)
        face_regions = face_regions[outside]
        index = np.searchsorted(regions, face_regions)
        found = index < len(regions)
        found[found] = regions[index[found]] == face_regions[found]
        face_regions[found] = regions[tops[find_roots(parent)[index[found]]]]
        return _Leftover(left, faces[outside], face_regions, crossing)


def grid_shape(blocks: Iterable[Block]) -> tuple[int, int, int]:
    """Blocks per axis of a block grid (:func:`connectomics.blocks.block_grid`)."""
    return tuple(int(n) + 1 for n in np.max([b.grid_index for b in blocks], axis=0))


def segment_luts(
    lengths: Sequence[int],
    merges: Callable[[], Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]],
    settings: SegmentSettings,
    sizes: np.ndarray | None = None,
) -> Iterator[tuple[float, list[np.ndarray]]]:
    """Segment ids of every fragment per threshold, from recorded merges (a union-find over fragments).

    Parameters
    ----------
    lengths : the number of fragments of each block, in block-id order; fragments are numbered by their
        position in that order (ids increasing).
    merges : a function giving the recorded merges anew each call (they are read once per threshold rather
        than held): fragment numbers ``a``, ``b`` (int64) of the two regions and the merge score.
    settings : ``thresholds`` and ``min_size``.
    sizes : ndarray of shape (n_fragments,), int64 voxels per fragment; needed when ``min_size`` > 0.

    Yields
    ------
    (threshold, luts): one uint64 array per block, aligned with its fragments: segment ids 1..k numbered
    by first fragment, 0 for dust (segments under ``min_size`` voxels), as
    :func:`connectomics.segment.agglomeration.agglomerate` numbers them.
    """
    if settings.min_size and sizes is None:
        raise ValueError("dust removal (min_size) needs the fragment sizes")
    bounds = np.cumsum([0, *lengths])
    parent = np.arange(bounds[-1])
    low = -np.inf
    for t in settings.thresholds:
        for a, b, score in merges():
            union_merges(parent, a, b, score, low, t)
        low = t
        roots = find_roots(parent)
        ids = number_segments(roots, sizes, settings.min_size)
        del roots
        yield t, [ids[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]


def _record_merges(
    graphs: Path, blocks: Sequence[Block], settings: SegmentSettings, folder: Path, fragments: np.ndarray
) -> list[Path]:
    """Run the hierarchy over the block graphs ``graphs/<block_id>.npz``, saving each group's merges in
    ``folder`` by fragment number (position in the sorted ``fragments``), so each threshold's pass needs
    no lookup."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.npz"):  # an interrupted earlier run: start the merges again
        stale.unlink()
    written: list[Path] = []

    def sink(a: np.ndarray, b: np.ndarray, score: np.ndarray) -> None:
        if len(a):
            path = folder / f"{len(written)}.npz"
            np.savez(path, a=np.searchsorted(fragments, a), b=np.searchsorted(fragments, b), score=score)
            written.append(path)

    BlockHierarchy(grid_shape(blocks), settings.block_voxels, lambda b: np.load(graphs / f"{b}.npz"), settings).run(
        sink
    )
    return written


def agglomerate_block_graphs(
    graphs: Path, blocks: Sequence[Block], settings: SegmentSettings, folder: Path
) -> dict[str, Any]:
    """The agglomeration stage of the blockwise path, from the block graphs saved as
    ``graphs/<block_id>.npz``: per-block lookup tables ``folder/seg_<t>/<block_id>.npy`` (uint64 segment
    ids aligned with the block graph's ``fragments``) and ``folder/summary.json``; done when the summary
    exists (a rerun returns it).

    Memory: the hierarchy's largest group graph and a few integers per fragment; the merges go to
    ``folder/merges/`` and are read back once per threshold.

    Returns
    -------
    dict with ``n_fragments``, ``n_edges`` (fragment pairs over all blocks) and ``n_segments`` per threshold.
    """
    summary_path = folder / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        return {**summary, "n_segments": {float(t): n for t, n in summary["n_segments"].items()}}
    # each group's graph is freed before the next, larger one: with glibc's dynamic mmap threshold (raised
    # after the block stages freed their buffers) those arrays came from the heap and stayed, 736-947 MiB
    # instead of ~700 on the memory benchmark's larger volume. Served by mmap they leave when freed; the
    # threshold goes back near glibc's dynamic maximum afterwards, for the light per-block relabelling
    return_freed_buffers_to_os()
    try:
        return _agglomerate_block_graphs(graphs, blocks, settings, folder, summary_path)
    finally:
        return_freed_buffers_to_os(32 << 20)


def _agglomerate_block_graphs(
    graphs: Path, blocks: Sequence[Block], settings: SegmentSettings, folder: Path, summary_path: Path
) -> dict[str, Any]:
    blocks = sorted(blocks, key=lambda block: block.block_id)

    def each(field: str) -> Iterator[np.ndarray]:
        """One field of each block graph in turn (only per-fragment arrays are kept: edges stay on disk)."""
        for block in blocks:
            with np.load(graphs / f"{block.block_id}.npz") as graph:
                yield graph[field]

    ids = np.concatenate(list(each("fragments"))).astype(np.int64)
    lengths = [len(f) for f in each("fragments")]
    n_edges = sum(len(u) for u in each("u"))
    written = _record_merges(graphs, blocks, settings, folder / "merges", ids)
    n_fragments = len(ids)
    del ids  # fragment numbers from here on
    sizes = np.concatenate(list(each("sizes"))).astype(np.int64) if settings.min_size else None

    def read_merges() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for path in written:
            with np.load(path) as merges:
                yield merges["a"], merges["b"], merges["score"]

    n_segments = {}
    for t, luts in segment_luts(lengths, read_merges, settings, sizes):
        name = folder / f"seg_{t:g}"
        name.mkdir(exist_ok=True)
        for block, lut in zip(blocks, luts):
            np.save(name / f"{block.block_id}.npy", lut)
        n_segments[t] = int(max((lut.max(initial=0) for lut in luts), default=0))
    summary = {"n_fragments": n_fragments, "n_edges": n_edges, "n_segments": n_segments}
    atomic_write_text(summary_path, json.dumps(summary))
    return summary
