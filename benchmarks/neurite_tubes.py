"""Interim ground truth of thin branching processes (until ``connectomics.simulate.neuron_labels`` lands).

Neurites are rasterised random-walk tubes, 1-4 voxels across in the plane at 40x8x8 nm, that branch and
run obliquely through the sections (so consecutive sections overlap by a voxel or two: the hard case for
a watershed). Three morphology classes:

* ``thin``: many tubes packed with thin extracellular gaps (label 0) between them;
* ``sparse``: a few tubes in large empty (label 0, affinity 0) regions;
* ``dense``: the same tubes among large cells that fill the rest of the volume.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MORPHOLOGIES = ("dense", "sparse", "thin")


def _walk(rng: np.random.Generator, start: np.ndarray, extent: np.ndarray, steps: int) -> np.ndarray:
    """Points (nm) of a random walk from ``start`` with a smoothly wandering direction, 4 nm apart, up to
    where it leaves the volume."""
    direction = rng.normal(size=3) + ndimage.gaussian_filter1d(rng.normal(size=(steps, 3)), 25, axis=0) * 12
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    points = start + np.cumsum(4.0 * direction, axis=0)
    outside = np.flatnonzero(np.any((points < 0) | (points >= extent), axis=1))
    return points[: outside[0] if len(outside) else steps]


def _branching_walk(rng: np.random.Generator, extent: np.ndarray, steps: int, branches: int) -> np.ndarray:
    """A walk and ``branches`` side walks of half its length starting at random points of it."""
    trunk = _walk(rng, rng.uniform(0, 1, 3) * extent, extent, steps)
    parts = [trunk]
    for _ in range(branches if len(trunk) else 0):
        parts.append(_walk(rng, trunk[rng.integers(len(trunk))], extent, steps // 2))
    return np.concatenate(parts)


def neurite_tubes(morphology: str, shape: tuple[int, int, int], *, seed: int = 0,
                  voxel_size: tuple[float, float, float] = (40.0, 8.0, 8.0)) -> np.ndarray:
    """Labels (uint64, plane/row/column; 0 = background/extracellular space) of thin branching processes.

    Examples
    --------
    >>> labels = neurite_tubes("thin", (8, 32, 32))
    >>> labels.dtype, labels.shape
    (dtype('uint64'), (8, 32, 32))
    """
    if morphology not in MORPHOLOGIES:
        raise ValueError(f"morphology must be one of {MORPHOLOGIES}, got {morphology!r}")
    rng = np.random.default_rng(seed)
    voxel = np.asarray(voxel_size, float)
    labels = np.zeros(shape, np.uint64)
    n_voxels = int(np.prod(shape))
    next_label = 1
    if morphology == "dense":  # large cells (planar Voronoi, sheared through the sections) fill the volume
        n_cells = max(2, n_voxels // 40000)
        centres = rng.uniform(0, 1, (n_cells, 2)) * np.array(shape[1:])
        drift = rng.normal(0, 0.6, (n_cells, 2))
        yy, xx = np.mgrid[: shape[1], : shape[2]]
        for z in range(shape[0]):
            c = centres + z * drift
            d = (yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2
            labels[z] = d.argmin(axis=0) + 1
        next_label = n_cells + 1
    n_tubes = {"thin": n_voxels // 2500, "sparse": n_voxels // 25000, "dense": n_voxels // 5000}[morphology]
    steps = int(2 * np.linalg.norm(np.array(shape) * voxel) / 4)
    # centre lines rasterised to voxels, then each voxel within a tube's radius of its nearest centre-line
    # voxel takes that tube's label (tubes that meet split the space between them)
    skeleton = np.zeros(shape, np.int64)
    radius = np.zeros(shape)
    for tube in range(max(n_tubes, 2)):
        voxels = np.unique((_branching_walk(rng, np.array(shape) * voxel, steps, 2) / voxel).astype(int), axis=0)
        skeleton[tuple(voxels.T)] = next_label + tube
        radius[tuple(voxels.T)] = rng.uniform(8.0, 16.0)  # >= 1 voxel: 6-connected tubes
    distance, nearest = ndimage.distance_transform_edt(skeleton == 0, sampling=voxel, return_indices=True)
    inside = distance <= radius[tuple(nearest)]
    labels[inside] = skeleton[tuple(nearest)][inside].astype(np.uint64)
    # a neuron is one connected process: pieces cut off by other tubes become extracellular space (no
    # nearest-neighbour affinity could join them)
    for label, box in enumerate(ndimage.find_objects(labels.astype(np.int64)), start=1):
        if box is None:
            continue
        mine = labels[box] == label
        pieces, n = ndimage.label(mine)
        if n > 1:
            largest = np.argmax(np.bincount(pieces.ravel())[1:]) + 1
            labels[box][mine & (pieces != largest)] = 0
    return labels
