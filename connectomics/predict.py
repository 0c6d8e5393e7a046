"""Blockwise affinity prediction over volumes of any size: ``connectomics predict``.

The volume is cut into blocks (:mod:`connectomics.blocks`) on a grid anchored at voxel 0 whose block shape
is a multiple of the output's storage chunks, so every zarr chunk is written by exactly one block. Each
block is predicted independently (dask threads locally, or a ``dask.distributed`` cluster), written, and only
then marked done; a rerun skips marked blocks and refuses to continue an output made with other settings.

Two tiling modes
----------------
valid (default)
    The model sees the block's write ROI grown by ``context`` (clipped to the volume) and only the write ROI
    is kept. When the context covers the model's receptive-field radius, the result equals whole-volume
    inference exactly: at the volume border both see the same zero padding, inside it both see the same
    voxels. This needs a model whose output at a voxel depends only on the input in its receptive field:
    plain convolutions, or a U-Net whose block and context are multiples of its total pooling factor.
    Normalisation with per-sample statistics (GroupNorm, InstanceNorm, BatchNorm in training mode) sees a
    different sample per block and breaks exact equality; the difference is small when blocks are large.
``--blend``
    The model runs on overlapping windows of shape ``window`` placed at stride ``window - overlap`` on a
    grid anchored at the ROI (the last window along an axis is shifted to end at the ROI border), and each
    voxel is the bump-weighted mean of every window covering it (chunkflow / PyTorch Connectomics
    blending: weight ``exp(-sum(1 / (1 - u^2)))``, ``u`` in (-1, 1) across the window). Value and weight
    are accumulated in the same float32 buffer. A block computes every window that overlaps it, so windows
    on block faces are computed by both neighbours (the redundancy is printed); in exchange, blocks are
    independent and the blockwise result equals blending over the whole volume.

Outputs are sigmoid probabilities (the model returns logits), shape (channel, plane, row, column), stored as
float32, float16 or uint8 (``round(255 p)``). The affinity offsets of the model are written to the array's
attributes so ``connectomics segment`` knows the convention.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from connectomics.blocks import (
    Block,
    BlockwiseResult,
    DoneMarkers,
    Roi,
    as_coordinate,
    block_grid,
    check_chunk_aligned,
    open_input,
    open_output,
    parse_coordinate,
    read_region,
    return_freed_buffers_to_os,
    run_blockwise,
)
from shared.jobs import BOOKKEEPING, OutputExistsError, check_output_folder, file_sha256, open_job

if TYPE_CHECKING:  # torch is imported where a model runs, so `connectomics predict --help` needs no torch
    import torch

OUTPUT_DTYPES = ("float32", "float16", "uint8")
DEFAULT_LOADER = "connectomics.predict:load_affinity_model"


# --------------------------------------------------------------------------------------------------------
# models: loaded from a checkpoint path once per worker process, never pickled between processes


def load_affinity_model(checkpoint: str | Path) -> torch.nn.Module:
    """The network of a trained :class:`connectomics.train.AffinityModel` checkpoint, for inference.

    Rebuilt as a plain :class:`connectomics.model.AffinityNet` (same weights, same outputs) from the
    checkpoint read with ``weights_only=True``; Lightning is never imported, which keeps every worker
    ~175 MiB smaller.
    """
    from connectomics.model import load_affinity_net

    return load_affinity_net(checkpoint)


_MODELS: dict[tuple[str, str, str], torch.nn.Module] = {}
_MODELS_LOCK = threading.Lock()


def _resolve(target: str) -> Callable[[str], torch.nn.Module]:
    module_name, _, func_name = target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def cached_model(checkpoint: str, loader: str = DEFAULT_LOADER) -> tuple[torch.nn.Module, torch.device]:
    """The model for ``checkpoint``, loaded once per process (threads share it) onto the default device.

    ``loader`` is ``"module:function"`` taking the checkpoint path and returning a module that maps
    raw (B, 1, Z, Y, X) float32 in [0, 1] to affinity logits (B, C, Z, Y, X).
    """
    from shared.devices import default_device

    device = default_device()
    key = (loader, str(checkpoint), str(device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            model = _resolve(loader)(checkpoint)
            _MODELS[key] = model.to(device).eval()
        return _MODELS[key], device


def model_offsets(model: torch.nn.Module) -> list[list[int]] | None:
    """The affinity offsets a model predicts (its ``offsets`` attribute), as plain lists, or None."""
    offsets = getattr(model, "offsets", None)
    return None if offsets is None else [[int(v) for v in o] for o in offsets]


def to_model_input(raw: np.ndarray) -> np.ndarray:
    """Raw voxels as float32 in [0, 1]: uint8 / 255, uint16 / 65535, floating values unchanged."""
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / 255.0
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) / 65535.0
    if raw.dtype.kind == "f":
        return raw.astype(np.float32, copy=False)
    raise TypeError(f"raw must be uint8, uint16 or floating point, got {raw.dtype}")


def encode(probabilities: np.ndarray, dtype: str) -> np.ndarray:
    """Probabilities in [0, 1] as the output dtype (uint8 stores ``round(255 p)``); float32 is not copied."""
    if dtype == "uint8":
        scaled = np.clip(probabilities, 0.0, 1.0)  # one float temporary, scaled and rounded in place
        scaled *= 255.0
        return np.rint(scaled, out=scaled).astype(np.uint8)
    return probabilities.astype(dtype, copy=False)


def forward_probabilities(
    model: torch.nn.Module, device: torch.device, raw: np.ndarray, crop: tuple[slice, ...] | None = None
) -> np.ndarray:
    """Sigmoid of the model's logits for one window.

    Parameters
    ----------
    raw : ndarray of shape (plane, row, column), float32 in [0, 1].
    crop : slices (plane, row, column) of the window to keep; the sigmoid and the copy back to numpy are
        only paid for these voxels (default: all).

    Returns
    -------
    ndarray of shape (channel, plane, row, column) (cropped), float32 probabilities.
    """
    import torch

    from shared.devices import autocast

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(raw))[None, None].to(device)
        with autocast(device):
            logits = model(x)
        logits = logits[0] if crop is None else logits[(0, slice(None)) + tuple(crop)]
        return torch.sigmoid(logits.float()).cpu().numpy()


# --------------------------------------------------------------------------------------------------------
# blending


def bump_weights(shape: Sequence[int], floor: float = 1e-4) -> np.ndarray:
    """Bump weights ``exp(-sum_i 1 / (1 - u_i^2))`` over a window, normalised to 1 at the centre.

    ``u_i`` runs over voxel centres from -1 to 1 across axis ``i``. Weights are floored at ``floor`` so a
    voxel covered by a single window (at the volume border) still divides exactly.

    Returns
    -------
    ndarray of ``shape``, float32.
    """
    weights = np.ones((), np.float32)
    for n in shape:
        u = (2.0 * (np.arange(n) + 0.5) / n - 1.0) if n > 1 else np.zeros(1)
        axis = np.exp(1.0 - 1.0 / (1.0 - u**2)).astype(np.float32)  # exp(1 - ...) = 1 at the centre
        weights = np.multiply.outer(weights, axis)
    return np.maximum(weights, np.float32(floor)).astype(np.float32)


def window_starts(lo: int, hi: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis covering ``[lo, hi)``: stride ``stride``, the last shifted to end at hi.

    A range shorter than the window gets a single (clipped) window at ``lo``.

    >>> window_starts(0, 10, 4, 2)
    [0, 2, 4, 6]
    >>> window_starts(0, 11, 4, 2)
    [0, 2, 4, 6, 7]
    """
    if hi - lo <= window:
        return [lo]
    starts = list(range(lo, hi - window, stride))
    return starts + [hi - window]


def windows_for(write_roi: Roi, total_roi: Roi, window: Sequence[int], stride: Sequence[int]) -> list[Roi]:
    """The windows of the global window grid over ``total_roi`` that overlap ``write_roi``."""
    per_axis = []
    for a in range(write_roi.ndim):
        starts = window_starts(total_roi.begin[a], total_roi.end[a], window[a], stride[a])
        size = min(window[a], total_roi.shape[a])
        per_axis.append([(s, size) for s in starts if s < write_roi.end[a] and s + size > write_roi.begin[a]])
    return [
        Roi(tuple(s for s, _ in combo), tuple(n for _, n in combo))
        for combo in np.ndindex(*[len(p) for p in per_axis])
        for combo in [[per_axis[a][i] for a, i in enumerate(combo)]]
    ]


# --------------------------------------------------------------------------------------------------------
# the per-block work


@dataclass(frozen=True)
class BlockPredictor:
    """Predicts one block and writes it: a picklable description (paths and settings, no arrays/models).

    Attributes
    ----------
    checkpoint, loader : the model (loaded once per worker process via :func:`cached_model`).
    input_path : the raw volume, e.g. ``vol.zarr/raw``.
    output_root, output_array : the level-0 output zarr array (store root, path inside it).
    total_roi : the voxels to predict.
    dtype : output dtype.
    mask_path : optional mask volume; blocks without mask voxels are skipped, masked-out voxels are 0.
    window, stride : blended windows, or None for valid-region cropping.
    """

    checkpoint: str
    loader: str
    input_path: str
    output_root: str
    output_array: str
    total_roi: Roi
    dtype: str
    mask_path: str | None = None
    window: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None

    def __call__(self, block: Block) -> None:
        mask = None
        if self.mask_path is not None:
            mask = read_region(self.mask_path, block.write_roi) != 0
            if not mask.any():
                return  # nothing to predict: the output keeps its fill value 0
        model, device = cached_model(self.checkpoint, self.loader)
        if self.window is None:
            raw = to_model_input(read_region(self.input_path, block.read_roi))
            keep = block.write_roi.to_slices(relative_to=block.read_roi)
            probs = forward_probabilities(model, device, raw, crop=keep)
        else:
            probs = self.blend(model, device, block)
        if mask is not None:
            probs *= mask[None]
        out = open_output(self.output_root, self.output_array)
        out[(slice(None),) + block.write_roi.to_slices()] = encode(probs, self.dtype)

    def blend(self, model: torch.nn.Module, device: torch.device, block: Block) -> np.ndarray:
        """Bump-weighted mean over every window of the global grid that overlaps the block."""
        windows = windows_for(block.write_roi, self.total_roi, self.window, self.stride)
        read_roi = Roi.from_bounds(np.min([w.begin for w in windows], axis=0), np.max([w.end for w in windows], axis=0))
        raw = to_model_input(read_region(self.input_path, read_roi))
        value = weight = None
        for win in windows:
            probs = forward_probabilities(model, device, raw[win.to_slices(relative_to=read_roi)])
            bump = bump_weights(win.shape)
            part = win.intersect(block.write_roi)
            src, dst = part.to_slices(relative_to=win), part.to_slices(relative_to=block.write_roi)
            if value is None:  # value and weight in one float32 buffer: channel -1 holds the weight
                value = np.zeros((probs.shape[0] + 1,) + block.write_roi.shape, np.float32)
                weight = value[-1]
            value[(slice(0, -1),) + dst] += probs[(slice(None),) + src] * bump[src]
            weight[dst] += bump[src]
        return value[:-1] / np.maximum(weight, np.float32(1e-4))


# --------------------------------------------------------------------------------------------------------
# the job

JOB_COMMAND = "connectomics predict"
RAW_DTYPES = ("uint8", "uint16", "float16", "float32", "float64")
MISSING_CHUNKS = ("error", "zeros")


def job_folder(output_path: str | Path) -> Path:
    """The folder holding a job's bookkeeping: the level-0 array of the output image, ``<image>/0``.

    The manifest, done-markers, failure records and lock live in ``<image>/0/.job/`` (:mod:`shared.jobs`),
    inside the array, so copying or moving the container carries them along (zarr 3 ignores a ``.job``
    folder inside an array; at group level it would warn).
    """
    return Path(str(output_path).rstrip("/")) / "0"


def _check_positive(values: Sequence[int], name: str, *, zero_ok: bool = False) -> None:
    low = 0 if zero_ok else 1
    if any(v < low for v in values):
        raise ValueError(f"{name} must be {'>= 0' if zero_ok else 'positive'} along every axis, got {tuple(values)}")


def predict_blockwise(
    checkpoint: str | Path,
    input_path: str,
    output_path: str,
    *,
    block_shape: Sequence[int],
    context: Sequence[int] | int = 0,
    roi: Roi | None = None,
    mask_path: str | None = None,
    dtype: str = "float32",
    blend: bool = False,
    window: Sequence[int] | None = None,
    overlap: Sequence[int] | None = None,
    chunks: Sequence[int] | None = None,
    scheduler: str | Any | None = None,
    workers: int | None = None,
    loader: str = DEFAULT_LOADER,
    progress: bool = True,
    overwrite: bool = False,
    wait: bool = False,
    missing_chunks: str = "error",
) -> BlockwiseResult:
    """Predict affinities over a volume block by block, resumably.

    Every input is checked before anything is created. The output's bookkeeping (:func:`job_folder`) holds
    the settings, so a rerun with other settings, or into an array this command did not write, is refused
    unless ``overwrite``; a second run into the same output refuses naming the first (or waits: ``wait``).

    Parameters
    ----------
    checkpoint : the model checkpoint (loaded by ``loader`` in every worker).
    input_path : raw volume, e.g. ``vol.zarr/raw`` or ``file.h5:volumes/raw``; 3-D (plane, row, column),
        uint8, uint16 or floating point in [0, 1].
    output_path : output dataset, e.g. ``pred.zarr/affs``; created as OME-Zarr of shape
        (channel, plane, row, column) covering the whole input, or reopened to resume.
    block_shape : write-ROI shape (plane, row, column); a multiple of the output storage chunks.
    context : voxels of input added on every side of a block (valid mode); at least the receptive-field
        radius for blockwise == whole-volume results.
    roi : only predict these voxels (the rest of the output keeps fill value 0).
    mask_path : a volume of the same shape; blocks without nonzero mask voxels are skipped and
        predictions outside the mask are 0.
    dtype : ``float32``, ``float16`` or ``uint8``.
    blend : blended overlapping windows instead of valid-region cropping (see the module docstring).
    window, overlap : blended window shape (default: the block shape) and overlap (default: half a window).
    chunks : storage chunks of a new output (default: the block shape).
    scheduler, workers : see :func:`connectomics.blocks.run_blockwise`.
    loader : ``"module:function"`` that rebuilds the model from the checkpoint.
    overwrite : replace an output this job did not write (same shape, dtype and chunks), or one written
        with other settings (its done-markers are cleared; blocks are replaced as they are rewritten).
    wait : wait for another run holding the output's lock instead of refusing.
    missing_chunks : ``"error"`` refuses a zarr input with absent storage chunks (a partial copy reads as
        zeros without a word); ``"zeros"`` accepts them as zeros (regions zarr left out because they held
        only the fill value). A mask's absent chunks are always zeros: masks are sparse by nature.

    Returns
    -------
    :class:`connectomics.blocks.BlockwiseResult`; raises :class:`shared.jobs.JobIncompleteError` (a
    ``RuntimeError``) if blocks failed, after every other block has been finished and marked, so a rerun
    only retries the failed ones.
    """
    from connectomics.io import create_ome_zarr_array

    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(OUTPUT_DTYPES)}; got {dtype!r}")
    root = check_output_folder(job_folder(output_path), name="output")
    checkpoint = str(Path(checkpoint).resolve())
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"model checkpoint does not exist: {checkpoint}")
    volume = open_input(str(input_path))
    if volume.data.ndim != 3:
        raise ValueError(f"input {input_path} must be 3-D (plane, row, column), got shape {volume.data.shape}")
    if np.dtype(volume.data.dtype).name not in RAW_DTYPES:
        raise ValueError(
            f"input {input_path} is {volume.data.dtype}; raw must be uint8, uint16 or floating point "
            "in [0, 1] (convert it first, e.g. rescale to uint16)"
        )
    if missing_chunks not in MISSING_CHUNKS:
        raise ValueError(f"missing_chunks must be one of {', '.join(MISSING_CHUNKS)}; got {missing_chunks!r}")
    n_missing = volume.missing_chunks()
    if n_missing and missing_chunks == "error":
        raise ValueError(
            f"input {input_path}: {n_missing} of {volume.stored.nchunks} storage chunks are missing "
            "and would read as zeros (a partial copy or write?); if those regions are really empty "
            "(zarr does not store a chunk holding only the fill value), pass --missing-chunks zeros"
        )
    volume_roi = Roi((0, 0, 0), tuple(volume.data.shape))
    roi = volume_roi if roi is None else roi
    if not volume_roi.contains(roi) or roi.empty():
        raise ValueError(f"ROI {roi} is not inside the volume {volume_roi}")
    block_shape = as_coordinate(block_shape, 3, name="block")
    context = as_coordinate(context, 3, name="context")
    chunks = block_shape if chunks is None else as_coordinate(chunks, 3, name="chunks")
    _check_positive(block_shape, "block")
    _check_positive(context, "context", zero_ok=True)
    _check_positive(chunks, "chunks")
    if mask_path is not None:
        mask_shape = tuple(open_input(str(mask_path)).data.shape)
        if mask_shape != volume_roi.shape:
            raise ValueError(f"mask {mask_path} has shape {mask_shape}, the input {volume_roi.shape}")
    stride = None
    if blend:
        window = block_shape if window is None else as_coordinate(window, 3, name="window")
        _check_positive(window, "window")
        overlap = tuple(w // 2 for w in window) if overlap is None else as_coordinate(overlap, 3, name="overlap")
        if any(not 0 <= o < w for o, w in zip(overlap, window)):
            raise ValueError(f"overlap {overlap} must be >= 0 and smaller than the window {window}")
        stride = tuple(w - o for w, o in zip(window, overlap))
    elif window is not None or overlap is not None:
        raise ValueError("window and overlap only apply with blend=True (--blend)")
    check_chunk_aligned(block_shape, chunks, what=str(output_path))

    model, _ = cached_model(checkpoint, loader)  # a wrong, truncated or hostile checkpoint stops here
    offsets = model_offsets(model)
    n_channels = _count_channels(model, offsets)
    config = {
        "input": str(input_path),
        "input_shape": list(volume_roi.shape),
        "checkpoint_sha256": file_sha256(checkpoint),
        "block": list(block_shape),
        "context": list(context),
        "roi": [list(roi.begin), list(roi.end)],
        "mask": None if mask_path is None else str(mask_path),
        "dtype": dtype,
        "mode": "blend" if blend else "valid",
        "window": None if window is None else list(window),
        "stride": None if stride is None else list(stride),
        "offsets": offsets,
        "channels": n_channels,
    }
    if (root / "zarr.json").exists() and not (root / BOOKKEEPING).is_dir() and not overwrite:
        raise OutputExistsError(
            f"{output_path} exists and was not written by `{JOB_COMMAND}` (no bookkeeping in "
            f"{root / BOOKKEEPING}); pass --overwrite to replace it, or choose another output"
        )
    with open_job(root, JOB_COMMAND, config, overwrite=overwrite, wait=wait) as job:
        job.claim("zarr.json", "c")
        out = create_ome_zarr_array(
            output_path,
            shape=(n_channels,) + volume_roi.shape,
            dtype=dtype,
            chunks=(n_channels,) + chunks,
            axes=("c", "z", "y", "x"),
            voxel_size=tuple(volume.voxel_size),
            offset=tuple(volume.offset),
            fill_value=0,
            exists_ok=True,
        )
        check_chunk_aligned(block_shape, out.chunks[1:], what=str(output_path))
        if offsets is not None:
            out.attrs["affinity_offsets"] = offsets
        blocks = block_grid(roi, block_shape, context, volume_roi=volume_roi, origin=(0, 0, 0))
        if blend:
            n_windows = sum(len(windows_for(b.write_roi, roi, window, stride)) for b in blocks)
            n_unique = int(
                np.prod([len(window_starts(roi.begin[a], roi.end[a], window[a], stride[a])) for a in range(3)])
            )
            print(
                f"predict: blending {n_unique} windows, computed {n_windows / n_unique:.2f}x "
                f"(windows on block faces are computed by each block they overlap)"
            )
        predictor = BlockPredictor(
            checkpoint=checkpoint,
            loader=loader,
            input_path=str(input_path),
            output_root=str(out.store.root),
            output_array=out.path,
            total_roi=roi,
            dtype=dtype,
            mask_path=None if mask_path is None else str(mask_path),
            window=None if window is None else tuple(window),
            stride=stride,
        )
        result = run_blockwise(
            predictor,
            blocks,
            DoneMarkers.of_job(job),
            scheduler=scheduler,
            workers=workers,
            desc="predict",
            progress=progress,
        )
    result.raise_for_failures("predict", records=job.folder / "failed")
    return result


def _count_channels(model: torch.nn.Module, offsets: list[list[int]] | None) -> int:
    if offsets is not None:
        return len(offsets)
    for name in ("out_channels", "n_channels"):
        if isinstance(getattr(model, name, None), int):
            return getattr(model, name)
    raise ValueError("the model has neither an 'offsets' nor an 'out_channels' attribute; cannot size the output")


# --------------------------------------------------------------------------------------------------------
# command line

DESCRIPTION = """Blockwise affinity prediction over a volume of any size.

Reads RAW (zarr/OME-Zarr/HDF5, 3-D, axes plane,row,column), runs MODEL.ckpt block by block and writes
sigmoid affinities to OUT as OME-Zarr (channel, plane, row, column) covering the whole input.

  connectomics predict model.ckpt sim.zarr/raw pred.zarr/affs --block 32,128,128 --context 8,32,32

Blocks are cut on a grid anchored at voxel 0; the block shape must be a multiple of OUT's storage chunks
(by default the chunks are the block shape). Rerunning the same command resumes: finished blocks (a
done-marker in OUT/0/.job/, which travels with the data when the container is copied) are skipped; a rerun
with a different model, block, context, ROI, mask, dtype or mode, or into an array this command did not
write, is refused and nothing is changed (--overwrite replaces it). A second run into the same OUT refuses
naming the first (--wait waits for it).

Valid mode (default) keeps the block and gives the model --context voxels around it: blockwise results
equal whole-volume inference when the context covers the receptive-field radius (and the model has no
per-sample normalisation). --blend instead averages overlapping --window windows with bump weights."""


def cli(argv: list[str]) -> int:
    """``connectomics predict``: see ``connectomics predict --help``."""
    from shared.cli import add_output_arguments, subcommand_parser

    parser = subcommand_parser("connectomics predict", DESCRIPTION)
    parser.add_argument("model", help="model checkpoint (.ckpt), loaded with weights_only=True")
    parser.add_argument("input", help="raw volume, e.g. vol.zarr/raw or file.h5:volumes/raw")
    parser.add_argument("output", help="output dataset, e.g. pred.zarr/affs (created, or resumed)")
    parser.add_argument("--block", required=True, help="write-block shape Z,Y,X (voxels)")
    parser.add_argument("--context", default="0", help="input context around each block, Z,Y,X (valid mode)")
    parser.add_argument("--roi", default=None, help="only predict z0:z1,y0:y1,x0:x1 (voxels, end exclusive)")
    parser.add_argument("--mask", default=None, help="mask volume of the input's shape; 0 = skip")
    parser.add_argument("--dtype", default="float32", choices=OUTPUT_DTYPES, help="output dtype")
    parser.add_argument("--blend", action="store_true", help="blend overlapping windows with bump weights")
    parser.add_argument("--window", default=None, help="blend window Z,Y,X (default: the block shape)")
    parser.add_argument("--overlap", default=None, help="blend overlap Z,Y,X (default: half the window)")
    parser.add_argument(
        "--chunks", default=None, help="storage chunks Z,Y,X of a new output (default: the block shape)"
    )
    parser.add_argument(
        "--scheduler", default=None, help="dask.distributed scheduler address (tcp://host:8786); default: local threads"
    )
    parser.add_argument("--workers", type=int, default=None, help="local threads (default: number of cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--missing-chunks",
        default="error",
        choices=MISSING_CHUNKS,
        help="absent zarr chunks of the input: refuse them, or read them as zeros (only where "
        "the regions are really empty; a mask's absent chunks are always zeros)",
    )
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    settings = {
        "block_shape": parse_coordinate(args.block, name="--block"),
        "context": parse_coordinate(args.context, name="--context"),
        "roi": None if args.roi is None else Roi.parse(args.roi),
        "window": None if args.window is None else parse_coordinate(args.window, name="--window"),
        "overlap": None if args.overlap is None else parse_coordinate(args.overlap, name="--overlap"),
        "chunks": None if args.chunks is None else parse_coordinate(args.chunks, name="--chunks"),
    }
    return_freed_buffers_to_os()
    result = predict_blockwise(
        args.model,
        args.input,
        args.output,
        mask_path=args.mask,
        dtype=args.dtype,
        blend=args.blend,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        wait=args.wait,
        missing_chunks=args.missing_chunks,
        **settings,
    )
    summary = {
        "blocks": result.n_blocks,
        "already_done": result.n_already_done,
        "processed": result.n_processed,
        "failed": len(result.failed),
        "seconds": round(result.seconds, 2),
    }
    print("predict: " + json.dumps(summary))
    return 0
