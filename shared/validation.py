"""Input validators shared by every subsystem.

Each raises an exception whose message names the offending variable and what was expected, so a user
sees *what* is wrong with *which* input instead of a shape error deep inside a network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def check_ndim(array, ndim: int | Sequence[int], *, name: str, axes: str | None = None) -> None:
    """Raise ``ValueError`` unless ``array.ndim`` is ``ndim`` (or one of several).

    Parameters
    ----------
    array : array-like with an ``ndim`` attribute (numpy, dask, torch).
    ndim : the allowed number(s) of axes.
    name : the variable name used in the message.
    axes : optional axis names, e.g. ``"(batch, channel, plane, row, column)"``, added to the message.

    Examples
    --------
    >>> check_ndim(np.zeros((2, 3)), 2, name="image")
    >>> check_ndim(np.zeros(3), (2, 3), name="image")
    Traceback (most recent call last):
    ...
    ValueError: image must have 2 or 3 axes, got 1 (shape (3,))
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if array.ndim not in allowed:
        wanted = " or ".join(str(n) for n in allowed)
        hint = f" {axes}" if axes else ""
        raise ValueError(f"{name} must have {wanted} axes{hint}, got {array.ndim} (shape {tuple(array.shape)})")


def check_shape_equal(a, b, *, names: tuple[str, str]) -> None:
    """Raise ``ValueError`` if two arrays differ in shape, naming both."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_dtype_kind(array, kinds: str, *, name: str) -> None:
    """Raise ``TypeError`` unless ``array.dtype.kind`` is in ``kinds`` (numpy kind letters, e.g. ``"iu"``).

    Examples
    --------
    >>> check_dtype_kind(np.zeros(2, np.uint8), "iu", name="labels")
    >>> check_dtype_kind(np.zeros(2), "iu", name="labels")
    Traceback (most recent call last):
    ...
    TypeError: labels must have an integer dtype, got float64
    """
    names = {"i": "signed integer", "u": "unsigned integer", "f": "floating", "b": "boolean"}
    dtype = np.dtype(str(array.dtype).replace("torch.", ""))
    if dtype.kind not in kinds:
        if set(kinds) == {"i", "u"}:
            wanted = "an integer"
        else:
            wanted = " or ".join(f"a {names.get(k, k)}" for k in kinds)
        raise TypeError(f"{name} must have {wanted} dtype, got {dtype}")


def check_finite(array, *, name: str) -> None:
    """Raise ``ValueError`` if a numpy array contains NaN or infinite values, with a count and a location.

    Examples
    --------
    >>> check_finite(np.array([1.0, np.nan]), name="raw")
    Traceback (most recent call last):
    ...
    ValueError: raw contains 1 NaN and 0 infinite value(s); first at index (1,)
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite value(s); first at index {first}"
        )


def check_choice(value, choices: Iterable, *, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``, listing them.

    Examples
    --------
    >>> check_choice("bptt", ("bptt", "crbp"), name="mode")
    >>> check_choice("rbp", ("bptt", "crbp"), name="mode")
    Traceback (most recent call last):
    ...
    ValueError: mode must be one of 'bptt', 'crbp'; got 'rbp'
    """
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")


def check_existing_path(path: str | Path, *, name: str, kind: str = "any") -> Path:
    """Resolve a user-supplied path and check it exists (``kind`` is ``"file"``, ``"dir"`` or ``"any"``).

    Paths from configs go through here so a typo fails early with the path in the message.
    """
    p = Path(path).expanduser()
    if "\x00" in str(p):
        raise ValueError(f"{name} contains a NUL byte: {str(p)!r}")
    if not p.exists():
        raise FileNotFoundError(f"{name} does not exist: {p}")
    if kind == "file" and not p.is_file():
        raise ValueError(f"{name} must be a file, got a directory: {p}")
    if kind == "dir" and not p.is_dir():
        raise ValueError(f"{name} must be a directory: {p}")
    return p.resolve()
