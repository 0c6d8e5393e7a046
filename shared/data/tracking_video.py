"""Tracking videos: the :class:`TrackingSet` container, the painter that draws them, and their zarr store.

Both tracking generators (:mod:`shared.data.pathtracker`, :mod:`shared.data.featuretracker`) produce the
published layout: ``videos`` uint8 ``(n, T, H, W, 3)`` RGB (red = start marker, green = dots, blue = goal
marker), ``labels`` int64 ``(n,)`` (1 = the dot leaving the start ends in the goal) and per-frame object
``masks`` uint8 ``(n, T, H, W)`` (0 background, 1 markers, 2 target, 3 + k distractor k). They draw with
:func:`paint` (a painter's algorithm over layers, vectorised over a block of videos) and store through
:func:`write_tracking_zarr` / :func:`load_tracking_zarr`, one thin layer over
:func:`shared.data.zarr_store.write_sample_zarr` (resumable blocks, config check, lock, ``overwrite`` rule,
``num_workers``).

Examples
--------
>>> layers = new_layers(1, 2, 8, n_layers=3)  # one video, two frames
>>> paint(layers, np.array([[[1, 1], [2, 2]]]), np.ones((2, 2), bool), layer=1)
>>> paint(layers, np.array([[[2, 2], [2, 2]]]), np.ones((1, 1), bool), layer=2)
>>> layers[0, 0, 1:4, 1:4].tolist()
[[1, 1, 0], [1, 2, 0], [0, 0, 0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.data.sampling import seed_tuple
from shared.data.zarr_store import ArraySpec, StoreKind, load_sample_zarr, write_sample_zarr

__all__ = [
    "MARKER_ID",
    "TARGET_ID",
    "TrackingSet",
    "TrackingTask",
    "chebyshev",
    "composite",
    "load_tracking_zarr",
    "new_layers",
    "outline",
    "paint",
    "write_tracking_zarr",
]

MARKER_ID = 1
"""Mask id of both markers."""
TARGET_ID = 2
"""Mask id of the target; distractor ``k`` has id ``3 + k``."""


class TrackingConfig(Protocol):
    image_size: int
    frames: int

    @property
    def num_objects(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class TrackingSet:
    """Generated (or loaded) tracking videos.

    Attributes
    ----------
    videos : ndarray of shape (n, T, H, W, 3), uint8 RGB (axes: video, frame, row, column, channel).
    labels : ndarray of shape (n,), int64; 1 when the dot leaving the red start marker ends in the blue goal.
    masks : ndarray of shape (n, T, H, W), uint8 object ids per pixel: 0 background, 1 markers, 2 target,
        3 + k distractor k (the visible, top-most object).
    config : the generator's config (``PathTrackerConfig`` or ``FeatureTrackerConfig``).
    seed : the seed tuple used.
    tracks : ndarray of shape (n, K, T, 2), int16, or None; top-left (row, column) of every object per frame
        (object 0 the target, object 1 + k distractor k).
    markers : ndarray of shape (n, 2, 2), int16, or None; top-left (row, column) of the (start, goal) markers.
    """

    videos: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    config: Any
    seed: tuple[int, ...] = (0,)
    tracks: np.ndarray | None = None
    markers: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# ------------------------------------------------------------------------------------------------ drawing


def outline(side: int) -> np.ndarray:
    """Footprint of an open square of ``side`` pixels (the markers), bool (side, side)."""
    footprint = np.ones((side, side), bool)
    footprint[1:-1, 1:-1] = False
    return footprint


def chebyshev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chebyshev (chessboard) distance between (row, column) positions on the last axis."""
    return np.abs(np.asarray(a) - np.asarray(b)).max(axis=-1)


def new_layers(videos: int, frames: int, size: int, n_layers: int) -> np.ndarray:
    """An empty layer buffer (videos, frames, size, size) for :func:`paint`; uint8 while ``n_layers`` < 256
    (the buffer of a block is the largest array a generator holds)."""
    return np.zeros((videos, frames, size, size), np.uint8 if n_layers < 256 else np.uint16)


def paint(layers: np.ndarray, positions: np.ndarray, footprint: np.ndarray, layer: int) -> None:
    """Paint ``layer`` over ``layers`` wherever the footprint, placed at ``positions``, lands (in place).

    Later calls overwrite earlier ones, so calling in drawing order gives the reference's painter's algorithm
    (and a per-pixel record of which object is visible). Pixels outside the image are dropped.

    Parameters
    ----------
    layers : ndarray of shape (m, T, H, W), integer; the top-most layer per pixel (0 = background).
    positions : ndarray of shape (m, T, 2) or (m, 1, 2), int; top-left (row, column) of the footprint.
    footprint : bool ndarray of shape (h, w) or (m, T, h, w) (a per-video, per-frame footprint).
    layer : the value painted (> 0).
    """
    m, frames = layers.shape[:2]
    h, w = footprint.shape[-2:]
    stamp = np.broadcast_to(footprint, (m, frames, h, w))
    v, t, i, j = np.nonzero(stamp)
    pos = np.broadcast_to(positions, (m, frames, 2))
    rows, cols = pos[v, t, 0] + i, pos[v, t, 1] + j
    inside = (rows >= 0) & (rows < layers.shape[2]) & (cols >= 0) & (cols < layers.shape[3])
    layers[v[inside], t[inside], rows[inside], cols[inside]] = layer


def composite(layers: np.ndarray, palette: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn painted layers into RGB videos and object-id masks.

    Parameters
    ----------
    layers : ndarray of shape (m, T, H, W), int; from :func:`paint` (0 = background).
    palette : ndarray of shape (m or 1, T or 1, L, 3), uint8; colour of layer ``l`` in video ``v``, frame ``t``
        (row 0, the background, black).
    ids : ndarray of shape (L,), uint8; mask id of each layer.

    Returns
    -------
    videos : ndarray of shape (m, T, H, W, 3), uint8.
    masks : ndarray of shape (m, T, H, W), uint8.
    """
    m, frames = layers.shape[:2]
    masks = np.asarray(ids, np.uint8)[layers]
    if palette.shape[0] == 1 and palette.shape[1] == 1:  # one palette for all: a single lookup
        return palette[0, 0][layers], masks
    palette = np.broadcast_to(palette, (m, frames, *palette.shape[2:]))
    videos = np.empty((*layers.shape, 3), np.uint8)
    t = np.arange(frames)[:, None, None]
    for v in range(m):  # per video: index arrays of one video stay small
        videos[v] = palette[v][t, layers[v]]
    return videos, masks


# ------------------------------------------------------------------------------------------------ zarr


@dataclass(frozen=True)
class TrackingTask:
    """One tracking generator, as the shared store sees it.

    Parameters
    ----------
    title : name in messages ("PathTracker").
    format_name : the ``format`` attr of its zarr groups.
    writer : its public writer's name (for messages).
    generate : ``generate(n, *, config, seed, indices) -> TrackingSet`` (a module-level function).
    config_type : its config class (with ``from_dict``).
    """

    title: str
    format_name: str
    writer: str
    generate: Callable[..., TrackingSet]
    config_type: type

    def store_kind(self, config: TrackingConfig) -> StoreKind:
        size, frames = config.image_size, config.frames
        return StoreKind(
            format_name=self.format_name,
            title=self.title,
            writer=self.writer,
            arrays=(
                ArraySpec("videos", (frames, size, size, 3), "uint8"),  # holds the job bookkeeping
                ArraySpec("masks", (frames, size, size), "uint8"),
                ArraySpec("labels", (), "int64", -1, per_sample=False),
                ArraySpec("tracks", (config.num_objects, frames, 2), "int16", per_sample=False),
                ArraySpec("markers", (2, 2), "int16", per_sample=False),
            ),
        )


def _tracking_block(
    generate: Callable[..., TrackingSet], n: int, config: Any, seed: tuple[int, ...], indices: range
) -> dict[str, np.ndarray]:
    data = generate(n, config=config, seed=seed, indices=indices)
    return {
        "videos": data.videos,
        "masks": data.masks,
        "labels": data.labels,
        "tracks": data.tracks,
        "markers": data.markers,
    }


def write_tracking_zarr(
    path: str | Path,
    n: int,
    *,
    task: TrackingTask,
    config: TrackingConfig,
    seed: int | Sequence[int] = 0,
    block_size: int = 64,
    overwrite: bool = False,
    progress: bool = True,
    num_workers: int = 1,
    wait: bool = False,
) -> Path:
    """Generate ``n`` videos of ``task`` into a zarr group, resumably.

    The group holds ``videos`` (n, T, H, W, 3) uint8 and ``masks`` (n, T, H, W) uint8 (one chunk per video),
    ``labels`` (n,) int64, ``tracks`` (n, K, T, 2) int16, ``markers`` (n, 2, 2) int16 and ``done``
    (n_blocks,) bool; the parameters are in the attrs, the job bookkeeping in ``videos/.job/``. See
    :func:`shared.data.zarr_store.write_sample_zarr` for ``overwrite``, ``num_workers``, ``wait`` and errors.

    Returns
    -------
    path : the resolved group path.
    """
    seed_t = seed_tuple(seed)
    return write_sample_zarr(
        path,
        n,
        kind=task.store_kind(config),
        config=config.to_dict(),
        seed=seed_t,
        generate_block=partial(_tracking_block, task.generate, n, config, seed_t),
        block_size=block_size,
        overwrite=overwrite,
        progress=progress,
        num_workers=num_workers,
        wait=wait,
    )


def load_tracking_zarr(
    path: str | Path, *, task: TrackingTask, expected_config: TrackingConfig | None = None
) -> TrackingSet:
    """Read a complete group written by :func:`write_tracking_zarr` into memory.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing path; not a group of this task; unfinished (interrupted) write; configuration mismatch.
    """
    kind = task.store_kind(expected_config or task.config_type())  # loading uses the names, not the shapes
    attrs, arrays = load_sample_zarr(
        path, kind=kind, expected_config=None if expected_config is None else expected_config.to_dict()
    )
    config = task.config_type.from_dict(attrs["config"])
    expected_shape = (config.frames, config.image_size, config.image_size, 3)
    if arrays["videos"].shape[1:] != expected_shape:
        raise ValueError(
            f"{task.title} dataset {path} has videos of shape {arrays['videos'].shape[1:]}, its config "
            f"says {expected_shape}"
        )
    return TrackingSet(
        arrays["videos"],
        arrays["labels"],
        arrays["masks"],
        config,
        tuple(attrs["seed"]),
        arrays["tracks"],
        arrays["markers"],
    )
