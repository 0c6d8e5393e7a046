"""FeatureTracker: a seeded, vectorised port of the FeatureTracker video generator, stored as zarr.

PathTracker with objects that change along the way: every object is a small shape in a 5x5 cell whose pixels
follow half of the Game of Life rules, and whose hue turns around half of the colour circle. Models trained on
one half of the rules and colours are tested on the other half (out of distribution), so a model must track
the object, not its appearance (Muzellec, Linsley et al., ICLR 2025).

Port of ``S4b1n3/feature_tracker`` (``feature_tracker/generate_data.py``, ``utils_shapes.py``,
``utils_color.py``, ``utils_drawing.py``, ``utils_coordinates.py``; paths from
:mod:`shared.data.tracking_paths`). Follows the reference:

* 32x32 RGB frames, ``path_length`` = 32 frames, 10 distractors, speed (``skip_param``) 1, no ``extra_dist``
  (``feature_tracker/gen_stim.sh``); each object's
  top-left corner moves along a floored spline track inside the 27x27 window.
* Shapes (``utils_shapes``): a random 3x3 binary pattern in the centre of a 5x5 grid. Frame 0 shows the start
  state; frames 1 to T-2 apply ``update`` once per frame; the last frame applies ``end`` (one more update,
  then the outer ring of the 5x5 grid cleared). ``update`` uses the grid's 8-neighbour counts (the grid's
  outside counts as dead) and, per condition, only the *birth* rule (ID: a dead cell with exactly 3 live
  neighbours turns on) or only the *death* rule (OOD: a live cell with < 2 or > 3 live neighbours turns off);
  a grid left empty is reseeded with a new random 3x3 pattern. "noshapes" objects are a filled 3x3 square.
* Colours (``utils_color``): HSV with S = V = 1, RGB = ``int(255 * c)``; an object's hue in degrees at
  frame ``t`` is ``((t * speed * 360) % 360 + start) % 180`` (ID, [0, 180)) or that plus 180 (OOD,
  [180, 360)), with ``start`` a random integer in [0, 360) per object and ``speed`` 1/64 (half the circle in 32
  frames). "irregularcolors" draws the speed from U(0.02, 0.05); "nocolors" objects are green (0, 255, 0).
* "irregular" paths use ``delta_angle_max`` 180 instead of 90.
* Markers: 5x5 open squares (``blobs()``) whose corner is the target's first position (red) and, for
  positives, its last position (blue); negatives put the blue marker at the last position of the distractor
  whose end lies nearest the target's end. Drawing order: red marker, blue marker, distractors, target.
* The 9 condition names of the reference (:data:`FEATURETRACKER_CONDITIONS`).

Changed, on purpose:

* One random stream per video (``numpy.random.default_rng((*seed, i))``) and exactly balanced labels; the
  reference seeds ``np.random`` once per run and writes one label per run.
* "irregularcolors" draws its colour speed once per *video*; the reference draws it once per generation run.
* The reference also draws its nearest distractor a second time under the name "paired" (two shapes and
  colours on the same track); here it is drawn once.
* Empty 3x3 patterns are never drawn (start states and reseeds are uniform over the 511 non-empty patterns);
  the reference can start with an empty grid (an invisible object until the first update).
* No ambiguous samples: a distractor starting, or ending, within ``clearance`` (Chebyshev) pixels of the
  target's start or end is redrawn (the same rule for both labels).
* Masks: object ids per pixel (see :class:`~shared.data.tracking_video.TrackingSet`); the reference's mask
  video marks markers (red), all distractors (green) and the target (blue), which is what its synchrony loss
  groups (ids 1, >= 3 and 2 here; ``tests/test_tracking_reference.py``).
* "idshapes_nocolors" frame 0: the reference's ``generate_data.py`` draws that frame's *mask* over its image
  (``images_idshapes_nocolors[0] = ud.plot_frame_mask(images_idshapes_nocolors[0], ...)``), so there the
  target is blue and the goal marker red in frame 0 only, and its mask frame 0 is empty; here frame 0 is
  drawn like every other frame.

Examples
--------
>>> data = generate_featuretracker(2, config=FeatureTrackerConfig(frames=8, num_distractors=3), seed=0)
>>> data.videos.shape, data.masks.shape, data.tracks.shape
((2, 8, 32, 32, 3), (2, 8, 32, 32), (2, 4, 8, 2))
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
    "FEATURETRACKER_CONDITIONS",
    "FeatureTrackerConfig",
    "game_of_life_step",
    "generate_featuretracker",
    "hue_degrees",
    "hsv_to_rgb_uint8",
    "load_featuretracker_zarr",
    "parse_condition",
    "write_featuretracker_zarr",
]

FEATURETRACKER_CONDITIONS = (
    "noshapes_nocolors",
    "noshapes_idcolors",
    "idshapes_nocolors",
    "idshapes_idcolors",
    "idshapes_oodcolors",
    "oodshapes_idcolors",
    "oodshapes_oodcolors",
    "idshapes_irregularcolors",
    "idshapes_idcolors_irregular",
)
"""The condition folders the reference writes (``idshapes_idcolors`` is its training set)."""

CELL = 5  # objects and markers live in 5x5 cells
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def parse_condition(condition: str) -> tuple[str, str, bool]:
    """``(shapes, colours, irregular_paths)`` of a condition name, e.g. ``("id", "ood", False)``.

    Examples
    --------
    >>> parse_condition("idshapes_idcolors_irregular")
    ('id', 'id', True)
    """
    if condition not in FEATURETRACKER_CONDITIONS:
        raise ValueError(f"unknown FeatureTracker condition {condition!r}; valid: {list(FEATURETRACKER_CONDITIONS)}")
    parts = condition.split("_")
    return parts[0].removesuffix("shapes"), parts[1].removesuffix("colors"), len(parts) == 3


@dataclass(frozen=True)
class FeatureTrackerConfig:
    """FeatureTracker generation parameters (defaults: the reference's).

    Parameters
    ----------
    condition : one of :data:`FEATURETRACKER_CONDITIONS`.
    image_size : frame side in pixels (32).
    frames : frames per video = path length (32).
    num_distractors : distractor objects (10); the negative's goal is at the end of one of them.
    speed : stride along the spline between frames (1).
    hue_speed : turns of the colour circle per frame (1/64).
    irregular_hue_speed : (low, high) of the uniform colour speed of "irregularcolors" ((0.02, 0.05)).
    margin : ``image_size - margin`` is the side of the window the paths fill (5).
    delta_angle_max, irregular_delta_angle_max : spline curvature of regular / irregular paths (90, 180).
    wiggle_room, rigidity, curve_points : the spline's other parameters (0.95, 0.95, 66).
    clearance : Chebyshev distance below which a distractor's start or end counts as ambiguous.
    max_redraws : redraws allowed per video before giving up with an error.
    """

    condition: str = "idshapes_idcolors"
    image_size: int = 32
    frames: int = 32
    num_distractors: int = 10
    speed: int = 1
    hue_speed: float = 1 / 64
    irregular_hue_speed: tuple[float, float] = (0.02, 0.05)
    margin: int = 5
    delta_angle_max: float = 90.0
    irregular_delta_angle_max: float = 180.0
    wiggle_room: float = 0.95
    rigidity: float = 0.95
    curve_points: int = 66
    clearance: int = 3
    max_redraws: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "irregular_hue_speed", tuple(float(v) for v in self.irregular_hue_speed))
        parse_condition(self.condition)
        if self.frames < 2 or self.speed < 1 or self.num_distractors < 1:
            raise ValueError(
                f"need frames >= 2, speed >= 1 and num_distractors >= 1 (a negative's goal), got "
                f"{self.frames}, {self.speed}, {self.num_distractors}"
            )
        check_track_span(self.frames, self.speed, self.curve_points)
        low, high = self.irregular_hue_speed
        if not 0 <= low <= high or self.clearance < 0:
            raise ValueError(
                f"need 0 <= irregular_hue_speed low <= high and clearance >= 0, got "
                f"{self.irregular_hue_speed}, {self.clearance}"
            )
        if self.window + CELL > self.image_size:
            raise ValueError(
                f"paths in a {self.window}-pixel window with {CELL}x{CELL} objects overflow a "
                f"{self.image_size}-pixel frame; raise margin"
            )

    @property
    def window(self) -> int:
        return self.image_size - self.margin

    @property
    def num_objects(self) -> int:
        """Target + distractors."""
        return 1 + self.num_distractors

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["irregular_hue_speed"] = list(self.irregular_hue_speed)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureTrackerConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown FeatureTracker config key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**values)


# ------------------------------------------------------------------------------------------------ shapes


def game_of_life_step(grids: np.ndarray, rule: str) -> np.ndarray:
    """One half-Game-of-Life step (``Shape_ID.update`` / ``Shape_OOD.update`` without the reseed).

    Parameters
    ----------
    grids : bool ndarray of shape (..., h, w); cells outside the grid count as dead.
    rule : ``"id"`` (birth only: a dead cell with exactly 3 live neighbours turns on) or ``"ood"`` (death only:
        a live cell with fewer than 2 or more than 3 live neighbours turns off).

    Returns
    -------
    next : bool ndarray of the same shape.

    Examples
    --------
    >>> blinker = np.zeros((5, 5), bool); blinker[2, 1:4] = True
    >>> game_of_life_step(blinker, "id").astype(int)[1:4, 1:4].tolist()
    [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    >>> game_of_life_step(blinker, "ood").astype(int)[2].tolist()
    [0, 0, 1, 0, 0]
    """
    g = np.asarray(grids, bool)
    padded = np.pad(g.astype(np.int8), [(0, 0)] * (g.ndim - 2) + [(1, 1), (1, 1)])
    h, w = g.shape[-2:]
    neighbours = sum(
        padded[..., 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        for dr in (-1, 0, 1)
        for dc in (-1, 0, 1)
        if (dr, dc) != (0, 0)
    )
    if rule == "id":
        return g | (neighbours == 3)
    if rule == "ood":
        return g & (neighbours >= 2) & (neighbours <= 3)
    raise ValueError(f"rule must be 'id' or 'ood', got {rule!r}")


def _patterns(codes: np.ndarray) -> np.ndarray:
    """5x5 grids with the 3x3 centre holding the bit pattern ``codes`` (ints in [1, 512)): (..., 5, 5) bool."""
    bits = (codes[..., None] >> np.arange(9)) & 1
    grids = np.zeros((*codes.shape, CELL, CELL), bool)
    grids[..., 1:4, 1:4] = bits.reshape(*codes.shape, 3, 3).astype(bool)
    return grids


def _shape_frames(start: np.ndarray, reseeds: np.ndarray, rule: str, frames: int) -> np.ndarray:
    """The shapes of every frame: (m, K, T, 5, 5) bool from start codes (m, K) and reseed codes (m, K, T)."""
    grid = _patterns(start)
    out = np.empty((*start.shape, frames, CELL, CELL), bool)
    out[:, :, 0] = grid
    for t in range(1, frames):
        grid = game_of_life_step(grid, rule)
        empty = ~grid.any(axis=(-2, -1))
        grid[empty] = _patterns(reseeds[:, :, t][empty])
        if t == frames - 1:  # Shape.end(): the last frame keeps the 3x3 centre only
            grid[..., [0, -1], :] = False
            grid[..., :, [0, -1]] = False
            empty = ~grid.any(axis=(-2, -1))
            grid[empty] = _patterns(reseeds[:, :, 0][empty])  # (the reference may leave it empty; see above)
        out[:, :, t] = grid
    return out


# ------------------------------------------------------------------------------------------------ colours


def hue_degrees(frames: int, start: np.ndarray, speed: np.ndarray | float, half: str) -> np.ndarray:
    """Hue trajectories of ``utils_color.generate_trajectory``: (..., frames) degrees.

    Parameters
    ----------
    frames : number of frames.
    start : start angles in degrees, any shape (...).
    speed : turns of the circle per frame, broadcastable to ``start``.
    half : ``"id"`` (hues in [0, 180)) or ``"ood"`` (hues in [180, 360)).
    """
    t = np.arange(frames)
    angle = (t * np.asarray(speed, float)[..., None]) * 360 % 360 + np.asarray(start, float)[..., None]
    return angle % 180 + (180.0 if half == "ood" else 0.0)


def hsv_to_rgb_uint8(hue_deg: np.ndarray) -> np.ndarray:
    """``[int(255 * c) for c in colorsys.hsv_to_rgb(hue / 360, 1, 1)]``, vectorised: (..., 3) uint8.

    Examples
    --------
    >>> hsv_to_rgb_uint8(np.array([0.0, 120.0, 200.0])).tolist()
    [[255, 0, 0], [0, 255, 0], [0, 169, 255]]
    """
    h = np.asarray(hue_deg, float) / 360.0
    sector = (h * 6.0).astype(int)  # colorsys: i = int(h * 6), f = h * 6 - i, with s = v = 1: p = 0
    f = h * 6.0 - sector
    # the same float operations as colorsys (q = v(1 - sf), t = v(1 - s(1 - f))), so the truncation agrees
    one, zero, q, t = np.ones_like(f), np.zeros_like(f), 1.0 - f, 1.0 - (1.0 - f)
    table = np.stack(
        [
            np.stack(c, -1)
            for c in ((one, t, zero), (q, one, zero), (zero, one, t), (zero, q, one), (t, zero, one), (one, zero, q))
        ],
        axis=0,
    )
    rgb = np.take_along_axis(table, (sector % 6)[None, ..., None].repeat(3, -1), axis=0)[0]
    return (rgb * 255.0).astype(np.uint8)  # truncation, as int() in the reference


# ------------------------------------------------------------------------------------------------ samples


def _draw_sample(rng: np.random.Generator, cfg: FeatureTrackerConfig) -> dict[str, np.ndarray]:
    """Random parts of one video: tracks (K, T, 2), shape codes, hue starts and speed."""
    _, colours, irregular_paths = parse_condition(cfg.condition)
    k = cfg.num_objects

    def draw(count: int) -> np.ndarray:
        return spline_tracks(
            rng,
            count,
            frames=cfg.frames,
            speed=cfg.speed,
            window=cfg.window,
            delta_angle_max=cfg.irregular_delta_angle_max if irregular_paths else cfg.delta_angle_max,
            wiggle_room=cfg.wiggle_room,
            rigidity=cfg.rigidity,
            curve_points=cfg.curve_points,
        )

    tracks = draw(k)
    for _ in range(cfg.max_redraws):
        bad = (chebyshev(tracks[1:, 0], tracks[0, 0]) < cfg.clearance) | (
            chebyshev(tracks[1:, -1], tracks[0, -1]) < cfg.clearance
        )
        if not bad.any():
            break
        tracks[1:][bad] = draw(int(bad.sum()))
    else:
        raise RuntimeError(
            f"no unambiguous FeatureTracker video in {cfg.max_redraws} redraws: too many "
            f"distractors ({cfg.num_distractors}) for clearance {cfg.clearance}"
        )
    low, high = cfg.irregular_hue_speed
    return {
        "tracks": tracks,
        "start": rng.integers(1, 512, k),
        "reseeds": rng.integers(1, 512, (k, cfg.frames)),
        "hue_start": rng.integers(0, 360, k),
        "hue_speed": np.float64(rng.uniform(low, high) if colours == "irregular" else cfg.hue_speed),
    }


def _render(
    parts: dict[str, np.ndarray], labels: np.ndarray, cfg: FeatureTrackerConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a block of videos from stacked parts (leading axis m). Returns videos, masks, markers (m, 2, 2)."""
    shapes, colours, _ = parse_condition(cfg.condition)
    tracks = parts["tracks"]
    m, k, frames = tracks.shape[:3]
    ends = tracks[:, 1:, -1]
    nearest = np.argmin(np.hypot(*np.moveaxis(ends - tracks[:, :1, -1], -1, 0)), axis=1)  # first minimum
    start = tracks[:, 0, 0]
    goal = np.where(labels[:, None] == 1, tracks[:, 0, -1], tracks[np.arange(m), 1 + nearest, -1])
    if shapes == "no":
        footprints = np.broadcast_to(_patterns(np.full((m, k, 1), 511)), (m, k, frames, CELL, CELL))
    else:
        footprints = _shape_frames(parts["start"], parts["reseeds"], shapes, frames)
    if colours == "no":
        rgb = np.broadcast_to(np.asarray(GREEN, np.uint8), (m, k, frames, 3))
    else:
        half = "ood" if colours == "ood" else "id"
        rgb = hsv_to_rgb_uint8(hue_degrees(frames, parts["hue_start"], parts["hue_speed"][:, None], half))
    layers = new_layers(m, frames, cfg.image_size, n_layers=3 + k)
    marker = outline(CELL)
    paint(layers, start[:, None], marker, 1)
    paint(layers, goal[:, None], marker, 2)
    draw_order = [*range(1, k), 0]  # distractors, then the target on top
    for layer, obj in enumerate(draw_order, start=3):
        paint(layers, tracks[:, obj], footprints[:, obj], layer)
    # palette (m, T, L, 3): background, red, blue, then the objects in drawing order
    palette = np.zeros((m, frames, 3 + k, 3), np.uint8)
    palette[:, :, 1], palette[:, :, 2] = RED, BLUE
    palette[:, :, 3:] = np.moveaxis(rgb[:, draw_order], 1, 2)
    ids = np.array([0, MARKER_ID, MARKER_ID, *[TARGET_ID + obj for obj in draw_order]])
    videos, masks = composite(layers, palette, ids)
    return videos, masks, np.stack([start, goal], axis=1)


def generate_featuretracker(
    n: int,
    *,
    config: FeatureTrackerConfig,
    seed: int | Sequence[int] = 0,
    indices: Sequence[int] | None = None,
    progress: bool = False,
) -> TrackingSet:
    """Generate FeatureTracker videos of one condition, balanced and deterministic.

    Parameters
    ----------
    n : size of the whole set (fixes the balanced label permutation).
    config : generation parameters (the condition among them).
    seed : int or tuple of ints; video ``i`` uses ``numpy.random.default_rng((*seed, i))``.
    indices : which videos of the set to generate (default all ``n``).
    progress : show a tqdm progress bar (over the random parts; drawing is vectorised).

    Returns
    -------
    data : :class:`~shared.data.tracking_video.TrackingSet`: videos (m, T, H, W, 3) uint8, masks (m, T, H, W)
        uint8 (0 background, 1 markers, 2 target, 3 + k distractor k), tracks (m, K, T, 2) int16 (object 0 the
        target), markers (m, 2, 2) int16.

    Examples
    --------
    >>> cfg = FeatureTrackerConfig(condition="oodshapes_oodcolors", frames=8, num_distractors=2)
    >>> a = generate_featuretracker(4, config=cfg, seed=1)
    >>> b = generate_featuretracker(4, config=cfg, seed=1, indices=[3])
    >>> bool((a.videos[3] == b.videos[0]).all())
    True
    """
    seed_t = seed_tuple(seed)
    labels = balanced_labels(n, seed_t)
    idx = check_indices(n, indices)
    iterator: Iterable = idx
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(idx, desc="featuretracker", unit="video")
    samples = [_draw_sample(sample_rng(seed_t, i), config) for i in iterator]
    if not samples:
        empty = np.zeros((0, config.frames, config.image_size, config.image_size), np.uint8)
        return TrackingSet(
            empty[..., None].repeat(3, -1),
            labels[:0].copy(),
            empty,
            config,
            seed_t,
            np.zeros((0, config.num_objects, config.frames, 2), np.int16),
            np.zeros((0, 2, 2), np.int16),
        )
    parts = {key: np.stack([s[key] for s in samples]) for key in samples[0]}
    videos, masks, markers = _render(parts, labels[idx], config)
    return TrackingSet(
        videos, labels[idx].copy(), masks, config, seed_t, parts["tracks"].astype(np.int16), markers.astype(np.int16)
    )


FEATURETRACKER = TrackingTask(
    title="FeatureTracker",
    format_name="recurrent-vision/featuretracker",
    writer="write_featuretracker_zarr",
    generate=generate_featuretracker,
    config_type=FeatureTrackerConfig,
)
"""The FeatureTracker generator as :mod:`shared.data.tracking_video` stores it."""


def write_featuretracker_zarr(
    path: str | Path,
    n: int,
    *,
    config: FeatureTrackerConfig,
    seed: int | Sequence[int] = 0,
    block_size: int = 64,
    overwrite: bool = False,
    progress: bool = True,
    num_workers: int = 1,
    wait: bool = False,
) -> Path:
    """Generate a FeatureTracker set into a zarr group, resumably (see
    :func:`shared.data.tracking_video.write_tracking_zarr`)."""
    return write_tracking_zarr(
        path,
        n,
        task=FEATURETRACKER,
        config=config,
        seed=seed,
        block_size=block_size,
        overwrite=overwrite,
        progress=progress,
        num_workers=num_workers,
        wait=wait,
    )


def load_featuretracker_zarr(path: str | Path, *, expected_config: FeatureTrackerConfig | None = None) -> TrackingSet:
    """Read a complete FeatureTracker group; a group made with another config than ``expected_config`` is refused."""
    return load_tracking_zarr(path, task=FEATURETRACKER, expected_config=expected_config)
