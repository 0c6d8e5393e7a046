"""The blockwise path (lsd/volara-style, four resumable stages over a fixed block grid).

1. **fragments** per block (:func:`connectomics.segment.watershed.block_fragments`) over the block's read
   ROI (write ROI + context), cropped to the write ROI; ids ``block_id * block_voxels + local id``;
2. **region graph** per block (:func:`connectomics.segment.region_graph.block_region_graph`), saved as
   ``region_graph/<block_id>.npz`` in the job's bookkeeping (:func:`job_folder`);
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

The bookkeeping (:mod:`shared.jobs`: manifest of the settings, done-markers of every block of every stage,
failure records, the lock) and the intermediate files (face links, per-block region graphs, the
agglomeration's merges and lookup tables) live inside the output, in ``<output>/fragments/0/.job/``, so a
copied or moved container keeps its protection: a rerun with other settings is refused naming each setting
that differs, a second run into the same output is refused (or waits), and only ``overwrite`` replaces what
the job did not write.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from connectomics.blocks import (
    Block,
    DoneMarkers,
    Roi,
    as_coordinate,
    block_grid,
    check_chunk_aligned,
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
from shared.jobs import Job, OutputExistsError, atomic_path, check_output_folder, open_job

if TYPE_CHECKING:
    from connectomics.io import Volume

JOB_COMMAND = "connectomics segment"
BOOKKEEPING = "fragments/0/.job"
"""Where a segmentation job keeps its bookkeeping, relative to the output container: inside the level-0
array of the fragments (zarr warns about unknown folders at group level, not inside an array)."""


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
    links: tuple[str, str]
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
        links = np.asarray(open_output(*self.links)[block.write_roi.to_slices()])
        graph = block_region_graph(fragments, affs, block.write_roi, fragments_roi, self.nn, self.settings, links)
        _save_npz(Path(self.folder) / f"{block.block_id}.npz", **vars(graph))


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


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """An uncompressed ``.npz`` written atomically, streamed to disk (no in-memory copy of the arrays)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


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


def job_folder(output_path: str | Path) -> Path:
    """The bookkeeping folder of the segmentation job writing ``output_path`` (``seg.zarr/fragments/0/.job``)."""
    return Path(str(output_path).rstrip("/")) / BOOKKEEPING


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
    overwrite: bool = False,
    wait: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Segment a prediction block by block into ``output_path/fragments`` and ``output_path/seg_<t>``.

    Every input is checked before anything is created. The run is a resumable job (:mod:`shared.jobs`)
    whose bookkeeping lives in the output (:func:`job_folder`): rerunning the same call resumes an
    interrupted run (every stage of every block is marked done once written), other settings are refused
    naming each that differs, and a second run into the same output refuses naming the first (or waits).

    Parameters
    ----------
    affs_path : affinities (channel, plane, row, column), e.g. ``pred.zarr/affs``; float in [0, 1] (no NaN
        or inf) or uint8.
    output_path : the output container, e.g. ``seg.zarr``; each ``seg_<t>`` is an OME-Zarr label image
        (NGFF 0.5 ``image-label``, multiscale levels by label mode, see
        :func:`connectomics.io.create_segmentation_image`).
    settings : the segmentation settings (:class:`SegmentSettings`: fragments, score, thresholds, block
        shape, ...); ``options`` (field names, e.g. ``thresholds=[0.3, 0.5]``) override single ones. They
        are recorded in the job's manifest; a rerun with other settings is refused.
    offsets : affinity offsets when the prediction has no ``affinity_offsets`` attribute.
    chunks : storage chunks of new outputs (default: the block shape).
    n_levels : multiscale levels added to each segmentation (default: until the rows/columns are <= 64).
    scheduler, workers : see :func:`connectomics.blocks.run_blockwise`.
    image : address of the raw image the segmentations annotate (e.g. ``sim.zarr/raw``), linked from each
        label image's ``source.image`` by a relative path; its shape must match.
    overwrite : replace ``fragments`` / ``seg_<t>`` arrays this job did not write (same shape, dtype and
        chunks), or restart a job that was run with other settings (its done-markers are cleared).
    wait : wait for another run holding the output's lock instead of refusing.

    Returns
    -------
    dict with the output paths, the number of fragments, edges and segments per threshold.

    Raises
    ------
    shared.jobs.JobConfigError, OutputExistsError, JobLockedError : see above (one-line messages);
    shared.jobs.JobIncompleteError : blocks failed (after the others were finished and marked).
    """
    from connectomics.io import open_volume

    volume = open_volume(str(affs_path), role="affinities")  # 4 axes, dtype, values in [0, 1]: before any work
    offsets = read_affinity_offsets(str(affs_path)) or (
        None if offsets is None else [list(map(int, o)) for o in offsets]
    )
    if offsets is None:
        raise ValueError(f"{affs_path} has no 'affinity_offsets' attribute; pass the offsets (--offsets)")
    if len(offsets) != volume.data.shape[0]:
        raise ValueError(f"{len(offsets)} offsets for {volume.data.shape[0]} affinity channels in {affs_path}")
    nn = tuple(nearest_neighbour_channels(offsets))
    settings = resolve(settings, options)
    chunks = settings.block_shape if chunks is None else as_coordinate(chunks, 3, name="chunks")
    check_chunk_aligned(settings.block_shape, chunks, what=str(output_path))
    volume_roi = Roi((0, 0, 0), tuple(volume.data.shape[1:]))
    if image is not None:  # refuse a wrong image before the work, not at the first label image
        if tuple(open_volume(image).spatial_shape) != volume_roi.shape:
            raise ValueError(
                f"segmentations of shape {volume_roi.shape} do not match their image {image} of "
                f"shape {open_volume(image).spatial_shape}"
            )
    if n_levels is None:
        n_levels = (
            max(0, int(np.floor(np.log2(max(min(volume_roi.shape[1:]), 1) / 64))) + 1)
            if min(volume_roi.shape[1:]) > 64
            else 0
        )
    root = check_output_folder(output_path, name="output")
    names = [threshold_name(t) for t in settings.thresholds]
    if not job_folder(root).is_dir() and not overwrite:
        foreign = [name for name in ["fragments", *names] if (root / name).exists()]
        if foreign:
            raise OutputExistsError(
                f"{output_path} holds {', '.join(foreign)}, not written by `{JOB_COMMAND}` (no bookkeeping in "
                f"{job_folder(root)}); pass --overwrite to replace them, or choose another output"
            )
    config = {
        "affinities": str(affs_path),
        "shape": list(volume.data.shape),
        "offsets": offsets,
        "chunks": list(chunks),
        "levels": n_levels,
        "image": image,
        **settings.to_manifest(),
    }
    with open_job(root, JOB_COMMAND, config, overwrite=overwrite, wait=wait, bookkeeping=BOOKKEEPING) as job:
        job.claim("fragments/zarr.json", "fragments/0/zarr.json", "fragments/0/c", *names)
        return _run_stages(
            job,
            str(affs_path),
            str(output_path),
            settings,
            nn=nn,
            volume=volume,
            chunks=chunks,
            n_levels=n_levels,
            image=image,
            run=dict(scheduler=scheduler, workers=workers, progress=progress),
        )


def _run_stages(
    job: Job,
    affs_path: str,
    output_path: str,
    settings: SegmentSettings,
    *,
    nn: tuple[tuple[int, tuple[int, int, int]], ...],
    volume: Volume,
    chunks: tuple[int, ...],
    n_levels: int,
    image: str | None,
    run: dict[str, Any],
) -> dict[str, Any]:
    """The four stages of :func:`segment_blockwise` inside its job; finished blocks and stages are skipped."""
    import zarr

    from connectomics.io import add_multiscale_levels, create_ome_zarr_array, create_segmentation_image

    block_shape, thresholds = settings.block_shape, settings.thresholds
    voxel_size = tuple(float(v) for v in volume.voxel_size[-3:])
    spatial_offset = tuple(float(v) for v in volume.offset[-3:])
    volume_roi = Roi((0, 0, 0), tuple(volume.data.shape[1:]))
    folder = job.folder
    blocks = block_grid(volume_roi, block_shape, settings.context, origin=(0, 0, 0))

    def create(path: str, dtype: str = "uint64"):
        return create_ome_zarr_array(
            path,
            shape=volume_roi.shape,
            dtype=dtype,
            chunks=chunks,
            axes=("z", "y", "x"),
            voxel_size=voxel_size,
            offset=spatial_offset,
            fill_value=0,
            exists_ok=True,
        )

    fragments_path = f"{output_path}/fragments"
    fragments = create(fragments_path)
    links = zarr.open_array(
        str(folder / "face_links"), mode="a", shape=volume_roi.shape, dtype="uint8", chunks=chunks, fill_value=0
    )
    links_out = (str(links.store.root), links.path)
    run_blockwise(
        FragmentsStep(affs_path, nn, (str(fragments.store.root), fragments.path), links_out, settings, voxel_size),
        blocks,
        DoneMarkers.of_job(job, "fragments"),
        desc="fragments",
        **run,
    ).raise_for_failures("segment (fragments)", records=folder / "failed")
    edges = folder / "region_graph"
    edges.mkdir(parents=True, exist_ok=True)
    run_blockwise(
        RegionGraphStep(affs_path, fragments_path, links_out, nn, volume_roi, str(edges), settings),
        blocks,
        DoneMarkers.of_job(job, "graph"),
        desc="region graph",
        **run,
    ).raise_for_failures("segment (region graph)", records=folder / "failed")

    agglomeration = folder / "agglomeration"
    if not job.is_done("agglomeration"):
        # the job's marker decides, not the stage's own summary.json: after --overwrite (markers cleared) or
        # an interruption, what an earlier run left there belongs to other settings or is partial
        shutil.rmtree(agglomeration, ignore_errors=True)
        trim_free_memory()  # the agglomeration should not sit on top of the block stages' freed buffers
    summary: dict[str, Any] = {
        "fragments": fragments_path,
        **agglomerate_block_graphs(edges, blocks, settings, agglomeration),
    }
    job.mark_done("agglomeration")
    summary["segmentations"] = {}
    for t in thresholds:
        name = threshold_name(t)
        seg = create_segmentation_image(
            output_path,
            name,
            shape=volume_roi.shape,
            dtype="uint64",
            chunks=chunks,
            source_image=image,
            voxel_size=voxel_size,
            offset=spatial_offset,
            exists_ok=True,
        )
        run_blockwise(
            RelabelStep(fragments_path, str(edges), str(agglomeration / name), str(seg.store.root), seg.path),
            blocks,
            DoneMarkers.of_job(job, name),
            desc=name,
            **run,
        ).raise_for_failures(f"segment ({name})", records=folder / "failed")
        if n_levels and not job.is_done(f"{name}-levels"):
            add_multiscale_levels(f"{output_path}/{name}", n_levels, method="mode")
            job.mark_done(f"{name}-levels")
        summary["segmentations"][t] = f"{output_path}/{name}"
    return summary
