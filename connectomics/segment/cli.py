"""``connectomics segment``: the command line of the segmentation (blockwise, or ``--in-memory``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from connectomics.blocks import as_coordinate, parse_coordinate
from connectomics.segment.settings import SegmentSettings

DESCRIPTION = """Affinities to a neuron segmentation, block by block, at any scale.

  connectomics segment pred.zarr/affs seg.zarr --thresholds 0.3,0.5,0.7 --block 64,256,256

Writes seg.zarr/fragments (waterz-style watershed fragments of the affinity graph, globally unique uint64
ids, 0 = background) and one segmentation seg.zarr/seg_<threshold> per threshold: an OME-Zarr label image
(uint64, multiscale levels by label mode; --image sim.zarr/raw links the raw image it annotates), stitched
across block faces by the agglomeration of the whole volume's region graph by --score (mean affinity or a
quantile; threshold = merge score 1 - score, as in waterz: higher thresholds merge more), computed block
group by block group so that memory does not grow with the volume. Rerunning the same command resumes
(after kill -9 too): finished blocks and stages are skipped (bookkeeping and intermediate files in
seg.zarr/fragments/0/.job/, which travels with the container when it is copied); a rerun with other
settings is refused naming each that differs, and arrays this command did not write are never replaced
(--overwrite replaces them). A second run into the same container refuses naming the first (--wait waits).
--in-memory runs the same algorithm on arrays in memory (for volumes that fit) and writes the same outputs.
On noisy affinities waterz's watershed gives many tiny fragments: --size-threshold N merges fragments
smaller than N voxels inside each block into their strongest neighbour (zwatershed), about ten times fewer
fragments and region-graph edges (faster; it changes the result slightly: see BENCHMARKS.md)."""


def cli(argv: list[str]) -> int:
    """``connectomics segment``: see ``connectomics segment --help``."""
    from shared.cli import (
        UserError,
        add_dataclass_arguments,
        add_output_arguments,
        dataclass_from_args,
        subcommand_parser,
    )

    parser = subcommand_parser("connectomics segment", DESCRIPTION)
    parser.add_argument("affinities", help="affinities (channel, plane, row, column), e.g. pred.zarr/affs")
    parser.add_argument("output", help="output container, e.g. seg.zarr")
    add_dataclass_arguments(parser, SegmentSettings)
    parser.add_argument(
        "--offsets", default=None, help="affinity offsets 'z,y,x;z,y,x;...' if the input has no affinity_offsets attr"
    )
    parser.add_argument("--chunks", default=None, help="storage chunks Z,Y,X (default: the block shape)")
    parser.add_argument(
        "--image",
        default=None,
        help="raw image the segmentations annotate (e.g. sim.zarr/raw): linked from each label image's source.image",
    )
    parser.add_argument("--in-memory", action="store_true", help="load everything and segment in memory")
    parser.add_argument("--scheduler", default=None, help="dask.distributed scheduler address")
    parser.add_argument("--workers", type=int, default=None, help="local threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    from connectomics.segment.blockwise import segment_blockwise  # numba: loaded once the options are parsed

    try:
        settings = dataclass_from_args(SegmentSettings, args)
        offsets = (
            None if args.offsets is None else [parse_coordinate(o, name="--offsets") for o in args.offsets.split(";")]
        )
        kwargs = dict(
            offsets=offsets,
            image=args.image,
            chunks=None if args.chunks is None else parse_coordinate(args.chunks, name="--chunks"),
        )
        if args.in_memory:
            summary = segment_to_zarr_in_memory(
                args.affinities, args.output, settings, overwrite=args.overwrite, **kwargs
            )
        else:
            summary = segment_blockwise(
                args.affinities,
                args.output,
                settings,
                scheduler=args.scheduler,
                workers=args.workers,
                progress=not args.no_progress,
                overwrite=args.overwrite,
                wait=args.wait,
                **kwargs,
            )
    except TypeError as err:  # a wrong dtype of the input: a user error here (run_guarded shows the rest)
        raise UserError(str(err)) from err
    print("segment: " + json.dumps(summary, default=str))
    return 0


def segment_to_zarr_in_memory(
    affs_path: str,
    output_path: str,
    settings: SegmentSettings,
    *,
    offsets: Sequence[Sequence[int]] | None = None,
    chunks: Sequence[int] | None = None,
    image: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The fast path of the command: read the whole prediction, :func:`segment_in_memory`, write outputs.

    Writes the same ``seg_<t>`` label images as :func:`segment_blockwise`; ``image`` is the raw image they
    annotate (linked from their ``source.image``). Existing ``seg_<t>`` are refused before any work unless
    ``overwrite`` (they are then rewritten in place: same shape, dtype and chunks). Not a resumable job and
    takes no lock: for volumes that fit in memory.
    """
    from connectomics.io import add_multiscale_levels, create_segmentation_image, open_volume
    from connectomics.segment.blockwise import read_affinity_offsets, threshold_name
    from connectomics.segment.in_memory import segment_in_memory
    from shared.jobs import OutputExistsError, check_output_folder

    check_output_folder(output_path, name="output")
    existing = [threshold_name(t) for t in settings.thresholds if Path(output_path, threshold_name(t)).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{output_path} already holds {', '.join(existing)}; pass --overwrite to replace "
            "them, or choose another output"
        )
    volume = open_volume(str(affs_path), role="affinities")
    offsets = read_affinity_offsets(str(affs_path)) or offsets
    if offsets is None:
        raise ValueError(f"{affs_path} has no 'affinity_offsets' attribute; pass the offsets (--offsets)")
    affs = np.asarray(volume.data.compute())
    segs = segment_in_memory(affs, offsets, settings, sampling=tuple(float(v) for v in volume.voxel_size[-3:]))
    chunks = settings.block_shape if chunks is None else as_coordinate(chunks, 3, name="chunks")
    out = {}
    for t, seg in segs.items():
        path = f"{output_path}/{threshold_name(t)}"
        array = create_segmentation_image(
            output_path,
            threshold_name(t),
            shape=seg.shape,
            dtype="uint64",
            chunks=chunks,
            source_image=image,
            exists_ok=overwrite,
            voxel_size=tuple(volume.voxel_size[-3:]),
            offset=tuple(volume.offset[-3:]),
        )
        array[...] = seg
        if min(seg.shape[1:]) > 64:
            add_multiscale_levels(path, int(np.floor(np.log2(min(seg.shape[1:]) / 64))) + 1, method="mode")
        out[t] = path
    return {"segmentations": out, "n_segments": {t: int(len(np.unique(s[s > 0]))) for t, s in segs.items()}}
