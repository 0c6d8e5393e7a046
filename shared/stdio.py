"""Quiet noisy dependencies: C/C++ code that prints to standard output, and Lightning's expected warnings."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence output written to file descriptor 1, where C++ extensions print (waterz prints its progress).

    Python's ``sys.stdout`` redirection does not reach native code, so the descriptor itself is pointed at
    ``os.devnull`` for the duration and restored afterwards.

    Examples
    --------
    >>> with quiet_stdout():
    ...     _ = os.write(1, b"not shown")
    """
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def quiet_lightning_fit() -> Iterator[None]:
    """Silence the warnings a ``Trainer.fit`` without validation is expected to raise.

    For scripted runs that train with ``limit_val_batches=0`` on purpose (the test set is scored after
    training): Lightning's "no val_dataloader" notice, its own deprecations and the torch ``LeafSpec`` one.

    Examples
    --------
    >>> with quiet_lightning_fit():
    ...     warnings.warn("Lightning: no val_dataloader")
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*val_dataloader.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        yield
