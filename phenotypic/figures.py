"""The figure of ``phenotypic evaluate``: every Pheno-CA task against its chance level, per representation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from shared.figures import pyplot, save_figure

__all__ = ["task_score", "plot_tasks"]


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def task_score(row: dict) -> tuple[float, float | None, str]:
    """The score of a results row that has a chance level, that level, and the score's name.

    Deconvolution and rediscovery rows compare ``top1`` with ``chance_top1`` (top-1 accuracy; rediscovery's
    mAP with the partner share). The retrieval rows (phenotypic activity and consistency) have no chance level
    for their fraction retrieved, so their mAP (``topk``) is compared with the expected mAP (``chance_topk``).

    Examples
    --------
    >>> task_score({"metric": "top1 / top3", "top1": 0.5, "chance_top1": 0.2, "topk": 0.9})
    (0.5, 0.2, 'top-1 accuracy')
    >>> task_score({"metric": "fraction retrieved / mAP", "top1": 0.4, "topk": 0.3, "chance_topk": 0.1})
    (0.3, 0.1, 'mAP')
    """
    chance_top1 = _number(row.get("chance_top1"))
    if chance_top1 is not None or _number(row.get("chance_topk")) is None:
        name = "mAP" if row.get("metric") == "mAP" else "top-1 accuracy"
        return float(row["top1"]), chance_top1, name
    return float(row["topk"]), _number(row["chance_topk"]), "mAP"


def plot_tasks(rows: Sequence[dict], path: str | Path) -> Path:
    """One panel per task: a bar per representation (and probe), a black tick at that bar's chance level.

    Parameters
    ----------
    rows : the rows of ``tasks.json`` (``representation``, ``task``, ``probe``, ``metric``, scores).
    path : the PNG written (atomically).

    Examples
    --------
    >>> import tempfile
    >>> rows = [{"representation": r, "task": "moa deconvolution", "probe": "linear", "metric": "top1 / top3",
    ...          "top1": s, "chance_top1": 0.2} for r, s in (("IBP", 0.6), ("CellProfiler", 0.4))]
    >>> plot_tasks(rows, Path(tempfile.mkdtemp()) / "tasks.png").suffix
    '.png'
    """
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    representations = list(dict.fromkeys(r["representation"] for r in rows))
    colors = {name: f"C{i}" for i, name in enumerate(representations)}
    n_cols = min(3, len(tasks))
    n_rows = math.ceil(len(tasks) / n_cols)
    bars = max(sum(r["task"] == t for r in rows) for t in tasks)
    plt = pyplot()
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(4.6 * n_cols, 0.9 + 0.42 * bars * n_rows + 0.5 * n_rows), squeeze=False
    )
    for ax, task in zip(axes.flat, tasks, strict=False):
        mine = [r for r in rows if r["task"] == task]
        names = []
        for y, row in enumerate(mine):
            score, chance, metric = task_score(row)
            ax.barh(y, score, color=colors[row["representation"]], height=0.7)
            ax.text(min(score, 1) + 0.01, y, f"{score:.2f}", va="center", fontsize=7)
            if chance is not None:
                ax.plot([chance, chance], [y - 0.42, y + 0.42], color="black", lw=2)
            probe = "" if row["probe"] in ("none", None) else f" ({row['probe']})"
            names.append(f"{row['representation']}{probe}")
        ax.set_yticks(range(len(mine)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.1)
        ax.set_xlabel(metric, fontsize=8)
        ax.set_title(task, fontsize=9)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    fig.suptitle("Pheno-CA tasks on the test split: score (bars) against chance (black ticks)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, software="phenotypic evaluate")
