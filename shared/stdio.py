"""Quiet native libraries: C/C++ code that prints to the process's standard output."""

from __future__ import annotations

import contextlib
import os
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
