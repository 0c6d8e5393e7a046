"""Open-addressing hash tables for compiled (numba) loops: linear probing, power-of-two sizes.

numba's typed dict costs about twice the memory and time of these plain arrays in the inner loops of the
region graph, the agglomeration and the metrics' contingency table, so all three use the functions here.

Two layouts:

* **int64 keys** (:func:`find_slot`, :func:`rehash`, :func:`delete_slot`): ``keys`` holds non-negative
  int64 keys, ``-1`` marks an empty slot; a parallel array holds the values. Deletion shifts later entries
  of the probe run back (no tombstones), so lookups stay short in tables that shrink.
* **uint64 id pairs** (:func:`find_pair_slot`): two key arrays and a ``used`` flag array, for keys that may
  take any uint64 value (segment and ground-truth ids).

Examples
--------
>>> keys, values = rehash(np.array([7, 3], np.int64), 3)
>>> int(values[find_slot(keys, 3, 3)])
1
"""

from __future__ import annotations

import numba
import numpy as np

FIBONACCI = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True)
def hash_slot(key, bits):  # pragma: no cover - compiled
    """Fibonacci hashing of an integer key (int64 >= 0 or uint64) to ``bits`` bits."""
    return np.int64((np.uint64(key) * FIBONACCI) >> np.uint64(64 - bits))


@numba.njit(cache=True, nogil=True)
def find_slot(keys, key, bits):  # pragma: no cover - compiled
    """Slot of ``key`` in a table of ``2**bits`` int64 keys (``-1`` = empty), or the empty slot it would take."""
    h = hash_slot(key, bits)
    while keys[h] != key and keys[h] >= 0:
        h = (h + 1) & ((1 << bits) - 1)
    return h


@numba.njit(cache=True, nogil=True)
def rehash(keys, bits):  # pragma: no cover - compiled
    """A table (keys, values) of ``2**bits`` slots holding ``keys[i] -> i`` (keys distinct, >= 0)."""
    table_keys, table_values = np.full(1 << bits, -1, np.int64), np.empty(1 << bits, np.int64)
    for i in range(len(keys)):
        h = find_slot(table_keys, keys[i], bits)
        table_keys[h], table_values[h] = keys[i], i
    return table_keys, table_values


@numba.njit(cache=True, nogil=True)
def delete_slot(keys, values, h, bits):  # pragma: no cover - compiled
    """Empty slot ``h``, moving later entries of its probe run back (backward-shift deletion).

    An entry at ``j`` may fill the hole at ``h`` only if ``h`` lies on its probe path, that is, if its home
    slot is not cyclically within ``(h, j]``.
    """
    mask = (1 << bits) - 1
    j = h
    while True:
        j = (j + 1) & mask
        if keys[j] < 0:
            break
        home = hash_slot(keys[j], bits)
        if (j > h and (home <= h or home > j)) or (j < h and home <= h and home > j):
            keys[h], values[h] = keys[j], values[j]
            h = j
    keys[h] = -1


@numba.njit(cache=True, nogil=True)
def pair_hash(a, b, mask):  # pragma: no cover - compiled
    """Hash of a uint64 pair (splitmix64 finaliser of a multiplicative mix) masked to the table size."""
    h = a * FIBONACCI ^ (b + np.uint64(0x632BE59BD9B4E019)) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return h & mask


@numba.njit(cache=True, nogil=True)
def find_pair_slot(keys_a, keys_b, used, a, b):  # pragma: no cover - compiled
    """Slot of the uint64 pair ``(a, b)`` in a table with ``used`` flags, or the free slot it would take."""
    mask = np.uint64(len(used) - 1)
    i = pair_hash(a, b, mask)
    while used[i] and not (keys_a[i] == a and keys_b[i] == b):
        i = (i + np.uint64(1)) & mask
    return i
