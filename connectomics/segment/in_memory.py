"""The in-memory path: the blockwise algorithm on arrays that fit in memory, without IO."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from connectomics.blocks import Roi, block_grid
from connectomics.segment.agglomeration import relabel
from connectomics.segment.hierarchy import BlockHierarchy, grid_shape, segment_luts
from connectomics.segment.region_graph import block_region_graph
from connectomics.segment.settings import SegmentSettings, resolve
from connectomics.segment.watershed import (
    NEAREST_NEIGHBOUR_OFFSETS,
    as_probabilities,
    block_fragments,
    nearest_neighbour_channels,
)


def segment_in_memory(
    affs: np.ndarray,
    offsets: Sequence[Sequence[int]] = NEAREST_NEIGHBOUR_OFFSETS,
    settings: SegmentSettings | None = None,
    *,
    sampling: Sequence[float] = (1.0, 1.0, 1.0),
    **options: Any,
) -> dict[float, np.ndarray]:
    """Segment affinities held in memory; the same algorithm and result as
    :func:`connectomics.segment.blockwise.segment_blockwise` with the same settings.

    Parameters
    ----------
    affs : ndarray of shape (channel, plane, row, column), float in [0, 1] or uint8.
    offsets : the affinity offset of each channel; the three nearest-neighbour ones (-1 along each axis,
        waterz's convention) are used.
    settings : the segmentation settings (default :class:`SegmentSettings`); ``options`` (field names,
        e.g. ``thresholds=[0.3, 0.5]``) override single settings.
    sampling : voxel size (plane, row, column), for ``seeded`` fragments' distance transform.

    Returns
    -------
    dict threshold -> ndarray of shape (plane, row, column), uint64 segment ids (0 = background/dust).

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
    settings = resolve(settings, options)
    if affs.ndim != 4:
        raise ValueError(f"affinities must have 4 axes (channel, plane, row, column), got shape {affs.shape}")
    if len(offsets) != affs.shape[0]:
        raise ValueError(f"{len(offsets)} offsets for {affs.shape[0]} affinity channels")
    nn = nearest_neighbour_channels(offsets)
    affs_nn = as_probabilities(np.stack([affs[c] for c, _ in nn]))
    volume = Roi((0, 0, 0), affs.shape[1:])
    blocks = block_grid(volume, settings.block_shape, settings.context)
    fragments = np.zeros(volume.shape, np.uint64)
    links = np.zeros(volume.shape, np.uint8)
    for block in blocks:
        fragments[block.write_roi.to_slices()], links[block.write_roi.to_slices()] = block_fragments(
            affs_nn[(slice(None),) + block.read_roi.to_slices()], block, settings, sampling
        )
    blocks = sorted(blocks, key=lambda block: block.block_id)
    parts = [
        block_region_graph(
            fragments,
            affs_nn[(slice(None),) + block.write_roi.to_slices()],
            block.write_roi,
            volume,
            nn,
            settings,
            links[block.write_roi.to_slices()],
        )
        for block in blocks
    ]
    ids = np.concatenate([p.fragments for p in parts])
    numbers = ids.astype(np.int64)  # merges name fragments by int64 id; numbered by position in ``ids``
    merges: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    BlockHierarchy(grid_shape(blocks), settings.block_voxels, lambda block_id: vars(parts[block_id]), settings).run(
        lambda a, b, score: merges.append((np.searchsorted(numbers, a), np.searchsorted(numbers, b), score))
    )
    luts = dict(
        segment_luts(
            [len(p.fragments) for p in parts],
            lambda: merges,
            settings,
            np.concatenate([p.sizes for p in parts]).astype(np.int64),
        )
    )
    # one lookup of each voxel's fragment index serves every threshold; background (no fragment) gets the
    # extra last entry, segment 0
    index = relabel(fragments, ids, np.arange(len(ids), dtype=np.int64))
    index[fragments == 0] = len(ids)
    return {t: np.concatenate(lut + [np.zeros(1, np.uint64)])[index] for t, lut in luts.items()}
