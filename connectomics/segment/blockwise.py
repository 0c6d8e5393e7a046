"""The blockwise path (lsd/volara-style, four resumable stages over a fixed block grid).

1. **fragments** per block (:func:`connectomics.segment.watershed.block_fragments`) over the block's read
   ROI (write ROI + context), cropped to the write ROI; ids ``block_id * block_voxels + local id``;
2. **region graph** per block (:func:`connectomics.segment.region_graph.block_region_graph`), saved as
   ``<output>.blockwise/region_graph/<block_id>.npz``;
3. **agglomeration**, once, over the saved block graphs without pooling them
   (:func:`connectomics.segment.hierarchy.agglomerate_block_graphs`: a tree of block groups whose merges
   are exactly those of the global merge loop); a lookup table fragment -> segment per threshold
   and block;
4. **relabel** per block, giving ``seg_<threshold>``.

Because fragments are cut on a fixed block grid and everything after them is a function of the block
region graphs, the result does not depend on how blocks are scheduled (threads, a cluster, a resumed
run), and :func:`connectomics.segment.in_memory.segment_in_memory` with the same settings gives the same
result. Memory: the agglomeration holds the graph of the regions along the cut of one block group at a time
(at most about the volume's smallest mid-plane) and a few integers per fragment, not the global region graph
(about 200 bytes per fragment pair), so segmenting a larger volume on the same blocks takes little more
memory even when waterz's fragments are tiny (noisy affinities). With ``size_threshold`` (zwatershed's
size merge inside each block) fragments near block faces see only their block's read ROI, so the result
is that of the block grid (the in-memory path on the same grid gives the same), not of one block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    read_region,
    run_blockwise,
    trim_free_memory,
)
from connectomics.segment.agglomeration import relabel
from connectomics.segment.hierarchy import agglomerate_block_graphs
from connectomics.segment.region_graph import block_region_graph
from connectomics.segment.settings import SegmentSettings, resolve
from connectomics.segment.watershed import as_probabilities, block_fragments, nearest_neighbour_channels


def _write(root: str, array_path: str, roi: Roi, values: np.ndarray) -> None:
    open_output(root, array_path)[roi.to_slices()] = values


@dataclass(frozen=True)
class FragmentsStep:
    """Stage 1 for one block: read affinities over the read ROI, watershed, write fragments and face links
    (root and array path of each output)."""

    affs_path: str
    nn: tuple[tuple[int, tuple[int, int, int]], ...]
    fragments_out: tuple[str, str]
    links_out: tuple[str, str]
    settings: SegmentSettings
    sampling: tuple[float, ...]

    def __call__(self, block: Block) -> None:
        affs = as_probabilities(read_region(self.affs_path, block.read_roi, [c for c, _ in self.nn]))
        fragments, links = block_fragments(affs, block, self.settings, self.sampling)
        _write(*self.fragments_out, block.write_roi, fragments)
        _write(*self.links_out, block.write_roi, links)


@dataclass(frozen=True)
class RegionGraphStep:
    """Stage 2 for one block: the edges of the voxel pairs it owns, saved as ``<folder>/<block_id>.npz``."""

    affs_path: str
    fragments_path: str
    links_path: str
    nn: tuple[tuple[int, tuple[int, int, int]], ...]
    volume_roi: Roi
    folder: str
    settings: SegmentSettings

    def __call__(self, block: Block) -> None:
        neg = [max(0, -min(off[a] for _, off in self.nn)) for a in range(3)]
        pos = [max(0, max(off[a] for _, off in self.nn)) for a in range(3)]
        fragments_roi = block.write_roi.grow(neg, pos).intersect(self.volume_roi)
        fragments = read_region(self.fragments_path, fragments_roi)
        affs = as_probabilities(read_region(self.affs_path, block.write_roi, [c for c, _ in self.nn]))
        links = read_region(self.links_path, block.write_roi)
        graph = block_region_graph(fragments, affs, block.write_roi, fragments_roi, self.nn, self.settings, links)
        target = Path(self.folder) / f"{block.block_id}.npz"
        tmp = target.with_name(f".{block.block_id}.tmp.npz")
        np.savez(tmp, **vars(graph))
        tmp.replace(target)


@dataclass(frozen=True)
class RelabelStep:
    """Stage 4 for one block: apply its fragment -> segment lookup table (``<lut_folder>/<block_id>.npy``,
    aligned with the fragments of its region graph ``<graphs>/<block_id>.npz``)."""

    fragments_path: str
    graphs: str
    lut_folder: str
    out_root: str
    out_array: str

    def __call__(self, block: Block) -> None:
        with np.load(Path(self.graphs) / f"{block.block_id}.npz") as graph:
            fragment_ids = graph["fragments"]
        segment_ids = np.load(Path(self.lut_folder) / f"{block.block_id}.npy")
        fragments = read_region(self.fragments_path, block.write_roi)
        _write(self.out_root, self.out_array, block.write_roi, relabel(fragments, fragment_ids, segment_ids))


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


def segment_blockwise(
    affs_path: str,
    output_path: str,
    settings: SegmentSettings | None = None,
    *,
    offsets: Sequence[Sequence[int]] | None = None,
    chunks: Sequence[int] | None = None,
    n_levels: int | None = None,
    scheduler: str | Any | None = None,
    workers: int | None = None,
    progress: bool = True,
    image: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Segment a prediction block by block into ``output_path/fragments`` and ``output_path/seg_<t>``.

    Parameters
    ----------
    affs_path : affinities (channel, plane, row, column), e.g. ``pred.zarr/affs``.
    output_path : the output container, e.g. ``seg.zarr``; each ``seg_<t>`` is an OME-Zarr label image
        (NGFF 0.5 ``image-label``, multiscale levels by label mode, see
        :func:`connectomics.io.create_segmentation_image`).
    settings : the segmentation settings (:class:`SegmentSettings`: fragments, score, thresholds, block
        shape, ...); ``options`` (field names, e.g. ``thresholds=[0.3, 0.5]``) override single ones. They
        are recorded in the run's manifest; a rerun with other settings is refused.
    offsets : affinity offsets when the prediction has no ``affinity_offsets`` attribute.
    chunks : storage chunks of new outputs (default: the block shape).
    n_levels : multiscale levels added to each segmentation (default: until the rows/columns are <= 64).
    scheduler, workers : see :func:`connectomics.blocks.run_blockwise`.
    image : address of the raw image the segmentations annotate (e.g. ``sim.zarr/raw``), linked from each
        label image's ``source.image`` by a relative path; its shape must match.

    Returns
    -------
    dict with the output paths, the number of fragments, edges and segments per threshold.
    """
    from connectomics.io import add_multiscale_levels, create_ome_zarr_array, create_segmentation_image

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
    settings = resolve(settings, options)
    block_shape, thresholds = settings.block_shape, settings.thresholds
    chunks = block_shape if chunks is None else as_coordinate(chunks, 3, name="chunks")
    check_chunk_aligned(block_shape, chunks, what=str(output_path))
    voxel_size = tuple(float(v) for v in volume.voxel_size[-3:])
    spatial_offset = tuple(float(v) for v in volume.offset[-3:])
    volume_roi = Roi((0, 0, 0), tuple(volume.data.shape[1:]))
    if image is not None:  # refuse a wrong image before the work, not at the first label image
        from connectomics.io import open_volume

        if tuple(open_volume(image).spatial_shape) != volume_roi.shape:
            raise ValueError(f"segmentations of shape {volume_roi.shape} do not match their image {image} of "
                             f"shape {open_volume(image).spatial_shape}")
    folder = Path(f"{output_path}.blockwise")
    config = {"job": "segment", "affinities": str(affs_path), "shape": list(volume.data.shape),
              "offsets": offsets, "chunks": list(chunks), **settings.to_manifest()}
    check_or_write_manifest(folder / "manifest.json", config, job="segment")
    blocks = block_grid(volume_roi, block_shape, settings.context, origin=(0, 0, 0))

    def create(path: str, dtype: str = "uint64"):
        return create_ome_zarr_array(path, shape=volume_roi.shape, dtype=dtype, chunks=chunks,
                                     axes=("z", "y", "x"), voxel_size=voxel_size, offset=spatial_offset,
                                     fill_value=0, exists_ok=True)

    fragments_path, links_path = f"{output_path}/fragments", f"{folder}/face_links.zarr"
    fragments, links = create(fragments_path), create(links_path, "uint8")
    run = dict(scheduler=scheduler, workers=workers, progress=progress)
    run_blockwise(FragmentsStep(str(affs_path), nn, (str(fragments.store.root), fragments.path),
                                (str(links.store.root), links.path), settings, voxel_size),
                  blocks, DoneMarkers(folder / "fragments_done"), desc="fragments", **run
                  ).raise_for_failures("segment (fragments)")
    edges = folder / "region_graph"
    edges.mkdir(parents=True, exist_ok=True)
    run_blockwise(RegionGraphStep(str(affs_path), fragments_path, links_path, nn, volume_roi, str(edges), settings),
                  blocks, DoneMarkers(folder / "region_graph_done"), desc="region graph", **run
                  ).raise_for_failures("segment (region graph)")

    trim_free_memory()  # the agglomeration should not sit on top of the block stages' freed buffers
    summary: dict[str, Any] = {"fragments": fragments_path,
                               **agglomerate_block_graphs(edges, blocks, settings, folder / "agglomeration")}
    if n_levels is None:
        n_levels = max(0, int(np.floor(np.log2(max(min(volume_roi.shape[1:]), 1) / 64))) + 1) if \
            min(volume_roi.shape[1:]) > 64 else 0
    summary["segmentations"] = {}
    for t in thresholds:
        name = threshold_name(t)
        seg = create_segmentation_image(output_path, name, shape=volume_roi.shape, dtype="uint64", chunks=chunks,
                                        source_image=image, voxel_size=voxel_size, offset=spatial_offset,
                                        exists_ok=True)
        run_blockwise(RelabelStep(fragments_path, str(edges), str(folder / "agglomeration" / name),
                                  str(seg.store.root), seg.path), blocks,
                      DoneMarkers(folder / f"{name}_done"), desc=name, **run
                      ).raise_for_failures(f"segment ({name})")
        levels_marker = folder / f"{name}_levels_done"
        if n_levels and not levels_marker.exists():
            add_multiscale_levels(f"{output_path}/{name}", n_levels, method="mode")
            atomic_write_text(levels_marker, "")
        summary["segmentations"][t] = f"{output_path}/{name}"
    return summary
