"""Figures of the tracking stimuli: a grid of example frames (videos x frames), label in each row's title.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from shared.data.pathtracker import PathTrackerConfig, generate_pathtracker
>>> data = generate_pathtracker(2, config=PathTrackerConfig(frames=8, num_distractors=2), seed=0)
>>> png = plot_example_frames(data, Path(tempfile.mkdtemp()) / "frames.png", n_videos=2)
>>> png.stat().st_size > 0
True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.data.tracking_video import TARGET_ID, TrackingSet

__all__ = ["plot_example_frames"]


def plot_example_frames(
    data: TrackingSet, path: str | Path, *, n_videos: int = 4, frames: Sequence[int] | None = None
) -> Path:
    """Save a PNG grid of example frames: one row per video, one column per chosen frame.

    Each row is titled with the video's label ("positive: the target ends in the goal" or "negative"); a thin
    white contour marks the target (mask id 2) so a reader can follow it.

    Parameters
    ----------
    data : videos (n, T, H, W, 3) uint8 with labels and masks.
    path : the PNG to write (its folder is created); written atomically.
    n_videos : rows (the first ``n_videos`` videos).
    frames : frame indices to show; ``None`` = 6 evenly spaced frames from the first to the last.

    Returns
    -------
    path : the PNG written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.jobs import atomic_path

    n = min(int(n_videos), len(data))
    if n < 1:
        raise ValueError("need at least one video to plot")
    total = data.videos.shape[1]
    shown = np.linspace(0, total - 1, min(6, total)).round().astype(int) if frames is None else np.asarray(frames)
    if shown.size == 0 or shown.min() < -total or shown.max() >= total:
        raise ValueError(f"frames must be indices into the {total} frames, got {list(shown)}")
    fig, axes = plt.subplots(n, shown.size, figsize=(1.5 * shown.size, 1.6 * n + 0.3), squeeze=False)
    for row in range(n):
        for col, t in enumerate(shown):
            ax = axes[row, col]
            ax.imshow(data.videos[row, t], interpolation="nearest")
            ax.contour(data.masks[row, t] == TARGET_ID, levels=[0.5], colors="white", linewidths=0.4)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_xlabel(f"frame {int(t) % total}", fontsize=7)
                ax.xaxis.set_label_position("top")
        label = int(data.labels[row])
        axes[row, 0].set_ylabel("positive" if label else "negative", fontsize=8)
        axes[row, shown.size // 2].set_title(
            f"video {row}: label {label} ({'the target ends in the goal' if label else 'another dot ends there'})",
            fontsize=8,
        )
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
