"""Quiet noisy dependencies: C/C++ code that prints to standard output, and Lightning's expected warnings."""

from __future__ import annotations

import contextlib
import logging
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


_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence what every ``Trainer`` prints on its own: banners, tips and the warnings of a validation-free fit.

    For commands that train many small models and keep one line of their own per model (the ``phenotypic
    scaling`` grid): Lightning's ``rank_zero_info`` notices ("GPU available ...", "TPU available ...", the
    "Tip: ..." lines, "`Trainer.fit` stopped ...") go to the ``lightning.pytorch`` logger at INFO, so that
    logger (and fabric's) is raised to WARNING for the duration; real warnings and errors still show. The
    warnings of :func:`quiet_lightning_fit` are silenced too.

    Examples
    --------
    >>> before = logging.getLogger("lightning.pytorch").level
    >>> with quiet_lightning():
    ...     logging.getLogger("lightning.pytorch.utilities.rank_zero").isEnabledFor(logging.INFO)
    False
    >>> logging.getLogger("lightning.pytorch").level == before
    True
    """
    import lightning.pytorch  # noqa: F401  (its import sets its logger to INFO: import first, then quieten)

    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with quiet_lightning_fit():
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
