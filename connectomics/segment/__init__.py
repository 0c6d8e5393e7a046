"""Affinities to a consistent neuron segmentation at any scale: ``connectomics segment``.

The pipeline (waterz's, run blockwise as lsd/volara do), one module per stage:

* :mod:`~connectomics.segment.settings`: :class:`SegmentSettings`, the one description of a run (used by
  the in-memory path, the blockwise path, the manifest and the command line);
* :mod:`~connectomics.segment.watershed`: fragments from the affinity graph (waterz's watershed by
  default, optionally with zwatershed's size-based merge of small fragments; the distance-transform
  seeded watershed as an option);
* :mod:`~connectomics.segment.region_graph`: fragment adjacency with pooled affinities, per block;
* :mod:`~connectomics.segment.agglomeration`: hierarchical merging by mean affinity or a quantile
  (waterz's ``OneMinus<MeanAffinity>`` / ``OneMinus<HistogramQuantileAffinity>``), relabelling;
* :mod:`~connectomics.segment.hierarchy`: the same merges over per-block region graphs in bounded memory
  (a tree of block groups);
* :mod:`~connectomics.segment.blockwise` and :mod:`~connectomics.segment.in_memory`: the two drivers,
  giving identical results for identical settings;
* :mod:`~connectomics.segment.cli`: ``connectomics segment``.

Affinity convention: ``affs[c, z, y, x]`` is the affinity between voxel ``(z, y, x)`` and voxel
``(z, y, x) + offsets[c]``; only the three nearest-neighbour channels (offsets -1 along each axis, as waterz
expects) are used.

The names below are imported lazily (on first use), so ``connectomics segment --help`` needs no numba.
"""

from __future__ import annotations

import importlib

# light (its heavy stages load inside its functions); imported here so that `cli` is the function, not the module
from connectomics.segment.cli import cli, segment_to_zarr_in_memory  # noqa: F401  (in __all__)

_EXPORTS = {
    "agglomerate": "agglomeration",
    "relabel": "agglomeration",
    "read_affinity_offsets": "blockwise",
    "segment_blockwise": "blockwise",
    "threshold_name": "blockwise",
    "segment_in_memory": "in_memory",
    "RegionGraph": "region_graph",
    "block_region_graph": "region_graph",
    "FRAGMENT_METHODS": "settings",
    "SegmentSettings": "settings",
    "NEAREST_NEIGHBOUR_OFFSETS": "watershed",
    "block_fragments": "watershed",
    "boundary_map": "watershed",
    "edge_watershed": "watershed",
    "merge_small_fragments": "watershed",
    "nearest_neighbour_channels": "watershed",
    "seeded_fragments": "watershed",
    "waterz_fragments": "watershed",
}

__all__ = sorted([*_EXPORTS, "cli", "segment_to_zarr_in_memory"])


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"connectomics.segment.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'connectomics.segment' has no attribute {name!r}")
