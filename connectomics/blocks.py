"""Block geometry for chunked volume processing, daisy-style: ROI, block, context, done-markers.

A volume is processed as a grid of **blocks**. Each block has a *write ROI* (the voxels it owns and writes;
write ROIs tile the total ROI without overlap) and a *read ROI* (the write ROI grown by the *context*, the
halo a model or a watershed needs to see around the voxels it decides). Read ROIs are clipped to the volume,
so a border block reads only real voxels and its write ROI is cropped to the total ROI, never padded into
the output.

All coordinates here are **voxel** coordinates of the level-0 array, axes (plane, row, column) = (z, y, x).
World coordinates (nm) are ``voxel * voxel_size + offset``; convert at the IO boundary.

Block ids are derived from the grid position alone (:attr:`Block.block_id`), so they are stable across
reruns and across machines: a done-marker written for block 17 on one run means the same voxels on the next.

Example
-------
>>> total = Roi((0, 0, 0), (10, 64, 64))
>>> blocks = block_grid(total, block_shape=(4, 32, 32), context=(1, 8, 8))
>>> len(blocks)                      # 3 planes of blocks (4 + 4 + 2) x 2 x 2
12
>>> blocks[0].write_roi, blocks[0].read_roi
(Roi(offset=(0, 0, 0), shape=(4, 32, 32)), Roi(offset=(0, 0, 0), shape=(5, 40, 40)))
>>> blocks[-1].write_roi             # the last plane of blocks is cropped to the volume
Roi(offset=(8, 32, 32), shape=(2, 32, 32))
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.jobs import (  # atomic_write_text and file_sha256 are re-exported for connectomics.segment
    Job,
    JobIncompleteError,
    atomic_write_bytes,
    atomic_write_text,
    file_sha256,
)

__all__ = [
    "Block",
    "BlockwiseResult",
    "DoneMarkers",
    "Roi",
    "as_coordinate",
    "atomic_write_text",
    "block_grid",
    "check_chunk_aligned",
    "file_sha256",
    "open_input",
    "open_output",
    "parse_coordinate",
    "pending_blocks",
    "read_region",
    "return_freed_buffers_to_os",
    "run_blockwise",
    "trim_free_memory",
]

Coordinate = tuple[int, ...]


def as_coordinate(value: int | Sequence[int], ndim: int, *, name: str) -> Coordinate:
    """A tuple of ``ndim`` ints from an int (broadcast) or a sequence; raises ``ValueError`` otherwise."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * ndim
    out = tuple(int(v) for v in value)
    if len(out) != ndim:
        raise ValueError(f"{name} needs {ndim} values (plane, row, column), got {len(out)}: {out}")
    return out


def parse_coordinate(text: str, ndim: int = 3, *, name: str) -> Coordinate:
    """Parse ``"32,128,128"`` (or a single ``"64"``, broadcast) into a coordinate, with a clear error."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers like 32,128,128; got {text!r}") from None
    if len(values) == 1:
        values = values * ndim
    return as_coordinate(values, ndim, name=name)


@dataclass(frozen=True)
class Roi:
    """A box of voxels: ``offset`` (first voxel, inclusive) and ``shape``, axes (plane, row, column).

    An ROI with any zero extent is empty. ROIs are immutable; every operation returns a new one.
    """

    offset: Coordinate
    shape: Coordinate

    def __post_init__(self) -> None:
        object.__setattr__(self, "offset", tuple(int(v) for v in self.offset))
        object.__setattr__(self, "shape", tuple(max(int(v), 0) for v in self.shape))
        if len(self.offset) != len(self.shape):
            raise ValueError(f"Roi offset {self.offset} and shape {self.shape} differ in length")

    @classmethod
    def from_bounds(cls, begin: Sequence[int], end: Sequence[int]) -> Roi:
        """The ROI from ``begin`` (inclusive) to ``end`` (exclusive)."""
        return cls(tuple(begin), tuple(e - b for b, e in zip(begin, end)))

    @classmethod
    def parse(cls, text: str) -> Roi:
        """Parse ``"z0:z1,y0:y1,x0:x1"`` (voxels, end exclusive), e.g. ``"0:64,128:384,128:384"``."""
        try:
            pairs = [part.split(":") for part in text.replace(" ", "").split(",")]
            begin = [int(b) for b, _ in pairs]
            end = [int(e) for _, e in pairs]
        except ValueError:
            raise ValueError(f"ROI must look like z0:z1,y0:y1,x0:x1 (voxels, end exclusive); got {text!r}") from None
        if any(e <= b for b, e in zip(begin, end)):
            raise ValueError(f"ROI {text!r} is empty: every end must exceed its begin")
        return cls.from_bounds(begin, end)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def begin(self) -> Coordinate:
        return self.offset

    @property
    def end(self) -> Coordinate:
        return tuple(o + s for o, s in zip(self.offset, self.shape))

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape, dtype=np.int64))

    def empty(self) -> bool:
        return self.size == 0

    def grow(self, amount_neg: Sequence[int], amount_pos: Sequence[int] | None = None) -> Roi:
        """Grow by ``amount_neg`` before the offset and ``amount_pos`` (default: the same) after the end."""
        amount_pos = amount_neg if amount_pos is None else amount_pos
        return Roi.from_bounds(
            [b - a for b, a in zip(self.begin, amount_neg)], [e + a for e, a in zip(self.end, amount_pos)]
        )

    def shift(self, by: Sequence[int]) -> Roi:
        return Roi(tuple(o + b for o, b in zip(self.offset, by)), self.shape)

    def intersect(self, other: Roi) -> Roi:
        """The common part (possibly empty)."""
        begin = [max(a, b) for a, b in zip(self.begin, other.begin)]
        end = [min(a, b) for a, b in zip(self.end, other.end)]
        return Roi.from_bounds(begin, [max(b, e) for b, e in zip(begin, end)])

    def contains(self, other: Roi) -> bool:
        """Whether ``other`` lies inside this ROI (an empty ROI is contained everywhere)."""
        return other.empty() or (
            all(a <= b for a, b in zip(self.begin, other.begin)) and all(a >= b for a, b in zip(self.end, other.end))
        )

    def to_slices(self, relative_to: Roi | None = None) -> tuple[slice, ...]:
        """Slices selecting this ROI in an array whose first voxel is ``relative_to.offset`` (default 0)."""
        origin = relative_to.offset if relative_to is not None else (0,) * self.ndim
        return tuple(slice(b - o, e - o) for b, e, o in zip(self.begin, self.end, origin))

    def __repr__(self) -> str:
        return f"Roi(offset={self.offset}, shape={self.shape})"


@dataclass(frozen=True)
class Block:
    """One unit of work.

    Attributes
    ----------
    block_id : int, stable id from the grid position (row-major over the block grid of the volume).
    grid_index : (plane, row, column) position in the block grid.
    write_roi : the voxels this block owns; write ROIs of all blocks tile the total ROI.
    read_roi : ``write_roi`` grown by the context, clipped to the volume.
    """

    block_id: int
    grid_index: Coordinate
    write_roi: Roi
    read_roi: Roi


def block_grid(
    total_roi: Roi,
    block_shape: Sequence[int],
    context: Sequence[int] | int = 0,
    *,
    volume_roi: Roi | None = None,
    origin: Sequence[int] | None = None,
) -> list[Block]:
    """Tile ``total_roi`` with blocks whose write ROIs are ``block_shape`` boxes on a fixed grid.

    Parameters
    ----------
    total_roi : the voxels to produce (e.g. a user ROI, or the whole volume).
    block_shape : write-ROI shape (plane, row, column). Border blocks are cropped to ``total_roi``.
    context : voxels added on every side to form the read ROI (an int is broadcast).
    volume_roi : the voxels that exist; read ROIs are clipped to it. Defaults to ``total_roi``.
    origin : where the grid is anchored (default ``volume_roi.offset``), so block boundaries stay on the
        same lines (and on storage-chunk boundaries) whatever ROI is requested.

    Returns
    -------
    list of :class:`Block` in block-id order; blocks whose write ROI misses ``total_roi`` are omitted.
    Block ids number the grid over the whole ``volume_roi``, so they do not depend on ``total_roi``.
    """
    ndim = total_roi.ndim
    block_shape = as_coordinate(block_shape, ndim, name="block_shape")
    context = as_coordinate(context, ndim, name="context")
    if any(b < 1 for b in block_shape):
        raise ValueError(f"block_shape must be positive, got {block_shape}")
    if any(c < 0 for c in context):
        raise ValueError(f"context must be >= 0, got {context}")
    volume_roi = total_roi if volume_roi is None else volume_roi
    origin = volume_roi.offset if origin is None else tuple(origin)
    if not volume_roi.contains(total_roi):
        raise ValueError(f"ROI {total_roi} is not inside the volume {volume_roi}")
    # grid cells covering the whole volume (ids) and the part of it covering total_roi (work)
    n_cells = [-(-(e - o) // b) for e, o, b in zip(volume_roi.end, origin, block_shape)]
    first = [(t - o) // b for t, o, b in zip(total_roi.begin, origin, block_shape)]
    last = [-(-(t - o) // b) for t, o, b in zip(total_roi.end, origin, block_shape)]
    blocks = []
    for grid_index in np.ndindex(*[hi - lo for lo, hi in zip(first, last)]):
        index = tuple(int(g + f) for g, f in zip(grid_index, first))
        cell = Roi(tuple(o + i * b for o, i, b in zip(origin, index, block_shape)), block_shape)
        write_roi = cell.intersect(total_roi)
        if write_roi.empty():
            continue
        read_roi = write_roi.grow(context).intersect(volume_roi)
        block_id = int(np.ravel_multi_index(index, n_cells))
        blocks.append(Block(block_id, index, write_roi, read_roi))
    return blocks


def check_chunk_aligned(block_shape: Sequence[int], chunks: Sequence[int], *, what: str) -> None:
    """Raise ``ValueError`` unless every block edge falls on a storage-chunk edge.

    Two blocks writing into the same zarr chunk race (each reads, modifies and rewrites the whole chunk),
    so a block shape must be a multiple of the output's chunk shape.
    """
    bad = [(b, c) for b, c in zip(block_shape, chunks) if b % c]
    if bad:
        suggestion = tuple(-(-b // c) * c for b, c in zip(block_shape, chunks))
        raise ValueError(
            f"block shape {tuple(block_shape)} is not a multiple of the storage chunks {tuple(chunks)} "
            f"of {what}: "
            f"blocks sharing a chunk would race when writing it. Use a block shape that is a multiple of the "
            f"chunks, e.g. {suggestion}."
        )


# --------------------------------------------------------------------------------------------------------
# arrays, opened once per worker process (cheap to call from every block)


@functools.lru_cache(maxsize=16)
def open_input(path: str):
    """The :class:`connectomics.io.Volume` at ``path`` (``vol.zarr/raw``, ``file.h5:volumes/raw``), cached."""
    from connectomics.io import open_volume

    return open_volume(path)


@functools.lru_cache(maxsize=16)
def open_output(root: str, array_path: str):
    """A zarr array opened with ``mode="r+"`` (writable, never erased), cached per process."""
    import zarr

    return zarr.open_array(root, path=array_path, mode="r+")


def read_region(path: str, roi: Roi, channels: Sequence[int] | None = None) -> np.ndarray:
    """Read an ROI (voxels) of a volume as numpy in this thread (no nested dask scheduling).

    For a (channel, plane, row, column) volume, ``channels`` selects channels (default: all).
    """
    data = open_input(path).data
    index = roi.to_slices()
    if data.ndim == roi.ndim + 1:
        index = (slice(None) if channels is None else list(channels),) + index
    return np.asarray(data[index].compute(scheduler="synchronous"))


# --------------------------------------------------------------------------------------------------------
# durable bookkeeping: per-block done-markers and failure records, kept by :mod:`shared.jobs`


class DoneMarkers:
    """Per-block done-markers: one empty file per finished block under ``folder``.

    A marker is written (atomically) only after the block's data is in the store, so a crash leaves either
    a finished block with its marker, or an unmarked block that a rerun redoes. Listing the folder once
    (:meth:`done_ids`) makes the done-check over millions of blocks a single directory read.

    Made with :meth:`of_job`, the markers are the job's own (``<output>/.job/done/<block_id>``, travelling
    with the output) and a failed block is recorded under ``<output>/.job/failed/<block_id>.json``. A job
    with several blockwise stages gives each a ``stage`` name, which prefixes its markers
    (``done/fragments-17``).

    Examples
    --------
    >>> import tempfile
    >>> markers = DoneMarkers(Path(tempfile.mkdtemp()) / "done")
    >>> markers.mark(3)
    >>> markers.done_ids(), markers.is_done(4)
    ({3}, False)
    """

    def __init__(self, folder: str | Path, job: Job | None = None, stage: str = "") -> None:
        self.folder = Path(folder)
        self.job = job
        self.prefix = f"{stage}-" if stage else ""

    @classmethod
    def of_job(cls, job: Job, stage: str = "") -> DoneMarkers:
        """The done-markers (and failure records) of a :class:`shared.jobs.Job`: one unit per block id, named
        ``<stage>-<block_id>`` when a ``stage`` is given."""
        return cls(job.folder / "done", job, stage)

    def key(self, block_id: int) -> str:
        """The marker's name (the job's unit key) of a block."""
        return f"{self.prefix}{block_id}"

    def mark(self, block_id: int) -> None:
        if self.job is not None:
            self.job.mark_done(self.key(block_id))
        else:
            atomic_write_bytes(self.folder / self.key(block_id), b"")

    def mark_failed(self, block_id: int, error: BaseException) -> str:
        """Record a block's failure (in the job's ``failed/`` folder, when there is a job); returns one line."""
        if self.job is not None:
            return self.job.mark_failed(self.key(block_id), error)
        return f"{type(error).__name__}: {error}"

    def is_done(self, block_id: int) -> bool:
        return (self.folder / self.key(block_id)).exists()

    def done_ids(self) -> set[int]:
        if not self.folder.is_dir():
            return set()
        n = len(self.prefix)
        return {
            int(name[n:]) for name in os.listdir(self.folder) if name.startswith(self.prefix) and name[n:].isdigit()
        }


def pending_blocks(blocks: Iterable[Block], done: set[int]) -> Iterator[Block]:
    """The blocks whose id has no done-marker, in order."""
    return (b for b in blocks if b.block_id not in done)


# --------------------------------------------------------------------------------------------------------
# the engine: run a per-block function over pending blocks on dask, with progress and contained failures


@dataclass
class BlockwiseResult:
    """What a blockwise run did.

    Attributes
    ----------
    n_blocks : blocks in the job.
    n_already_done : blocks skipped because a done-marker existed when the run started.
    n_processed : blocks finished (and marked done) by this run.
    failed : block id -> error message for blocks that raised; they have no marker and a rerun retries them.
    seconds : wall time of this run.
    """

    n_blocks: int
    n_already_done: int
    n_processed: int
    failed: dict[int, str]
    seconds: float

    def raise_for_failures(self, job: str, records: str | Path | None = None) -> None:
        """Raise :class:`shared.jobs.JobIncompleteError` (a ``RuntimeError``; exit code 1 on the command
        line) naming the first failure, if any block failed. ``records``: where the tracebacks are."""
        if self.failed:
            block_id, message = next(iter(self.failed.items()))
            where = f"; their errors are in {records}" if records is not None else ""
            raise JobIncompleteError(
                f"{job}: {len(self.failed)} of {self.n_blocks} blocks failed ({self.n_processed} finished "
                f"this run, {self.n_already_done} earlier; first: block {block_id}: {message}){where}; rerun "
                "the same command to retry them"
            )


def _run_one(process: Callable[[Block], Any], markers: DoneMarkers, block: Block) -> tuple[int, str | None]:
    """Process one block and mark it done; an exception becomes a failure record, not a crash."""
    try:
        process(block)
    except Exception as err:  # contained: one bad block must not discard the finished ones
        return block.block_id, markers.mark_failed(block.block_id, err)
    markers.mark(block.block_id)
    return block.block_id, None


def run_blockwise(
    process: Callable[[Block], Any],
    blocks: Sequence[Block],
    markers: DoneMarkers,
    *,
    scheduler: str | Any | None = None,
    workers: int | None = None,
    desc: str = "blocks",
    progress: bool = True,
) -> BlockwiseResult:
    """Run ``process(block)`` for every block without a done-marker, on dask, with a progress bar.

    Parameters
    ----------
    process : a picklable callable (a top-level function or an instance of a top-level class) that reads
        the block's read ROI and writes its write ROI. It must not return large data.
    blocks : the job's blocks (e.g. from :func:`block_grid`).
    markers : the done-markers; a block is marked only after ``process`` returned.
    scheduler : None or ``"threads"`` for dask's threaded scheduler (default), ``"synchronous"`` for serial
        debugging, a ``dask.distributed`` scheduler address (``"tcp://host:8786"``) or a ``Client``.
    workers : threads for the threaded scheduler (default: dask's default, the number of cores).
    desc : label of the progress bar, which shows blocks done, blocks/s and the ETA.

    Returns
    -------
    :class:`BlockwiseResult`; failed blocks are listed there (call ``raise_for_failures``), never marked.
    """
    import dask
    from tqdm.auto import tqdm

    start = time.perf_counter()
    done = markers.done_ids()
    todo = list(pending_blocks(blocks, done))
    n_done_before = len(blocks) - len(todo)
    failed: dict[int, str] = {}
    bar = tqdm(
        total=len(blocks), initial=n_done_before, desc=desc, unit="block", disable=not progress, dynamic_ncols=True
    )

    def record(outcome: tuple[int, str | None]) -> None:
        block_id, error = outcome
        if error is not None:
            failed[block_id] = error
            bar.set_postfix(failed=len(failed))
        bar.update(1)

    with bar:
        if todo and scheduler not in (None, "threads", "synchronous"):
            from distributed import Client, as_completed

            client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
            try:
                futures = [
                    client.submit(_run_one, process, markers, b, key=f"{desc}-block-{b.block_id}", pure=False)
                    for b in todo
                ]
                for future in as_completed(futures):
                    record(future.result())
            finally:
                if client is not scheduler:
                    client.close()
        elif todo:
            from dask.callbacks import Callback

            tasks = [
                dask.delayed(_run_one, pure=False)(process, markers, b, dask_key_name=f"{desc}-block-{b.block_id}")
                for b in todo
            ]
            names = {f"{desc}-block-{b.block_id}" for b in todo}
            on_done = Callback(posttask=lambda key, result, *_: record(result) if key in names else None)
            with on_done:
                dask.compute(*tasks, scheduler="sync" if scheduler == "synchronous" else "threads", num_workers=workers)
    return BlockwiseResult(len(blocks), n_done_before, len(todo) - len(failed), failed, time.perf_counter() - start)


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _glibc():
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def return_freed_buffers_to_os(threshold: int = 1 << 20) -> bool:
    """Serve allocations of ``threshold`` bytes or more with ``mmap`` (glibc), so freed block buffers leave.

    glibc raises its mmap threshold dynamically (up to 32 MiB) after a large buffer is freed, so later block
    buffers come from per-thread heaps that fragment and are rarely given back: with two worker threads
    ``predict`` kept ~300 MiB of freed tensors and arrays. A fixed threshold turns that off (the same setting
    as ``MALLOC_MMAP_THRESHOLD_``). Each large buffer then costs fresh zeroed pages, which is noise next to a
    network's forward pass but doubled the time of ``segment``'s light per-block work, so only ``predict``
    uses it (process-wide, so only its command line). Returns False where the C library is not glibc.
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))


def trim_free_memory() -> bool:
    """Give the free pages of every malloc heap back to the operating system (glibc ``malloc_trim``).

    Called between stages of a blockwise job, so a global step (``segment``'s agglomeration) does not sit on
    top of the buffers the block stage freed but glibc kept. Returns False where the C library is not glibc.
    """
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))
