"""Spline trajectories of the PathTracker and FeatureTracker stimuli: a port of the reference ``GenCoord``.

Source (read): ``pathtracker/pathtracker_data_generator``, ``gen_negative/spline_scaled_curve_generator_class.py``
(class ``GenCoord``, method ``get_coordinates``) and its caller
``cluster_store_individual_modular_spline_curve_generator_path_finder_motion_race_distractor_many_fixed_blob_128_
permanent_markers_square_numpy.py`` (``get_full_length_coordinates``); FeatureTracker uses the same class
(``S4b1n3/feature_tracker``, ``feature_tracker/utils_coordinates.py``). The callers pass
``length_curve = nTimes * 3 = 66``, ``distance_points=.002``, ``delta_angle_max=90``, ``wiggle_room=.95``,
``rigidity=.95``, ``x/y in [0, win]`` with ``win = 32 - 5 = 27`` (``angle_range=[90, 100]`` is passed but never
used by ``get_coordinates``). FeatureTracker's "irregular" paths pass ``delta_angle_max=180``.

The algorithm, transcribed:

1. A seed point ``a = rand(2) * 200``; the first heading is ``arctan2(a[1], a[0])`` - in *radians*, but the
   later arithmetic treats headings as *degrees* (kept: it only fixes a small first heading).
2. One sign ``op`` in {+, -} per curve. For each of ``length_curve - 1 = 65`` steps: ``d`` is drawn uniformly
   from ``arange(0, delta_angle_max, wiggle_room)`` and the heading becomes
   ``rigidity * (heading op d)``; the curve then advances 5 points of length ``distance_points`` along it,
   so a curve has ``1 + 65 * 5 = 326`` points.
3. Each axis is min-max scaled independently onto ``[0, win]`` (so every curve spans the window).
4. With probability 1/2 the point order is reversed.
5. The caller takes ``frames`` points from a random offset ``randint(326 - frames * skip + 1)`` with stride
   ``skip`` (``skip_param``, the *speed*: the number of frames stays fixed, the distance travelled grows) and
   floors them. Coordinate 0 (``x``) is the image *row*, coordinate 1 the *column*.

Differences: random numbers come from one ``numpy.random.Generator`` per sample instead of the global
``np.random`` state (the same distributions, not the same draws), and all curves of a sample are computed
together with array operations. The reference floors the target and paired-distractor tracks only (the other
distractors stay fractional and are drawn by ``skimage.draw.polygon``); here every track is floored, so every
dot is drawn alike (see :mod:`shared.data.pathtracker`).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> curves = gencoord_curves(rng, 3)
>>> curves.shape, float(curves.min()), float(curves.max())
((3, 326, 2), 0.0, 27.0)
>>> tracks = sample_tracks(rng, curves, frames=64, speed=2)
>>> tracks.shape, tracks.dtype
((3, 64, 2), dtype('int64'))
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CURVE_POINTS",
    "SUBSTEPS",
    "check_track_span",
    "curve_length",
    "curves_from_draws",
    "gencoord_curves",
    "sample_tracks",
    "spline_tracks",
]

CURVE_POINTS = 66
"""``length_curve`` of the reference callers (``nTimes * 3``, nTimes = 22)."""
SUBSTEPS = 5
"""Points the reference adds per heading step (its inner ``for j in range(5)``)."""


def curve_length(curve_points: int = CURVE_POINTS) -> int:
    """Number of points of one curve: ``1 + (curve_points - 1) * 5`` (326 for the published 66)."""
    return 1 + (int(curve_points) - 1) * SUBSTEPS


def check_track_span(frames: int, speed: int, curve_points: int = CURVE_POINTS) -> None:
    """Refuse tracks that do not fit on one curve: ``frames * speed`` must not exceed :func:`curve_length`."""
    if frames < 1 or speed < 1:
        raise ValueError(f"frames and speed must be >= 1, got {frames} and {speed}")
    if frames * speed > curve_length(curve_points):
        raise ValueError(
            f"frames * speed = {frames * speed} exceeds the {curve_length(curve_points)} points of a "
            f"spline (curve_points {curve_points}); lower frames or speed, or raise curve_points"
        )


def gencoord_curves(
    rng: np.random.Generator,
    n_curves: int,
    *,
    window: float = 27.0,
    delta_angle_max: float = 90.0,
    wiggle_room: float = 0.95,
    rigidity: float = 0.95,
    curve_points: int = CURVE_POINTS,
) -> np.ndarray:
    """Full ``GenCoord`` curves (steps 1-4 of the module docstring), all scaled onto ``[0, window]``.

    Parameters
    ----------
    rng : the sample's random stream.
    n_curves : number of curves.
    window : side of the square the curves are scaled onto (27 = 32 - 5 published).
    delta_angle_max, wiggle_room, rigidity : the reference's curvature parameters (90, 0.95, 0.95).
    curve_points : the reference's ``length_curve`` (66).

    Returns
    -------
    curves : ndarray of shape (n_curves, 1 + (curve_points - 1) * 5, 2), float64; (row, column) in
        ``[0, window]``, each axis of each curve spanning the whole range.
    """
    if n_curves < 0 or curve_points < 2 or not 0 < wiggle_room < delta_angle_max or not window > 0:
        raise ValueError(
            f"need n_curves >= 0, curve_points >= 2, 0 < wiggle_room < delta_angle_max and "
            f"window > 0; got {n_curves}, {curve_points}, {wiggle_room}, {delta_angle_max}, {window}"
        )
    steps = curve_points - 1
    seeds = rng.random((n_curves, 2)) * 200.0
    sign = np.where(rng.integers(0, 2, n_curves) == 1, 1.0, -1.0)  # the reference's op: 'add' or 'sub'
    choices = np.arange(0.0, delta_angle_max, wiggle_room)
    d_angle = choices[rng.integers(0, choices.size, (n_curves, steps))]
    reverse = rng.integers(0, 2, n_curves) == 0  # the reference keeps the order when direction == 1
    return curves_from_draws(seeds, sign, d_angle, reverse, window=window, rigidity=rigidity)


def curves_from_draws(
    seeds: np.ndarray,
    sign: np.ndarray,
    d_angle: np.ndarray,
    reverse: np.ndarray,
    *,
    window: float = 27.0,
    rigidity: float = 0.95,
) -> np.ndarray:
    """The deterministic part of ``GenCoord.get_coordinates``: curves from the random draws.

    Parameters
    ----------
    seeds : ndarray of shape (n, 2), float; the seed points ``a`` (in [0, 200)).
    sign : ndarray of shape (n,), +1 (``op == 'add'``) or -1 (``'sub'``).
    d_angle : ndarray of shape (n, steps), float; the heading increments in degrees.
    reverse : bool ndarray of shape (n,); reverse the point order (the reference's ``direction == 0``).
    window, rigidity : as in :func:`gencoord_curves`.

    Returns
    -------
    curves : ndarray of shape (n, 1 + 5 * steps, 2), float64 in ``[0, window]``.
    """
    from scipy.signal import lfilter

    first = np.arctan2(seeds[:, 1], seeds[:, 0])  # radians used as degrees, as in the reference
    # heading_i = rigidity * (heading_{i-1} + sign * d_i): a first-order recursive filter, run by lfilter
    headings, _ = lfilter([rigidity], [1.0, -rigidity], sign[:, None] * d_angle, axis=1, zi=(rigidity * first)[:, None])
    n_curves = d_angle.shape[0]
    radians = np.radians(np.repeat(headings, SUBSTEPS, axis=1))
    # distance_points (.002) drops out of the min-max scaling below; unit steps keep the numbers well scaled
    moves = np.stack([np.cos(radians), np.sin(radians)], axis=-1)
    points = np.concatenate([np.zeros((n_curves, 1, 2)), np.cumsum(moves, axis=1)], axis=1)
    low, high = points.min(axis=1, keepdims=True), points.max(axis=1, keepdims=True)
    scaled = (points - low) / np.maximum(high - low, 1e-12) * window
    scaled[reverse] = scaled[reverse, ::-1]
    return scaled


def sample_tracks(rng: np.random.Generator, curves: np.ndarray, *, frames: int, speed: int) -> np.ndarray:
    """Cut one track per curve: ``frames`` points from a random offset with stride ``speed``, floored (step 5).

    Parameters
    ----------
    rng : the sample's random stream.
    curves : ndarray of shape (n_curves, points, 2) from :func:`gencoord_curves`.
    frames : points per track (= video frames).
    speed : stride between consecutive frames (the reference's ``skip_param``).

    Returns
    -------
    tracks : ndarray of shape (n_curves, frames, 2), int64 (row, column) pixel positions.
    """
    n_curves, points = curves.shape[:2]
    span = frames * speed
    if frames < 1 or speed < 1 or span > points:
        raise ValueError(f"frames * speed = {frames} * {speed} must be in [1, {points}] (points per curve)")
    offsets = rng.integers(0, points - span + 1, n_curves)
    index = offsets[:, None] + speed * np.arange(frames)[None, :]
    return np.floor(np.take_along_axis(curves, index[..., None], axis=1)).astype(np.int64)


def spline_tracks(
    rng: np.random.Generator,
    n_tracks: int,
    *,
    frames: int,
    speed: int = 1,
    window: float = 27.0,
    delta_angle_max: float = 90.0,
    wiggle_room: float = 0.95,
    rigidity: float = 0.95,
    curve_points: int = CURVE_POINTS,
) -> np.ndarray:
    """Tracks of ``n_tracks`` dots as the reference makes them (:func:`gencoord_curves` then :func:`sample_tracks`).

    Returns
    -------
    tracks : ndarray of shape (n_tracks, frames, 2), int64 (row, column) in ``[0, floor(window)]``.

    Examples
    --------
    >>> t = spline_tracks(np.random.default_rng(1), 4, frames=32, speed=1)
    >>> t.shape, int(t.min()) >= 0, int(t.max()) <= 27
    ((4, 32, 2), True, True)
    """
    curves = gencoord_curves(
        rng,
        n_tracks,
        window=window,
        delta_angle_max=delta_angle_max,
        wiggle_room=wiggle_room,
        rigidity=rigidity,
        curve_points=curve_points,
    )
    return sample_tracks(rng, curves, frames=frames, speed=speed)
