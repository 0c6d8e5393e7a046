"""Figures of human-feature alignment: images, human maps and saliency side by side; the score distribution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.figures import pyplot, save_figure

__all__ = ["draw_image_rows", "example_indices", "plot_alignment"]


def draw_image_rows(axes: Any, panels: Sequence[tuple[str, Sequence[np.ndarray], str]]) -> None:
    """Fill a grid of axes: one row per panel ``(label, images, colormap)``, one image (rows, columns) per column.

    The row's label goes on its first axis; ticks are removed.
    """
    for r, (label, arrays, cmap) in enumerate(panels):
        for c, array in enumerate(arrays):
            axes[r, c].imshow(array, cmap=cmap)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)


def example_indices(spearman: np.ndarray, n: int) -> np.ndarray:
    """``n`` images from the best aligned to the worst, evenly spaced in rank (NaN scores last).

    Examples
    --------
    >>> example_indices(np.array([0.1, 0.9, np.nan, 0.5, -0.2]), 3).tolist()
    [1, 0, 4]
    """
    finite = np.flatnonzero(np.isfinite(spearman))
    order = finite[np.argsort(-spearman[finite], kind="stable")]
    order = np.concatenate([order, np.flatnonzero(~np.isfinite(spearman))]) if len(order) < n else order
    n = min(n, len(order))
    return order[np.unique(np.round(np.linspace(0, len(order) - 1, n)).astype(int))]


def plot_alignment(
    images: np.ndarray,
    human_maps: np.ndarray,
    saliency: np.ndarray,
    spearman: np.ndarray,
    path: str | Path,
    *,
    ceiling: float,
    names: Sequence[str] | None = None,
    n_examples: int = 6,
    software: str = "shared.alignment score",
) -> Path:
    """Images, human maps and saliency of ``n_examples`` images (best to worst aligned), and the histogram of
    the per-image Spearman rho with its mean and the human ceiling.

    Parameters
    ----------
    images : ndarray of shape (n_images, channels, rows, columns); the first channel is shown.
    human_maps, saliency : ndarrays of shape (n_images, rows, columns).
    spearman : ndarray of shape (n_images,), per-image rho (NaN where undefined).
    path : the PNG written (atomically).
    ceiling : human ceiling of rho (the alignment score is mean rho / ceiling).
    names : per-image names for the column titles (default: indices).

    Examples
    --------
    >>> import tempfile
    >>> rng = np.random.default_rng(0)
    >>> maps = rng.random((4, 16, 16))
    >>> png = plot_alignment(maps[:, None], maps, maps + rng.random((4, 16, 16)), np.array([.9, .5, .1, .3]),
    ...                      Path(tempfile.mkdtemp()) / "report.png", ceiling=1.0)
    >>> png.suffix
    '.png'
    """
    spearman = np.asarray(spearman, float)
    shown = example_indices(spearman, n_examples)
    names = [str(i) for i in range(len(images))] if names is None else list(names)
    n = max(len(shown), 1)
    plt = pyplot()
    fig = plt.figure(figsize=(max(1.8 * n, 7), 8.2))
    grid = fig.add_gridspec(4, n, height_ratios=[1, 1, 1, 1.25], hspace=0.45)
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(n)] for r in range(3)])
    draw_image_rows(
        axes,
        [
            ("image", [images[i, 0] for i in shown], "gray"),
            ("human map", [human_maps[i] for i in shown], "magma"),
            ("saliency", [saliency[i] for i in shown], "magma"),
        ],
    )
    for c, i in enumerate(shown):
        axes[0, c].set_title(f"{names[i]}\nrho {spearman[i]:.2f}", fontsize=7)
    hist = fig.add_subplot(grid[3, :])
    finite = spearman[np.isfinite(spearman)]
    hist.hist(finite, bins=np.linspace(-1, 1, 41), color="C0", alpha=0.8)
    mean = float(finite.mean()) if len(finite) else float("nan")
    hist.axvline(mean, color="black", label=f"mean rho {mean:.3f} (score {mean / ceiling:.3f})")
    hist.axvline(ceiling, color="C3", ls="--", label=f"human ceiling {ceiling:.3f}")
    hist.set(xlim=(-1, 1), xlabel="Spearman rho of saliency with the human map (per image)", ylabel="images")
    hist.legend(fontsize=7, loc="upper left")
    missing = len(spearman) - len(finite)
    fig.suptitle(
        f"Human-feature alignment of {len(spearman)} images (best to worst aligned shown)"
        + (f"; {missing} without a defined rho" if missing else ""),
        fontsize=10,
    )
    return save_figure(fig, path, software=software)
