"""Affinity targets: which voxel pairs belong to the same neuron.

Convention (Turaga/Funke, the one waterz expects)
-------------------------------------------------
An offset ``o = (dz, dy, dx)`` has non-positive components. Channel ``c`` of the affinity array stores,
**at voxel v**, the edge between ``v`` and its neighbour ``v + o`` (i.e. the neighbour *before* it along the
axis)::

    affinity[c, v] = 1  if labels[v] == labels[v + offsets[c]] and labels[v] != 0
                     0  otherwise

so background / extracellular space (label 0) **never** gets affinity 1, not even to itself. Edges whose
neighbour lies outside the array are masked out (mask 0), as are edges touching an *unlabelled* voxel when a
``labels_mask`` says which voxels were annotated.

Channel order is :data:`DEFAULT_OFFSETS`: the three nearest neighbours (z, y, x), then the long-range
offsets in groups of (z, y, x): ``(z 2, y 3, x 3)``, ``(z 3, y 9, x 9)``, ``(z 4, y 27, x 27)`` (Lee et
al. 2017, as in drewlinsley/ffn_membrane). The first three channels are exactly waterz's ``affs[c][z][y][x]``
with c = (z, y, x). PyTC stores edges on the *source* voxel (v -> v + 1) and ABISS on the destination:
convert with :func:`shift_affinities` on a haloed array before cropping.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.validation import check_dtype_kind, check_ndim, check_shape_equal

#: The 3 nearest-neighbour edges then the long-range set, each group ordered (z, y, x).
DEFAULT_OFFSETS: list[list[int]] = [
    [-1, 0, 0],
    [0, -1, 0],
    [0, 0, -1],
    [-2, 0, 0],
    [0, -3, 0],
    [0, 0, -3],
    [-3, 0, 0],
    [0, -9, 0],
    [0, 0, -9],
    [-4, 0, 0],
    [0, -27, 0],
    [0, 0, -27],
]
#: Only the nearest neighbours (what waterz and most decoders use).
NEAREST_OFFSETS: list[list[int]] = DEFAULT_OFFSETS[:3]


def validate_offsets(offsets: Sequence[Sequence[int]]) -> list[list[int]]:
    """Check offsets are 3-vectors of non-positive ints, not all zero; return them as a list of lists."""
    out = []
    for o in offsets:
        o = [int(v) for v in o]
        if len(o) != 3:
            raise ValueError(f"each offset needs 3 values (plane, row, column), got {o}")
        if any(v > 0 for v in o) or not any(o):
            raise ValueError(f"offsets must be non-positive and non-zero (the edge to an earlier voxel), got {o}")
        out.append(o)
    if not out:
        raise ValueError("offsets must not be empty")
    return out


def _pair_slices(shape: Sequence[int], offset: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices selecting voxels v (first) and their neighbours v + offset (second), both in bounds."""
    here, there = [], []
    for s, o in zip(shape, offset):
        o = max(min(o, s), -s)  # an offset longer than the axis pairs nothing (not a negative index)
        here.append(slice(-o, s) if o <= 0 else slice(0, s - o))
        there.append(slice(0, s + o) if o <= 0 else slice(o, s))
    return tuple(here), tuple(there)


def compute_affinities(
    labels: np.ndarray, offsets: Sequence[Sequence[int]] = DEFAULT_OFFSETS, *, labels_mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Affinity targets and their mask from a label volume.

    Parameters
    ----------
    labels : integer ndarray of shape (plane, row, column); 0 is background/extracellular space.
    offsets : list of (dz, dy, dx), non-positive; channel ``c`` uses ``offsets[c]``.
    labels_mask : optional bool ndarray like ``labels``, True where the labels are annotated (sparse
        annotation: the annotated objects are complete). An edge between two unannotated voxels is masked out
        (not trained); an edge between an annotated and an unannotated voxel is kept with target 0, since an
        unannotated voxel cannot belong to a completely annotated object. This is gunpowder's
        ``AddAffinities(unlabelled=...)`` rule; masking every edge that touches an unannotated voxel would
        never show the model the boundary of an annotated object.

    Returns
    -------
    affinities : float32 ndarray of shape (channel, plane, row, column), 1 where ``v`` and ``v + offset``
        share a label > 0.
    mask : float32 ndarray of the same shape, 1 where the edge is known (neighbour inside the array and at
        least one of its voxels annotated).

    Examples
    --------
    >>> labels = np.array([[[1, 1, 2, 0]]])
    >>> affs, mask = compute_affinities(labels, [[0, 0, -1]])
    >>> affs[0, 0, 0].tolist(), mask[0, 0, 0].tolist()
    ([0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0])
    """
    check_ndim(labels, 3, name="labels", axes="(plane, row, column)")
    check_dtype_kind(labels, "iu", name="labels")
    offsets = validate_offsets(offsets)
    if labels_mask is not None:
        check_shape_equal(labels, labels_mask, names=("labels", "labels_mask"))
        labels_mask = np.asarray(labels_mask, dtype=bool)
    shape = labels.shape
    affs = np.zeros((len(offsets), *shape), dtype=np.float32)
    mask = np.zeros((len(offsets), *shape), dtype=np.float32)
    foreground = labels != 0
    for c, offset in enumerate(offsets):
        here, there = _pair_slices(shape, offset)
        same = (labels[here] == labels[there]) & foreground[here]
        affs[c][here] = same
        if labels_mask is None:
            mask[c][here] = 1.0
        else:
            mask[c][here] = labels_mask[here] | labels_mask[there]
    return affs, mask


def boundary_map(affinities: np.ndarray, nearest: int = 3) -> np.ndarray:
    """Membrane probability: 1 - mean of the first ``nearest`` (nearest-neighbour) affinity channels.

    Parameters
    ----------
    affinities : ndarray of shape (channel, plane, row, column) in [0, 1].

    Returns
    -------
    float32 ndarray of shape (plane, row, column).
    """
    check_ndim(affinities, 4, name="affinities", axes="(channel, plane, row, column)")
    return (1.0 - np.asarray(affinities[:nearest], dtype=np.float32).mean(axis=0)).astype(np.float32)


def shift_affinities(affinities: np.ndarray, offsets: Sequence[Sequence[int]], *, to: str) -> np.ndarray:
    """Convert between "edge stored on the later voxel" (ours, waterz) and "on the earlier voxel" (PyTC).

    Parameters
    ----------
    affinities : ndarray of shape (channel, plane, row, column).
    offsets : the offsets of the channels, in our convention (non-positive).
    to : ``"source"`` moves each edge from voxel v to v + offset (PyTC's convention); ``"target"`` moves it
        back. Voxels that receive no edge are 0. Apply to a haloed array, then crop.
    """
    check_ndim(affinities, 4, name="affinities", axes="(channel, plane, row, column)")
    offsets = validate_offsets(offsets)
    if to not in ("source", "target"):
        raise ValueError(f"to must be 'source' or 'target'; got {to!r}")
    out = np.zeros_like(affinities)
    for c, offset in enumerate(offsets):
        here, there = _pair_slices(affinities.shape[1:], offset)
        if to == "source":
            out[c][there] = affinities[c][here]
        else:
            out[c][here] = affinities[c][there]
    return out


def noisy_affinities(
    labels: np.ndarray, sigma: float, *, seed: int = 0, offsets: Sequence[Sequence[int]] = NEAREST_OFFSETS
) -> np.ndarray:
    """Ground-truth affinities plus Gaussian noise, clipped to [0, 1]: the test input of the segmentation.

    Parameters
    ----------
    labels : integer ndarray of shape (plane, row, column); 0 is background (never affinity 1).
    sigma : standard deviation of the noise added to the 0/1 affinities of :func:`compute_affinities`.
    offsets : affinity offsets (default: the three nearest neighbours, waterz's convention).

    Returns
    -------
    float32 ndarray of shape (channel, plane, row, column) in [0, 1].

    Examples
    --------
    >>> affs = noisy_affinities(np.array([[[1, 1, 0]]]), 0.0, offsets=[[0, 0, -1]])
    >>> affs[0, 0, 0].tolist()
    [0.0, 1.0, 0.0]
    """
    affs, _ = compute_affinities(labels, offsets)
    if sigma > 0:
        affs += np.random.default_rng(seed).normal(0.0, sigma, affs.shape).astype(np.float32)
    return np.clip(affs, 0.0, 1.0, out=affs)
