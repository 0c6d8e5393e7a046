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
"""

from connectomics.segment.agglomeration import agglomerate, relabel
from connectomics.segment.blockwise import read_affinity_offsets, segment_blockwise, threshold_name
from connectomics.segment.cli import cli, segment_to_zarr_in_memory
from connectomics.segment.in_memory import segment_in_memory
from connectomics.segment.region_graph import RegionGraph, block_region_graph
from connectomics.segment.settings import FRAGMENT_METHODS, SegmentSettings
from connectomics.segment.watershed import (
    NEAREST_NEIGHBOUR_OFFSETS,
    block_fragments,
    boundary_map,
    edge_watershed,
    merge_small_fragments,
    nearest_neighbour_channels,
    seeded_fragments,
    waterz_fragments,
)

__all__ = [
    "FRAGMENT_METHODS", "NEAREST_NEIGHBOUR_OFFSETS", "RegionGraph", "SegmentSettings", "agglomerate",
    "block_fragments", "block_region_graph", "boundary_map", "cli", "edge_watershed",
    "merge_small_fragments", "nearest_neighbour_channels", "read_affinity_offsets", "relabel", "seeded_fragments",
    "segment_blockwise", "segment_in_memory", "segment_to_zarr_in_memory", "threshold_name",
    "waterz_fragments",
]
