"""Seeds and labels shared by the stimulus generators: one random stream per sample, exactly balanced labels.

Every generator in :mod:`shared.data` draws sample ``i`` of a set from ``numpy.random.default_rng((*seed, i))``,
so any subset of a set can be (re)generated independently and identically; that is what makes the zarr writes
of :mod:`shared.data.zarr_store` resumable and parallel.

Examples
--------
>>> seed_tuple(3), seed_tuple((1, 2))
((3,), (1, 2))
>>> labels = balanced_labels(10, 0)
>>> int(labels.sum()), labels.dtype
(5, dtype('int64'))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["balanced_labels", "check_indices", "sample_rng", "seed_tuple"]


def seed_tuple(seed: int | Sequence[int]) -> tuple[int, ...]:
    """Normalise a seed (a non-negative int or a sequence of them) to a tuple of ints."""
    seq = (seed,) if isinstance(seed, (int, np.integer)) else tuple(seed)
    if not seq or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in seq):
        raise ValueError(f"seed must be a non-negative int or a sequence of them, got {seed!r}")
    return tuple(int(v) for v in seq)


def sample_rng(seed: tuple[int, ...], index: int) -> np.random.Generator:
    """The random stream of sample ``index`` of the set made with ``seed`` (a tuple from :func:`seed_tuple`)."""
    return np.random.default_rng((*seed, int(index)))


def balanced_labels(n: int, seed: int | Sequence[int]) -> np.ndarray:
    """Labels for a set of ``n`` samples: exactly ``n // 2`` positives (one more when ``n`` is odd), shuffled.

    Parameters
    ----------
    n : size of the whole set.
    seed : the set's seed; the permutation uses the stream ``(*seed, 2**31 - 1)``, apart from every sample's.

    Returns
    -------
    labels : ndarray of shape (n,), int64 in {0, 1}.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    labels = np.zeros(n, np.int64)
    labels[: (n + 1) // 2] = 1
    return np.random.default_rng((*seed_tuple(seed), 2**31 - 1)).permutation(labels)


def check_indices(n: int, indices: Sequence[int] | None) -> np.ndarray:
    """The sample indices to generate (default all ``n``) as int64, refusing any outside ``[0, n)``."""
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"indices must lie in [0, {n}), got min {idx.min()} max {idx.max()}")
    return idx
