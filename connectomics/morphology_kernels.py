"""The compiled kernels of :mod:`connectomics.morphology` (numba), apart so that importing the simulator's
settings (``connectomics simulate --help``) does not import numba."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def walk_samples(normals, n, starts, directions, steps, scale, orient):  # pragma: no cover - compiled
    """The samples of persistent random walks from their normal draws (m, n_max, 3): the drift is the
    running sum of the draws times ``scale``; each step goes along the unit vector of ``direction + drift *
    orient``; the first sample is one step from the start, never on it (a branch started at a sphere of its
    trunk would otherwise duplicate that centre, and a k-nearest query breaks such exact ties arbitrarily).

    One pass per walk, in the operation order of the array form it replaced (cumulative sums, then scale;
    norm as sqrt of the sequential sum of squares), so the samples are the same to the bit.
    """
    total = 0
    for i in range(len(n)):
        total += n[i]
    centres, walk, arc = np.empty((total, 3)), np.empty(total, np.int64), np.empty(total)
    k = 0
    for i in range(len(n)):
        drift = np.zeros(3)
        position = np.zeros(3)
        direction = np.empty(3)
        for j in range(n[i]):
            for a in range(3):
                drift[a] += normals[i, j, a]
                direction[a] = directions[i, a] + drift[a] * scale[i] * orient[a]
            norm = max(
                np.sqrt(direction[0] * direction[0] + direction[1] * direction[1] + direction[2] * direction[2]), 1e-9
            )
            for a in range(3):
                position[a] += direction[a] / norm * steps[i]
                centres[k, a] = starts[i, a] + position[a]
            walk[k], arc[k] = i, j * steps[i]
            k += 1
    return centres, walk, arc


@numba.njit(cache=True)
def box_distance(points, lo, hi):  # pragma: no cover - compiled
    """Euclidean distance (nm) of each point (n, 3) to the box [lo, hi] (0 inside), in one pass over the
    points (most spheres a cell generates lie far from the box and are dropped by it)."""
    out = np.empty(len(points))
    for i in range(len(points)):
        total = 0.0
        for a in range(3):
            gap = max(max(lo[a] - points[i, a], points[i, a] - hi[a]), 0.0)
            total += gap * gap
        out[i] = np.sqrt(total)
    return out
