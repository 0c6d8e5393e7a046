"""Figures written by the commands: matplotlib on the headless Agg backend, saved atomically as PNG.

Every command that writes a results table or JSON also writes a PNG beside it (issue 16: "figures rather
than JSON") and prints one line naming it. The pieces they share live here:

* :func:`pyplot` imports ``matplotlib.pyplot`` on the Agg backend (no display needed; imported only when a
  figure is drawn, so ``--help`` stays fast);
* :func:`save_figure` writes the PNG through :func:`shared.jobs.atomic_path` (a reader never sees half a
  file), tags it with the command that made it and closes the figure;
* :func:`figure_line` is the printed line saying where the figure went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["figure_line", "pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend.

    Examples
    --------
    >>> plt = pyplot()
    >>> plt.get_backend().lower()
    'agg'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, software: str, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` as a PNG (atomically), tagged ``Software: <software>``, and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : the PNG to write; its folder is created. The caller decides whether it may be replaced
        (:func:`shared.jobs.claim_output` or :meth:`shared.jobs.Job.claim`).
    software : the command that made it (stored in the PNG's ``Software`` text chunk).
    dpi : resolution.

    Returns
    -------
    Path : ``path``.

    Examples
    --------
    >>> import tempfile
    >>> fig, ax = pyplot().subplots()
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> png = save_figure(fig, Path(tempfile.mkdtemp()) / "line.png", software="doctest")
    >>> png.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    from shared.jobs import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:  # the temporary name hides the suffix: say the format
            fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": software})
    finally:
        pyplot().close(fig)
    return path


def figure_line(path: str | Path, what: str) -> str:
    """The line a command prints after writing a figure.

    Examples
    --------
    >>> figure_line("results/tasks.png", "tasks against chance")
    'figure (tasks against chance): results/tasks.png'
    """
    return f"figure ({what}): {path}"
