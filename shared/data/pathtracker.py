"""PathTracker: a seeded, vectorised port of the published PathTracker video generator, stored as zarr.

A green target dot and many identical green distractor dots move along spline paths; a red open square marks
where the target starts and a blue one where a dot ends. The label is 1 when the dot leaving the red marker
ends in the blue one. Nothing but motion tells the target from the distractors, so the task needs tracking
without re-recognition (Linsley, Malik et al., NeurIPS 2021).

Port of ``pathtracker/pathtracker_data_generator`` (main script
``cluster_store_individual_modular_spline_curve_generator_path_finder_motion_race_distractor_many_fixed_blob_128_
permanent_markers_square_numpy.py`` with the settings of ``gen_stim.sh``; paths from
:mod:`shared.data.tracking_paths`). Follows the reference:

* 32x32 RGB frames, ``frames`` = path length = 64; paths inside a 27x27 window (``win = 32 - 5``); speed = the
  stride ``skip_param`` between frames along a 326-point spline (1 published; the difficulty axis uses 1, 2, 4).
* A target, one paired distractor of the same length (same path generator and length) and ``num_distractors``
  more (14 in ``gen_stim.sh``; ``extra_dist`` = 0 is not separate here).
* Markers: 3x3 open squares (``skimage.draw.polygon_perimeter`` of ``[r, r + 2]``) at the floored first
  position of the target (red ``(255, 0, 0)``) and at the floored last position of the target (blue
  ``(0, 0, 255)``, positives) or of the paired distractor (negatives, ``NEGATIVE_SAMPLE=1``), in every frame.
* Dots are filled squares drawn green ``(0, 255, 0)`` with their corner one pixel inside the marker's corner
  (``rectangle(r + 1, c + 1, 1, 1)``), so a dot sits in the middle of a marker placed at its position.
* Drawing order: the other distractors, the red marker, the blue marker, the target, the paired distractor
  (later ones cover earlier ones).

Changed, on purpose (say so wherever these data are reported):

* Dot size: ``rectangle(r, c, 1, 1)`` is a 2x2 square under scikit-image 0.26 (polygon boundary pixels
  included) - the default ``dot_size=2``. The reference pinned scikit-image 0.14.2, whose boundary rule was
  not checked here (unverified: its dots may be 1 pixel). The reference floors the target and paired tracks
  only; its other distractors keep fractional positions and come out as single pixels, which would let a
  model tell the target pair from the rest by size. Here every dot is floored and drawn alike.
* No ambiguous samples: another dot starting within ``clearance`` (Chebyshev) pixels of the target's start,
  or the paired distractor ending within ``clearance`` of the target's end, is redrawn (the same rule for
  both labels, so it is no cue). The reference does not check this.
* Labels are exactly balanced per set (seeded permutation) and sample ``i`` uses its own stream
  ``numpy.random.default_rng((*seed, i))``; a sample's paths do not depend on its label (only the blue
  marker does).
* Masks (not in the reference): object ids per pixel of the visible object, see :class:`TrackingSet`.

Examples
--------
>>> data = generate_pathtracker(4, config=PathTrackerConfig(frames=16, num_distractors=3), seed=0)
>>> data.videos.shape, data.videos.dtype, data.masks.shape, int(data.labels.sum())
((4, 16, 32, 32, 3), dtype('uint8'), (4, 16, 32, 32), 2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.sampling import balanced_labels, check_indices, sample_rng, seed_tuple
from shared.data.tracking_paths import check_track_span, spline_tracks
from shared.data.tracking_video import (
    MARKER_ID,
    TARGET_ID,
    TrackingSet,
    TrackingTask,
    chebyshev,
    composite,
    load_tracking_zarr,
    new_layers,
    outline,
    paint,
    write_tracking_zarr,
)

__all__ = [
    "PATHTRACKER_AXES",
    "PathTrackerConfig",
    "config_for_condition",
    "generate_pathtracker",
    "load_pathtracker_zarr",
    "write_pathtracker_zarr",
]

PATHTRACKER_AXES = {"distractors": (0, 5, 14, 25), "length": (32, 64, 128), "speed": (1, 2, 4)}
"""The published difficulty axes (PT-models ``engine.ALL_DATASETS``); each varies one setting of the default."""
_AXIS_FIELDS = {"distractors": "num_distractors", "length": "frames", "speed": "speed"}

GREEN, RED, BLUE = (0, 255, 0), (255, 0, 0), (0, 0, 255)


@dataclass(frozen=True)
class PathTrackerConfig:
    """PathTracker generation parameters (defaults: the published ``gen_stim.sh`` settings).

    Parameters
    ----------
    image_size : frame side in pixels (32).
    frames : frames per video = path length (64; the length axis uses 32, 64, 128).
    num_distractors : distractors besides the paired one (14; the distractor axis uses 0, 5, 14, 25).
    speed : stride along the spline between frames (1; the speed axis uses 1, 2, 4).
    dot_size : side of a dot's filled square (2, see the module docstring).
    marker_size : side of the open marker squares (3).
    margin : ``image_size - margin`` is the side of the window the paths fill (5, i.e. 27 for 32).
    delta_angle_max, wiggle_room, rigidity, curve_points : the spline's parameters (90, 0.95, 0.95, 66).
    clearance : Chebyshev distance below which a start or a paired end counts as ambiguous and is redrawn.
    max_redraws : redraws allowed per video before giving up with an error.
    """

    image_size: int = 32
    frames: int = 64
    num_distractors: int = 14
    speed: int = 1
    dot_size: int = 2
    marker_size: int = 3
    margin: int = 5
    delta_angle_max: float = 90.0
    wiggle_room: float = 0.95
    rigidity: float = 0.95
    curve_points: int = 66
    clearance: int = 3
    max_redraws: int = 1000

    def __post_init__(self) -> None:
        if self.frames < 2 or self.speed < 1 or self.num_distractors < 0:
            raise ValueError(
                f"need frames >= 2, speed >= 1 and num_distractors >= 0, got {self.frames}, "
                f"{self.speed}, {self.num_distractors}"
            )
        check_track_span(self.frames, self.speed, self.curve_points)
        if self.dot_size < 1 or self.marker_size < 3 or self.margin < 1 or self.clearance < 0:
            raise ValueError("need dot_size >= 1, marker_size >= 3, margin >= 1 and clearance >= 0")
        reach = self.window + max(self.dot_size, self.marker_size - 1)
        if reach >= self.image_size:
            raise ValueError(
                f"paths in a {self.window}-pixel window with dots of {self.dot_size} and markers of "
                f"{self.marker_size} overflow a {self.image_size}-pixel frame; raise margin"
            )

    @property
    def window(self) -> int:
        """Side of the window the paths are scaled onto."""
        return self.image_size - self.margin

    @property
    def num_objects(self) -> int:
        """Target + paired distractor + the other distractors."""
        return 2 + self.num_distractors

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON/YAML/zarr-attrs safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PathTrackerConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown PathTracker config key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**values)


def config_for_condition(base: PathTrackerConfig, condition: str) -> PathTrackerConfig:
    """The config of a difficulty condition ``"axis=value"`` (e.g. ``"distractors=25"``, ``"length=128"``).

    Examples
    --------
    >>> config_for_condition(PathTrackerConfig(), "length=128").frames
    128
    """
    axis, sep, value = condition.partition("=")
    axis = axis.strip()
    if not sep or axis not in _AXIS_FIELDS or not value.strip().isdigit():
        raise ValueError(
            f"PathTracker condition must be 'axis=value' with axis in {sorted(_AXIS_FIELDS)} and an "
            f"integer value (published values {PATHTRACKER_AXES}), got {condition!r}"
        )
    return dataclasses.replace(base, **{_AXIS_FIELDS[axis]: int(value)})


def _draw_tracks(rng: np.random.Generator, cfg: PathTrackerConfig) -> np.ndarray:
    """Tracks (K, T, 2) of target (0), paired distractor (1) and distractors, with ambiguous ones redrawn."""

    def draw(k: int) -> np.ndarray:
        return spline_tracks(
            rng,
            k,
            frames=cfg.frames,
            speed=cfg.speed,
            window=cfg.window,
            delta_angle_max=cfg.delta_angle_max,
            wiggle_room=cfg.wiggle_room,
            rigidity=cfg.rigidity,
            curve_points=cfg.curve_points,
        )

    tracks = draw(cfg.num_objects)
    for _ in range(cfg.max_redraws):
        bad = chebyshev(tracks[1:, 0], tracks[0, 0]) < cfg.clearance  # starts under the red marker
        bad[0] |= chebyshev(tracks[1, -1], tracks[0, -1]) < cfg.clearance  # paired end at the target's end
        if not bad.any():
            return tracks
        tracks[1:][bad] = draw(int(bad.sum()))
    raise RuntimeError(
        f"no unambiguous PathTracker video in {cfg.max_redraws} redraws: too many distractors "
        f"({cfg.num_distractors}) for clearance {cfg.clearance} in a {cfg.window}-pixel window"
    )


def _render(
    tracks: np.ndarray, labels: np.ndarray, cfg: PathTrackerConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a block of videos. tracks (m, K, T, 2) int; labels (m,). Returns videos, masks, markers (m, 2, 2)."""
    m, k, frames = tracks.shape[:3]
    size, nd = cfg.image_size, cfg.num_distractors
    start = tracks[:, 0, 0]
    goal = np.where(labels[:, None] == 1, tracks[:, 0, -1], tracks[:, 1, -1])
    layers = new_layers(m, frames, size, n_layers=nd + 5)
    dot = np.ones((cfg.dot_size, cfg.dot_size), bool)
    marker = outline(cfg.marker_size)
    # layer l -> (mask id, colour); painted in the reference's order
    ids, colours = [0], [(0, 0, 0)]
    for d in range(nd):  # the other distractors: objects 2.., mask ids 4..
        paint(layers, tracks[:, 2 + d] + 1, dot, len(ids))
        ids.append(TARGET_ID + 2 + d)
        colours.append(GREEN)
    for position, colour in ((start, RED), (goal, BLUE)):
        paint(layers, position[:, None], marker, len(ids))
        ids.append(MARKER_ID)
        colours.append(colour)
    for obj in (0, 1):  # target (id 2), then the paired distractor (id 3)
        paint(layers, tracks[:, obj] + 1, dot, len(ids))
        ids.append(TARGET_ID + obj)
        colours.append(GREEN)
    palette = np.asarray(colours, np.uint8)[None, None]
    videos, masks = composite(layers, palette, np.asarray(ids))
    return videos, masks, np.stack([start, goal], axis=1)


def generate_pathtracker(
    n: int,
    *,
    config: PathTrackerConfig,
    seed: int | Sequence[int] = 0,
    indices: Sequence[int] | None = None,
    progress: bool = False,
) -> TrackingSet:
    """Generate PathTracker videos, balanced and deterministic.

    Parameters
    ----------
    n : size of the whole set (fixes the balanced label permutation).
    config : generation parameters.
    seed : int or tuple of ints; video ``i`` uses ``numpy.random.default_rng((*seed, i))``.
    indices : which videos of the set to generate (default all ``n``); the same index always gives the same
        video, whatever else is generated.
    progress : show a tqdm progress bar (over the paths; drawing is one vectorised pass).

    Returns
    -------
    data : :class:`~shared.data.tracking_video.TrackingSet` with videos (m, T, H, W, 3) uint8, masks
        (m, T, H, W) uint8, tracks (m, K, T, 2) int16 (K = ``config.num_objects``: target, paired, others)
        and markers (m, 2, 2) int16, m = ``len(indices)``.

    Examples
    --------
    >>> cfg = PathTrackerConfig(frames=8, num_distractors=2)
    >>> a = generate_pathtracker(6, config=cfg, seed=3)
    >>> b = generate_pathtracker(6, config=cfg, seed=3, indices=[4, 5])
    >>> bool((a.videos[4:] == b.videos).all())
    True
    """
    seed_t = seed_tuple(seed)
    labels = balanced_labels(n, seed_t)
    idx = check_indices(n, indices)
    iterator: Iterable = idx
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(idx, desc="pathtracker", unit="video")
    tracks = (
        np.stack([_draw_tracks(sample_rng(seed_t, i), config) for i in iterator])
        if idx.size
        else np.zeros((0, config.num_objects, config.frames, 2), np.int64)
    )
    videos, masks, markers = _render(tracks, labels[idx], config)
    return TrackingSet(
        videos, labels[idx].copy(), masks, config, seed_t, tracks.astype(np.int16), markers.astype(np.int16)
    )


PATHTRACKER = TrackingTask(
    title="PathTracker",
    format_name="recurrent-vision/pathtracker",
    writer="write_pathtracker_zarr",
    generate=generate_pathtracker,
    config_type=PathTrackerConfig,
)
"""The PathTracker generator as :mod:`shared.data.tracking_video` stores it."""


def write_pathtracker_zarr(
    path: str | Path,
    n: int,
    *,
    config: PathTrackerConfig,
    seed: int | Sequence[int] = 0,
    block_size: int = 64,
    overwrite: bool = False,
    progress: bool = True,
    num_workers: int = 1,
    wait: bool = False,
) -> Path:
    """Generate a PathTracker set into a zarr group, resumably (see
    :func:`shared.data.tracking_video.write_tracking_zarr`; the parameters are those of
    :func:`generate_pathtracker` plus the store's).
    """
    return write_tracking_zarr(
        path,
        n,
        task=PATHTRACKER,
        config=config,
        seed=seed,
        block_size=block_size,
        overwrite=overwrite,
        progress=progress,
        num_workers=num_workers,
        wait=wait,
    )


def load_pathtracker_zarr(path: str | Path, *, expected_config: PathTrackerConfig | None = None) -> TrackingSet:
    """Read a complete PathTracker group; a group made with another config than ``expected_config`` is refused."""
    return load_tracking_zarr(path, task=PATHTRACKER, expected_config=expected_config)
