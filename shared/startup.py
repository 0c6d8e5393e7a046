"""Feedback while a console command's heavy imports load (torch, Lightning: several seconds on a busy machine).

A subcommand's module is imported only when the subcommand is chosen, so ``connectomics --help`` is instant,
but ``connectomics fit`` must import Lightning (and torch) before it can print anything. On a terminal,
:func:`announce_slow_import` shows one transient status line if the import takes longer than ``after_s``,
and erases it once the import is done, so the first output comes within a second. Nothing is written when
stderr is not a terminal (pipes, logs and tests see exactly the command's own output).
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType
from typing import TextIO


def announce_slow_import(
    prog: str, target: str, *, after_s: float = 0.5, stream: TextIO | None = None, force: bool = False
) -> ModuleType:
    """Import the module of a subcommand ``target`` (``"package.module:function"``), saying so if it is slow.

    Parameters
    ----------
    prog : str
        The command as the user typed it, e.g. ``"connectomics fit"``.
    target : str
        ``"package.module:function"`` (a :class:`shared.cli.Subcommand` target); only the module is imported.
    after_s : float
        Seconds of silence before the status line appears.
    stream : text stream, optional
        Where the line goes (default ``sys.stderr``).
    force : bool
        Write the line even when ``stream`` is not a terminal (for tests).

    Returns
    -------
    ModuleType
        The imported module, now in ``sys.modules``, so the dispatcher's own import of it is free.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> announce_slow_import("demo json", "json:dumps", after_s=0.0, stream=out, force=True).__name__
    'json'
    """
    module_name = target.split(":")[0]
    stream = sys.stderr if stream is None else stream
    if module_name in sys.modules or not (force or stream.isatty()):
        return importlib.import_module(module_name)
    message = f"{prog}: loading {module_name} and its libraries..."
    shown = threading.Event()

    def show() -> None:
        stream.write(message)
        stream.flush()
        shown.set()

    timer = threading.Timer(after_s, show)
    timer.daemon = True
    timer.start()
    try:
        return importlib.import_module(module_name)
    finally:
        timer.cancel()
        timer.join()
        if shown.is_set():  # erase the status line: carriage return, then clear to the end of the line
            stream.write("\r\x1b[K")
            stream.flush()
