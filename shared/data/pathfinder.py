"""Pathfinder: a deterministic, pure-numpy generator of the contour-integration stimulus, stored as zarr.

Each image shows two long "snakes" (chains of short line segments, *paddles*, separated by gaps), short
distractor snakes and two round markers. The label is 1 when both markers sit on the ends of the same
snake and 0 when they sit on different snakes. Solving it needs the model to follow a contour across the
gaps, which is what horizontal (recurrent) connections are good at (Linsley et al., NeurIPS 2018).

This is a port of ``snakes2.py`` from drewlinsley/pathfinder (= c-rbp/pathfinder_data), without PIL or
OpenCV. What follows the original and what is simplified:

Follows the original (``snakes2_wrapper.py`` settings, in units of the published 300x300 canvas):

* paddle length 5, thickness 2, margin 3; padding 22; seed distance 27; marker radius 5; contrast 1;
  continuity 1.8; contour length 6, 9 or 14 paddles; distractors: ``30 // (contour // 3)`` snakes of
  ``contour // 3`` paddles (about 30 distractor paddles at every difficulty); no single-paddle clutter.
* The two target snakes start from seeds ``seed_distance`` apart and grow one paddle at a time, in turn.
  The next paddle's end is drawn from a circle of radius ``length + margin`` around a pivot that lies
  ``margin`` beyond the previous paddle, with weight ``cos(min(continuity * |dtheta|, pi/2))**2`` times
  "not blocked" (the occupancy mask dilated by ``margin``), so snakes avoid each other and the border.
* Self-crossing rejection: a candidate paddle whose margin band overlaps any committed paddle's margin band
  is rejected (the newest paddle of the same snake is committed one step late, as in the original, so
  consecutive paddles may touch); ``max_paddle_retrial + 1`` candidates are tried before the snake fails.
  A failed target pair is regrown from scratch; a failed distractor is retried ``max_distractor_retrial``
  times and then skipped (``allow_incomplete=True`` in the original).
* Markers sit on the origin tip of one target snake and on the terminal tip of the same snake (label 1)
  or of the other snake (label 0). Integer-degree seed orientations, 1-pixel arc sampling of candidates.

Simplified or changed (on purpose):

* Rendering is analytic anti-aliasing (pixel intensity ``clip(thickness/2 + 0.5 - distance, 0, 1)`` to
  the paddle's centre segment, round caps) at the output resolution, instead of PIL lines drawn at
  ``antialias_scale`` and Lanczos-resized; markers likewise. Occupancy masks are the same distance tests.
* Any image size: geometry is multiplied by ``geometry_scale`` pixels per published unit (default
  ``image_size / 300``, i.e. the published stimulus resized). A larger scale shows a smaller field of view
  with visible paddles; distractors are then scaled with the usable area so the clutter density matches.
* Seeds are placed by rejection sampling over free pixels (same uniform distribution over valid tails as
  the original's dilation search). The second target seed is also checked against the first, and paddles
  are checked against the other snake's newest paddle too (the original could let the two targets cross).
  The first seed keeps ``2 * seed_distance`` from the border, capped at a quarter of the image for small
  fields of view.
* Labels are exactly balanced (``n // 2`` positives per generated set, seeded permutation) instead of
  Bernoulli(0.5), and every image's label is verified on its path mask (markers connected or not) before
  it is accepted.
* Each image has its own random stream ``numpy.random.default_rng((*seed, index))``, so any subset of a
  dataset can be (re)generated independently and identically (resumable zarr writes).

Besides the image, every sample comes with its *path mask*: the continuous centre line (paddles and the
gaps between them, at paddle thickness but at least ~2 px wide) of the target snake(s) that carry a
marker, plus the marker discs. For a positive that is the one snake joining the markers; for a negative,
the two snakes each holding one marker. This is the "human importance map" of the alignment work.

Examples
--------
>>> from shared.data.pathfinder import PathfinderConfig, generate_pathfinder
>>> data = generate_pathfinder(4, config=PathfinderConfig(image_size=(48, 48), contour_length=6,
...                                                       geometry_scale=0.4), seed=0)
>>> data.images.shape, data.images.dtype, int(data.labels.sum())
((4, 1, 48, 48), dtype('float32'), 2)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from shared.data.sampling import balanced_labels, check_indices, sample_rng, seed_tuple
from shared.data.zarr_store import ArraySpec, StoreKind, load_sample_zarr, write_sample_zarr

FORMAT_NAME = "recurrent-vision/pathfinder"
FORMAT_VERSION = 1
PUBLISHED_CANVAS = 300  # the published stimuli are 300x300 pixels
_REFERENCE_USABLE_SIDE = PUBLISHED_CANVAS - 2 * 22  # distractor counts refer to this usable area


@dataclass(frozen=True)
class PathfinderConfig:
    """Generation parameters. Lengths are in units of the published 300x300 canvas.

    Parameters
    ----------
    image_size : (rows, columns) of the output image (an int means a square).
    contour_length : paddles per target snake; the published difficulties are 6, 9 and 14 (C-RBP also
        used 20 and 25).
    geometry_scale : pixels per published unit; ``None`` means ``min(image_size) / 300`` (the published
        stimulus resized). Larger values zoom in: thicker paddles, smaller field of view.
    continuity : how strongly the next paddle follows the previous orientation (1.8 published).
    paddle_length, paddle_thickness, paddle_margin : paddle geometry (5, 2, 3 published).
    padding : empty border kept free of paddles (22).
    seed_distance : distance between the two target snakes' first paddles (27).
    marker_radius : radius of the two markers (5).
    contrast : paddle and marker intensity in (0, 1].
    distractor_paddles : distractor paddles per published usable area (~30 published); split into
        snakes of ``distractor_length`` paddles.
    distractor_length : paddles per distractor snake; ``None`` means ``max(1, contour_length // 3)``.
    max_paddle_retrial : extra candidates tried per paddle before a snake fails (2).
    max_distractor_retrial : retries per distractor snake before it is skipped (4).
    max_image_retrial : attempts to build one image before giving up with an error (the geometry does not
        fit the image).
    """

    image_size: tuple[int, int] = (150, 150)
    contour_length: int = 14
    geometry_scale: float | None = None
    continuity: float = 1.8
    paddle_length: float = 5.0
    paddle_thickness: float = 2.0
    paddle_margin: float = 3.0
    padding: float = 22.0
    seed_distance: float = 27.0
    marker_radius: float = 5.0
    contrast: float = 1.0
    distractor_paddles: int = 30
    distractor_length: int | None = None
    max_paddle_retrial: int = 2
    max_distractor_retrial: int = 4
    max_image_retrial: int = 500

    def __post_init__(self) -> None:
        size = self.image_size
        size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
        object.__setattr__(self, "image_size", size)
        if len(size) != 2 or min(size) < 16:
            raise ValueError(f"image_size must be (rows, columns) with both >= 16, got {self.image_size}")
        if self.contour_length < 2:
            raise ValueError(f"contour_length must be >= 2 paddles, got {self.contour_length}")
        if self.geometry_scale is not None and not self.geometry_scale > 0:
            raise ValueError(f"geometry_scale must be > 0 or None, got {self.geometry_scale}")
        for name in (
            "continuity",
            "paddle_length",
            "paddle_thickness",
            "paddle_margin",
            "seed_distance",
            "marker_radius",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.padding < 0 or self.distractor_paddles < 0:
            raise ValueError("padding and distractor_paddles must be >= 0")
        if not 0 < self.contrast <= 1:
            raise ValueError(f"contrast must be in (0, 1], got {self.contrast}")
        if self.distractor_length is not None and self.distractor_length < 1:
            raise ValueError(f"distractor_length must be >= 1 or None, got {self.distractor_length}")
        if min(self.max_paddle_retrial, self.max_distractor_retrial) < 0 or self.max_image_retrial < 1:
            raise ValueError("retrial counts must be >= 0 (max_image_retrial >= 1)")

    @property
    def scale(self) -> float:
        """Pixels per published unit."""
        if self.geometry_scale is not None:
            return float(self.geometry_scale)
        return min(self.image_size) / PUBLISHED_CANVAS

    @property
    def distractor_snake_length(self) -> int:
        return self.distractor_length or max(1, self.contour_length // 3)

    @property
    def num_distractor_snakes(self) -> int:
        """Distractor snakes, scaled with the usable area of the field of view."""
        s = self.scale
        rows, cols = (max(n / s - 2 * self.padding, 0.0) for n in self.image_size)
        area_factor = rows * cols / _REFERENCE_USABLE_SIDE**2
        return int(round(self.distractor_paddles * area_factor / self.distractor_snake_length))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON/YAML/zarr-attrs safe)."""
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PathfinderConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown Pathfinder config key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**values)


@dataclass
class PathfinderSet:
    """Generated (or loaded) Pathfinder samples.

    Attributes
    ----------
    images : ndarray of shape (n, 1, rows, columns), float32 in [0, 1].
    labels : ndarray of shape (n,), int64; 1 when the markers are joined by one snake.
    path_masks : ndarray of shape (n, 1, rows, columns), uint8 in {0, 1}; the target path(s) carrying
        the markers, plus the marker discs.
    markers : ndarray of shape (n, 2, 2), float32; (origin, terminal) marker centres as (row, column).
    num_distractor_paddles : ndarray of shape (n,), int32; distractor paddles actually placed.
    config : the :class:`PathfinderConfig` used.
    seed : the seed tuple used.
    """

    images: np.ndarray
    labels: np.ndarray
    path_masks: np.ndarray
    markers: np.ndarray
    num_distractor_paddles: np.ndarray
    config: PathfinderConfig
    seed: tuple[int, ...] = field(default=(0,))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# ----------------------------------------------------------------------------------------------- geometry


def _unit(theta: float) -> np.ndarray:
    """Unit vector (row, column) of orientation ``theta`` (radians; 0 points along +column)."""
    return np.array([math.sin(theta), math.cos(theta)])


def _segment_distance(a: np.ndarray, b: np.ndarray, reach: float, shape: tuple[int, int]):
    """Distances from pixel centres to the segment ``a``-``b`` in the bounding box grown by ``reach``.

    Returns ``(slices, distance)`` or ``None`` when the box lies outside the image.
    """
    r0 = max(int(math.floor(min(a[0], b[0]) - reach)), 0)
    r1 = min(int(math.ceil(max(a[0], b[0]) + reach)) + 1, shape[0])
    c0 = max(int(math.floor(min(a[1], b[1]) - reach)), 0)
    c1 = min(int(math.ceil(max(a[1], b[1]) + reach)) + 1, shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    slices = (slice(r0, r1), slice(c0, c1))
    return slices, _distance_in_box(a, b, slices)


def _distance_in_box(a: np.ndarray, b: np.ndarray, slices: tuple[slice, slice]) -> np.ndarray:
    """Distances from the pixel centres of a box (row and column slices) to the segment ``a``-``b``."""
    rr = np.arange(slices[0].start, slices[0].stop, dtype=np.float64)[:, None] - a[0]
    cc = np.arange(slices[1].start, slices[1].stop, dtype=np.float64)[None, :] - a[1]
    ab = b - a
    length2 = float(ab @ ab)
    if length2 > 0:
        t = np.minimum(np.maximum((rr * ab[0] + cc * ab[1]) * (1.0 / length2), 0.0), 1.0)
        return np.hypot(rr - t * ab[0], cc - t * ab[1])
    return np.hypot(rr, cc)


@dataclass
class _Paddle:
    start: np.ndarray  # (row, column)
    end: np.ndarray
    slices: tuple[slice, slice]
    distance: np.ndarray  # distance of the patch's pixels to the centre segment


@dataclass
class _Snake:
    paddles: list[_Paddle]
    pivot: np.ndarray
    orientation: float


class _Canvas:
    """Occupancy state of one image being built, in pixel units."""

    def __init__(self, cfg: PathfinderConfig, rng: np.random.Generator) -> None:
        s = cfg.scale
        self.cfg, self.rng, self.shape = cfg, rng, cfg.image_size
        self.length, self.margin = cfg.paddle_length * s, cfg.paddle_margin * s
        self.radius = cfg.paddle_thickness * s / 2
        self.band = self.radius + self.margin  # the occupancy ("mask") band of a paddle
        self.reach = self.radius + 2 * self.margin + 1
        pad = int(round(cfg.padding * s))
        self.occupied = np.zeros(self.shape, bool)  # committed paddles dilated by margin, plus the border
        self.blocked = np.zeros(self.shape, bool)  # occupied, dilated by a further margin
        if pad > 0:
            for m in (self.occupied, self.blocked):
                m[:pad], m[-pad:], m[:, :pad], m[:, -pad:] = True, True, True, True
        # candidate pivots sit on a circle of radius length + margin, sampled at ~1 pixel of arc
        circle = self.length + self.margin
        self.angles = np.arange(0.0, 2 * np.pi, 1.0 / max(circle, 1.0))
        self.circle_offsets = circle * np.stack([np.sin(self.angles), np.cos(self.angles)], axis=1)
        self.circle_orientations = np.arctan2(self.circle_offsets[:, 0], self.circle_offsets[:, 1])

    def inside(self, p: np.ndarray) -> bool:
        return 0 <= p[0] < self.shape[0] and 0 <= p[1] < self.shape[1]

    def make_paddle(self, start: np.ndarray, end: np.ndarray) -> _Paddle | None:
        found = _segment_distance(start, end, self.reach, self.shape)
        return None if found is None else _Paddle(start, end, *found)

    def collides(self, paddle: _Paddle, pending: Iterable[_Paddle] = ()) -> bool:
        """Does the paddle's margin band overlap committed paddles or the border (or the ``pending`` ones)?"""
        band = paddle.distance <= self.band
        if (self.occupied[paddle.slices] & band).any():
            return True
        # paddles not yet committed (the other target snake's newest) count too: no crossing between targets
        rows, cols = paddle.slices
        for o in pending:
            reach = 2 * self.band
            if (
                min(o.start[0], o.end[0]) - reach >= rows.stop
                or max(o.start[0], o.end[0]) + reach < rows.start
                or min(o.start[1], o.end[1]) - reach >= cols.stop
                or max(o.start[1], o.end[1]) + reach < cols.start
            ):
                continue  # too far apart for the bands to meet
            if (band & (_distance_in_box(o.start, o.end, paddle.slices) <= self.band)).any():
                return True
        return False

    def commit(self, paddle: _Paddle) -> None:
        self.occupied[paddle.slices] |= paddle.distance <= self.band
        self.blocked[paddle.slices] |= paddle.distance <= self.band + self.margin

    def seed_paddle(self, tail: np.ndarray, theta: float, pending: Sequence[_Paddle] = ()) -> _Snake | None:
        """Place a first paddle from ``tail`` along ``theta`` if it fits (the original's ``seed_snake``)."""
        head = tail + self.length * _unit(theta)
        pivot = tail - self.margin * _unit(theta)  # the original's pivot: ``margin`` behind the tail
        if not (self.inside(head) and self.inside(pivot) and self.inside(tail)):
            return None
        paddle = self.make_paddle(tail, head)
        if paddle is None or self.collides(paddle, pending):
            return None
        return _Snake([paddle], pivot, theta)

    def random_seed(self, rng: np.random.Generator, tries: int, border: float = 0.0) -> _Snake | None:
        """A distractor (or first target) seed: uniform over free pixels, orientation in whole degrees."""
        free = ~self.occupied
        if border > 0:
            b = int(round(border))
            inner = np.zeros(self.shape, bool)
            inner[b : self.shape[0] - b, b : self.shape[1] - b] = True
            free &= inner
        candidates = np.flatnonzero(free)
        # the original stops adding clutter once fewer than 1% of the pixels are free
        if candidates.size < 0.01 * free.size:
            return None
        for _ in range(tries + 1):
            theta = rng.integers(-180, 180) * np.pi / 180
            tail = np.array(np.unravel_index(candidates[rng.integers(candidates.size)], self.shape), float)
            snake = self.seed_paddle(tail, theta)
            if snake is not None:
                return snake
        return None

    def extend(self, snake: _Snake, rng: np.random.Generator, others: Sequence[_Paddle] = ()) -> bool:
        """Add one paddle (the original's ``extend_snake`` + ``get_coords_cmf``); commit the previous one."""
        cfg = self.cfg
        new_pivot = snake.pivot + (self.length + 2 * self.margin) * _unit(snake.orientation)
        heads = new_pivot + self.circle_offsets
        idx = np.rint(heads).astype(int)
        ok = (idx[:, 0] >= 0) & (idx[:, 0] < self.shape[0]) & (idx[:, 1] >= 0) & (idx[:, 1] < self.shape[1])
        if not ok.any():
            return False
        orientation, heads, idx = self.circle_orientations[ok], heads[ok], idx[ok]
        delta = np.abs(orientation - snake.orientation)
        delta = np.minimum(np.minimum(delta, 2 * np.pi - delta) * cfg.continuity, np.pi / 2)
        weights = np.cos(delta) ** 2 * ~self.blocked[idx[:, 0], idx[:, 1]]
        total = weights.sum()
        if total < 1e-4:
            return False
        cmf = np.cumsum(weights / total)
        for _ in range(cfg.max_paddle_retrial + 1):
            k = min(int(np.searchsorted(cmf, rng.random(), side="right")), cmf.size - 1)
            theta = float(orientation[k])
            start = new_pivot + self.margin * _unit(theta)
            paddle = self.make_paddle(start, heads[k])
            if paddle is not None and not self.collides(paddle, others):
                self.commit(snake.paddles[-1])  # the newest paddle is committed one step late
                snake.paddles.append(paddle)
                snake.pivot, snake.orientation = new_pivot, theta
                return True
        return False

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return self.occupied.copy(), self.blocked.copy()

    def restore(self, state: tuple[np.ndarray, np.ndarray]) -> None:
        self.occupied, self.blocked = state[0].copy(), state[1].copy()


def _grow_target_pair(canvas: _Canvas, rng: np.random.Generator) -> list[_Snake] | None:
    """Two target snakes of ``contour_length`` paddles from seeds ``seed_distance`` apart."""
    cfg, s = canvas.cfg, canvas.cfg.scale
    border = min(2 * cfg.seed_distance * s, min(canvas.shape) / 4)
    first = canvas.random_seed(rng, cfg.max_paddle_retrial, border=border)
    if first is None:
        return None
    second = None
    for _ in range(cfg.max_paddle_retrial + 1):
        theta = rng.integers(-180, 180) * np.pi / 180
        where = rng.integers(0, 360) * np.pi / 180
        tail = np.rint(first.paddles[0].start + cfg.seed_distance * s * _unit(where))
        second = canvas.seed_paddle(tail, theta, pending=[first.paddles[0]])
        if second is not None:
            break
    if second is None:
        return None
    pair = [first, second]
    for _ in range(cfg.contour_length - 1):
        for i, snake in enumerate(pair):
            if not canvas.extend(snake, rng, others=[pair[1 - i].paddles[-1]]):
                return None
    for snake in pair:
        canvas.commit(snake.paddles[-1])
    return pair


def _grow_distractor(canvas: _Canvas, rng: np.random.Generator) -> _Snake | None:
    cfg = canvas.cfg
    for _ in range(cfg.max_distractor_retrial + 1):
        state = canvas.snapshot()
        snake = canvas.random_seed(rng, cfg.max_paddle_retrial)
        if snake is None:
            return None  # the canvas is full
        if all(canvas.extend(snake, rng) for _ in range(cfg.distractor_snake_length - 1)):
            canvas.commit(snake.paddles[-1])
            return snake
        canvas.restore(state)
    return None


def _draw_segments(
    out: np.ndarray, segments: Iterable[tuple[np.ndarray, np.ndarray]], radius: float, value: float = 1.0
) -> None:
    """Anti-aliased capsules: ``out = max(out, value * clip(radius + 0.5 - distance, 0, 1))`` in place."""
    for a, b in segments:
        found = _segment_distance(a, b, radius + 1, out.shape)
        if found is not None:
            sl, d = found
            np.maximum(out[sl], value * np.clip(radius + 0.5 - d, 0.0, 1.0), out=out[sl])


def _snake_path(snake: _Snake) -> list[tuple[np.ndarray, np.ndarray]]:
    """The continuous centre line: every paddle and every gap between consecutive paddles."""
    segments = [(p.start, p.end) for p in snake.paddles]
    segments += [(p.end, q.start) for p, q in zip(snake.paddles[:-1], snake.paddles[1:])]
    return segments


def markers_connected(path_mask: np.ndarray, markers: np.ndarray) -> bool:
    """Whether the two marker centres lie in one 8-connected component of a path mask.

    Parameters
    ----------
    path_mask : ndarray of shape (rows, columns) (or (1, rows, columns)), nonzero on the path.
    markers : ndarray of shape (2, 2): the two marker centres as (row, column).

    Returns
    -------
    connected : bool

    Examples
    --------
    >>> mask = np.zeros((5, 5), np.uint8); mask[2, :] = 1
    >>> markers_connected(mask, np.array([[2, 0], [2, 4]]))
    True
    """
    mask = np.asarray(path_mask).reshape(path_mask.shape[-2:]) > 0
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), int))
    (r0, c0), (r1, c1) = np.rint(np.asarray(markers, float)).astype(int)
    a, b = labels[r0, c0], labels[r1, c1]
    return bool(a and a == b)


def render_pathfinder_image(label: int, rng: np.random.Generator, config: PathfinderConfig) -> dict[str, Any]:
    """One Pathfinder sample with the given label.

    Parameters
    ----------
    label : 1 (markers on the same snake) or 0 (on different snakes).
    rng : the image's random stream (consumed).
    config : generation parameters.

    Returns
    -------
    sample : dict with ``image`` (rows, columns) float32 in [0, 1], ``path_mask`` (rows, columns) uint8,
        ``markers`` (2, 2) float32 (row, column) of the origin and terminal markers,
        ``num_distractor_paddles`` int and ``attempts`` int.

    Raises
    ------
    RuntimeError
        When no valid image is found in ``max_image_retrial`` attempts (the geometry does not fit).
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1, got {label!r}")
    cfg = config
    s = cfg.scale
    for attempt in range(1, cfg.max_image_retrial + 1):
        canvas = _Canvas(cfg, rng)
        pair = _grow_target_pair(canvas, rng)
        if pair is None:
            continue
        distractors = []
        for _ in range(cfg.num_distractor_snakes):
            snake = _grow_distractor(canvas, rng)
            if snake is not None:
                distractors.append(snake)
        origin = int(rng.integers(0, 2))
        terminal = origin if label == 1 else 1 - origin
        markers = np.stack([pair[origin].paddles[0].start, pair[terminal].paddles[-1].end])
        image = np.zeros(canvas.shape, np.float32)
        paddles = [(p.start, p.end) for snake in pair + distractors for p in snake.paddles]
        _draw_segments(image, paddles, canvas.radius, cfg.contrast)
        marker_radius = cfg.marker_radius * s
        _draw_segments(image, [(m, m) for m in markers], marker_radius, cfg.contrast)
        path = np.zeros(canvas.shape, np.float32)
        path_radius = max(canvas.radius, 0.75)  # at least ~2 px wide so the line stays 8-connected
        for snake in {origin, terminal}:
            _draw_segments(path, _snake_path(pair[snake]), path_radius)
        _draw_segments(path, [(m, m) for m in markers], marker_radius)
        path_mask = (path >= 0.5).astype(np.uint8)
        if markers_connected(path_mask, markers) != bool(label):
            continue  # rasterisation merged or broke a path at this scale: resample rather than mislabel
        return {
            "image": image,
            "path_mask": path_mask,
            "markers": markers.astype(np.float32),
            "num_distractor_paddles": sum(len(d.paddles) for d in distractors),
            "attempts": attempt,
        }
    raise RuntimeError(
        f"could not build a Pathfinder image in {cfg.max_image_retrial} attempts: contour_length "
        f"{cfg.contour_length} at geometry_scale {s:.3g} does not fit a {cfg.image_size} image; lower "
        "contour_length or geometry_scale, or enlarge image_size"
    )


def generate_pathfinder(
    n: int,
    *,
    config: PathfinderConfig,
    seed: int | Sequence[int] = 0,
    indices: Sequence[int] | None = None,
    progress: bool = False,
) -> PathfinderSet:
    """Generate Pathfinder images, balanced and deterministic.

    Parameters
    ----------
    n : size of the whole set (fixes the balanced label permutation).
    config : generation parameters.
    seed : int or tuple of ints; image ``i`` uses ``numpy.random.default_rng((*seed, i))``.
    indices : which images of the set to generate (default all ``n``); the same index always gives the
        same image, whatever else is generated.
    progress : show a tqdm progress bar.

    Returns
    -------
    data : :class:`PathfinderSet` with images (m, 1, rows, columns), m = ``len(indices)``.

    Examples
    --------
    >>> cfg = PathfinderConfig(image_size=48, contour_length=6, geometry_scale=0.3)
    >>> a = generate_pathfinder(6, config=cfg, seed=3)
    >>> b = generate_pathfinder(6, config=cfg, seed=3, indices=[4, 5])
    >>> bool((a.images[4:] == b.images).all())
    True
    """
    seed_t = seed_tuple(seed)
    all_labels = balanced_labels(n, seed_t)
    idx = check_indices(n, indices)
    rows, cols = config.image_size
    images = np.zeros((idx.size, 1, rows, cols), np.float32)
    masks = np.zeros((idx.size, 1, rows, cols), np.uint8)
    markers = np.zeros((idx.size, 2, 2), np.float32)
    distractors = np.zeros(idx.size, np.int32)
    iterator: Iterable = enumerate(idx)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=idx.size, desc="pathfinder", unit="img")
    for j, i in iterator:
        sample = render_pathfinder_image(int(all_labels[i]), sample_rng(seed_t, i), config)
        images[j, 0], masks[j, 0] = sample["image"], sample["path_mask"]
        markers[j], distractors[j] = sample["markers"], sample["num_distractor_paddles"]
    return PathfinderSet(images, all_labels[idx].copy(), masks, markers, distractors, config, seed_t)


# ------------------------------------------------------------------------------------------------- zarr

JOB_COMMAND = "pathfinder generate"


def _store_kind(config: PathfinderConfig) -> StoreKind:
    rows, cols = config.image_size
    return StoreKind(
        format_name=FORMAT_NAME,
        title="Pathfinder",
        writer="write_pathfinder_zarr",
        version=FORMAT_VERSION,
        job_command=JOB_COMMAND,
        arrays=(
            ArraySpec("images", (1, rows, cols), "float32", 0.0),  # holds the job bookkeeping
            ArraySpec("path_masks", (1, rows, cols), "uint8", 0),
            ArraySpec("labels", (), "int64", -1, per_sample=False),
            ArraySpec("markers", (2, 2), "float32", 0.0, per_sample=False),
            ArraySpec("num_distractor_paddles", (), "int32", 0, per_sample=False),
        ),
    )


def _pathfinder_block(n: int, config: PathfinderConfig, seed: tuple[int, ...], indices: range) -> dict:
    data = generate_pathfinder(n, config=config, seed=seed, indices=indices)
    return {
        "images": data.images,
        "path_masks": data.path_masks,
        "labels": data.labels,
        "markers": data.markers,
        "num_distractor_paddles": data.num_distractor_paddles,
    }


def write_pathfinder_zarr(
    path: str | Path,
    n: int,
    *,
    config: PathfinderConfig,
    seed: int | Sequence[int] = 0,
    block_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
    num_workers: int = 1,
    wait: bool = False,
) -> Path:
    """Generate a Pathfinder set into a zarr group, resumably (:func:`shared.data.zarr_store.write_sample_zarr`).

    The group holds ``images`` (n, 1, rows, columns) float32, ``path_masks`` (n, 1, rows, columns) uint8
    (both chunked per sample), ``labels`` (n,) int64, ``markers`` (n, 2, 2) float32 and
    ``num_distractor_paddles`` (n,) int32, and ``done`` (n_blocks,) bool (what
    :func:`load_pathfinder_zarr` checks). The generation parameters are in the group's attrs; the job
    bookkeeping (manifest, lock, done-markers) is in ``images/.job/``.

    Parameters
    ----------
    path : the zarr group (a directory, e.g. ``data/pathfinder/train.zarr``).
    n : number of images.
    config, seed : as in :func:`generate_pathfinder`.
    block_size : images per resumable block.
    overwrite : delete an existing Pathfinder group generated with a different configuration (or not by
        this writer) and regenerate it; without it such a group is refused with ``ValueError``. Something
        that is not a Pathfinder group is never deleted.
    progress : show a tqdm progress bar.
    num_workers : processes generating blocks in parallel (the result does not depend on it).
    wait : if another process is writing ``path``, wait for it instead of refusing.

    Returns
    -------
    path : the resolved group path.

    Raises
    ------
    ValueError : bad arguments, a group with another configuration, a group not written by this writer,
        something that is not a Pathfinder group.
    shared.cli.UserError : ``path`` is a file.
    shared.jobs.JobLockedError : another process is writing ``path`` (and not ``wait``).
    """
    seed_t = seed_tuple(seed)
    return write_sample_zarr(
        path,
        n,
        kind=_store_kind(config),
        config=config.to_dict(),
        seed=seed_t,
        generate_block=partial(_pathfinder_block, n, config, seed_t),
        block_size=block_size,
        overwrite=overwrite,
        progress=progress,
        num_workers=num_workers,
        wait=wait,
    )


def load_pathfinder_zarr(path: str | Path, *, expected_config: PathfinderConfig | None = None) -> PathfinderSet:
    """Read a complete Pathfinder zarr group into memory.

    Parameters
    ----------
    path : a group written by :func:`write_pathfinder_zarr`.
    expected_config : when given, a group generated with another configuration is refused.

    Returns
    -------
    data : :class:`PathfinderSet`.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing path; not a Pathfinder group; unfinished (interrupted) write; config mismatch; arrays of
        inconsistent shape.
    """
    kind = _store_kind(expected_config or PathfinderConfig())  # the loader uses the names, not the shapes
    attrs, arrays = load_sample_zarr(
        path, kind=kind, expected_config=None if expected_config is None else expected_config.to_dict()
    )
    config = PathfinderConfig.from_dict(attrs["config"])
    if arrays["images"].shape[1:] != (1, *config.image_size):
        raise ValueError(f"Pathfinder dataset {path} has inconsistent shapes: images {arrays['images'].shape}")
    return PathfinderSet(
        arrays["images"],
        arrays["labels"],
        arrays["path_masks"],
        arrays["markers"],
        arrays["num_distractor_paddles"],
        config,
        tuple(attrs["seed"]),
    )
