"""Place games on the Perceptual-Challenge x RL-Challenge plane, label and cluster them, draw the figure.

Labels are ours (LCD-style, never the paper's taxonomy): an axis is ``high`` or ``low`` only when its
bootstrap interval excludes the threshold (default 0.5, or ``"median"``: the across-game median of the
point estimates), else ``uncertain``. Quadrants: ``solved`` (low PLC, low RLC), ``perception-limited``
(high PLC, low RLC), ``RL-limited`` (low PLC, high RLC), ``both``. ``stability`` is the share of bootstrap
resamples that fall in the quadrant of the point estimate. Clusters come from scipy's hierarchical
clustering (average linkage) of the (PLC, RLC) points.

**Insufficient data.** A bootstrap over one seed has zero width, and a NaN AUC carries no information, so
a game gets no axis label, quadrant, stability or cluster unless every condition its PLC uses
(``pix`` and ``simp``; ``bc`` too unless ``plc="gap"``) has at least :data:`MIN_SEEDS` seeds with a finite
AUC. Such games (and games with a condition unfinished) are listed as ``"insufficient data"`` with the
reason in the ``note`` column, in the CSV, the JSON, the console and the figure.

Outputs in the diagnosis folder: ``taxonomy.csv``, ``taxonomy.json`` and ``taxonomy.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rldiag.diagnose import CONDITIONS, load_results, summarize
from rldiag.envs import GAMES
from shared.jobs import atomic_path, atomic_write_table, atomic_write_text

#: Fewest seeds with a finite AUC, per condition used, before a game is placed in a quadrant.
MIN_SEEDS = 2
INSUFFICIENT = "insufficient data"

QUADRANTS = {
    (False, False): "solved",
    (True, False): "perception-limited",
    (False, True): "RL-limited",
    (True, True): "both",
}


def axis_label(low: float, high: float, threshold: float) -> str:
    """``high``/``low`` if the interval ``[low, high]`` excludes ``threshold``, else ``uncertain``."""
    if low > threshold:
        return "high"
    if high < threshold:
        return "low"
    return "uncertain"


def cluster_games(points: np.ndarray, n_clusters: int) -> np.ndarray:
    """Hierarchical clusters (average linkage, Euclidean) of ``(n_games, 2)`` points; labels 1..k."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(points) < 2:
        return np.ones(len(points), dtype=int)
    return fcluster(linkage(points, method="average"), t=min(n_clusters, len(points)), criterion="maxclust")


def build_taxonomy(
    out_dir: str | Path,
    *,
    threshold: float | str = 0.5,
    plc: str = "mean",
    n_boot: int = 2000,
    ci: float = 0.95,
    n_clusters: int = 4,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per diagnosed game: scores, intervals, axis labels, quadrant, stability and cluster.

    Parameters
    ----------
    out_dir : path
        A folder written by ``rldiag diagnose``.
    threshold : float or "median"
        Where an axis turns from low to high.
    plc, n_boot, ci, seed :
        Passed to :func:`rldiag.diagnose.summarize`.
    n_clusters : int
        Maximum number of clusters.
    """
    rows, samples = summarize(out_dir, plc=plc, n_boot=n_boot, ci=ci, seed=seed)
    for row in rows:
        row["note"] = insufficiency(row, plc)
    rows += _unscored_rows(load_results(out_dir), {row["game"] for row in rows})
    if not rows:
        raise ValueError(f"no finished cell in {out_dir}; run rldiag diagnose first")
    table = pd.DataFrame(sorted(rows, key=lambda row: GAMES.index(row["game"])))
    for score in ("PLC", "RLC"):  # present even when no game could be scored
        for column in (score, f"{score}_low", f"{score}_high"):
            if column not in table:
                table[column] = np.nan
    placed = table["note"] == ""
    # a percentile bootstrap over fewer than MIN_SEEDS seeds has zero width: report no interval at all
    one_seed = table["n_seeds"] < MIN_SEEDS
    for column in [c for c in table if c.endswith(("_low", "_high"))]:
        table.loc[one_seed, column] = np.nan
    if threshold == "median":
        plc_t, rlc_t = (float(table.loc[placed, k].median()) for k in ("PLC", "RLC"))
        # the median moves with every resample: recompute it per resample for the stability
        stacked = np.stack([samples[g] for g in table.loc[placed, "game"]]) if placed.any() else None
        boot_thresholds = np.median(stacked, axis=0) if stacked is not None else None  # (n_boot, 2)
    elif isinstance(threshold, int | float):
        plc_t = rlc_t = float(threshold)
        boot_thresholds = None
    else:
        raise ValueError(f"threshold must be a number or 'median', got {threshold!r}")
    plc_axis, rlc_axis, quadrants, stability = [], [], [], []
    for (_, row), ok in zip(table.iterrows(), placed):
        if not ok:
            plc_axis.append(INSUFFICIENT)
            rlc_axis.append(INSUFFICIENT)
            quadrants.append(INSUFFICIENT)
            stability.append(float("nan"))
            continue
        plc_axis.append(axis_label(row["PLC_low"], row["PLC_high"], plc_t))
        rlc_axis.append(axis_label(row["RLC_low"], row["RLC_high"], rlc_t))
        quadrant = QUADRANTS[(row["PLC"] > plc_t, row["RLC"] > rlc_t)]
        s = samples[row["game"]]
        t = boot_thresholds if boot_thresholds is not None else np.array([[plc_t, rlc_t]])
        in_quadrant = ((s[:, 0] > t[:, 0]) == (row["PLC"] > plc_t)) & ((s[:, 1] > t[:, 1]) == (row["RLC"] > rlc_t))
        certain = "uncertain" not in (plc_axis[-1], rlc_axis[-1])
        quadrants.append(quadrant if certain else f"uncertain (nearest: {quadrant})")
        stability.append(float(in_quadrant.mean()))
    table["PLC_axis"], table["RLC_axis"] = plc_axis, rlc_axis
    table["quadrant"] = quadrants
    table["stability"] = stability
    clusters = pd.Series(pd.NA, index=table.index, dtype="Int64")  # no cluster for unplaced games
    if placed.any():
        clusters[placed] = cluster_games(table.loc[placed, ["PLC", "RLC"]].to_numpy(), n_clusters)
    table["cluster"] = clusters
    table.attrs.update(plc_threshold=plc_t, rlc_threshold=rlc_t, plc=plc, ci=ci, n_boot=n_boot, min_seeds=MIN_SEEDS)
    return table


def _unscored_rows(results: list[dict[str, Any]], scored: set[str]) -> list[dict[str, Any]]:
    """Rows for games that :func:`rldiag.diagnose.summarize` could not score (a condition without data)."""
    rows = []
    for game in sorted({r["game"] for r in results} - scored, key=GAMES.index):
        finite = {
            c: sum(1 for r in results if (r["game"], r["condition"]) == (game, c) and np.isfinite(r["auc"]))
            for c in CONDITIONS
        }
        bc_ran = any((r["game"], r["condition"]) == (game, "bc") for r in results)
        missing = [f"{c} (no finite AUC)" for c in ("pix", "simp") if not finite[c]]
        missing += [] if bc_ran else ["bc (not run)"]
        rows.append(
            {
                "game": game,
                "n_seeds": min(finite["pix"], finite["simp"]),
                "n_seeds_bc": finite["bc"],
                "note": f"unscored: {', '.join(missing)}",
            }
        )
    return rows


def insufficiency(row: dict[str, Any], plc: str) -> str:
    """Why a :func:`rldiag.diagnose.summarize` row cannot be placed in a quadrant ("" if it can).

    Examples
    --------
    >>> insufficiency({"n_seeds": 1, "n_seeds_bc": 2}, "mean")
    '1 seed with a finite pix/simp AUC (need >= 2)'
    >>> insufficiency({"n_seeds": 3, "n_seeds_bc": 0}, "gap")
    ''
    """
    reasons = []
    if row["n_seeds"] < MIN_SEEDS:
        seeds = "seed" if row["n_seeds"] == 1 else "seeds"
        reasons.append(f"{row['n_seeds']} {seeds} with a finite pix/simp AUC (need >= {MIN_SEEDS})")
    if plc != "gap" and row["n_seeds_bc"] == 0:
        reasons.append("bc AUC NaN in every seed (the expert always takes one action): try --plc gap")
    elif plc != "gap" and row["n_seeds_bc"] < MIN_SEEDS:
        reasons.append(f"{row['n_seeds_bc']} seed with a finite bc AUC (need >= {MIN_SEEDS})")
    return "; ".join(reasons)


def plot_taxonomy(table: pd.DataFrame, path: str | Path, *, title: str = "LCD-style taxonomy (rldiag)") -> Path:
    """Scatter games on (PLC, RLC) with bootstrap intervals, threshold lines and cluster colours; PNG.

    Games with insufficient data are hollow grey markers without intervals, labelled as such; those
    without a point estimate are listed under the plot. Labels are placed so they do not overlap.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    # one dpi for placing the labels and for saving: label sizes are measured in display pixels
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    colors = plt.get_cmap("tab10")
    points, labels, unplotted = [], [], []
    for _, row in table.iterrows():
        if not np.isfinite([row["PLC"], row["RLC"]]).all():
            unplotted.append(row["game"])
            continue
        if row["quadrant"] == INSUFFICIENT:
            ax.plot(row["PLC"], row["RLC"], "o", mfc="none", mec="grey", ms=7)
            labels.append(f"{row['game']} ({INSUFFICIENT})")
        else:
            ax.errorbar(
                row["PLC"],
                row["RLC"],
                xerr=[[row["PLC"] - row["PLC_low"]], [row["PLC_high"] - row["PLC"]]],
                yerr=[[row["RLC"] - row["RLC_low"]], [row["RLC_high"] - row["RLC"]]],
                fmt="o",
                color=colors((int(row["cluster"]) - 1) % 10),
                capsize=3,
                alpha=0.9,
            )
            labels.append(row["game"])
        points.append((row["PLC"], row["RLC"]))
    for value, line in (
        (table.attrs.get("plc_threshold", 0.5), ax.axvline),
        (table.attrs.get("rlc_threshold", 0.5), ax.axhline),
    ):
        if np.isfinite(value):
            line(value, color="grey", ls="--", lw=1)
    # quadrant names in bands outside [0, 1]^2, where no game can sit
    for x, y, text in (
        (0.25, -0.09, "solved"),
        (0.75, -0.09, "perception-limited"),
        (0.25, 1.09, "RL-limited"),
        (0.75, 1.09, "both"),
    ):
        ax.text(x, y, text, ha="center", va="center", color="grey", fontsize=9)
    ax.set(
        xlim=(-0.05, 1.05),
        ylim=(-0.14, 1.14),
        xlabel="Perceptual Learning Challenge (PLC, ours)",
        ylabel="RL Challenge (RLC, ours)",
        title=title,
    )
    if unplotted:
        fig.text(0.5, 0.01, f"{INSUFFICIENT}, no point estimate: {', '.join(unplotted)}", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04 if unplotted else 0, 1, 1))
    place_labels(ax, np.array(points).reshape(-1, 2), labels)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=fig.dpi, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def place_labels(ax, points: np.ndarray, labels: list[str], *, fontsize: int = 9) -> list:
    """Annotate ``(n, 2)`` data points so that no two labels overlap each other or another point.

    Greedy: each label takes the first free spot on rings of growing radius (in points) around its
    point, inside the axes, with a leader line once it sits away from the point. Sizes are measured with
    the figure's renderer, so save at the figure's dpi. Returns the annotations.
    """
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    to_display = ax.transData.transform
    marker_boxes = [Bbox.from_bounds(x - 5, y - 5, 10, 10) for x, y in to_display(points)] if len(points) else []
    axes_box = ax.get_window_extent(renderer)
    placed: list = []
    annotations = []
    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    leader = {"arrowstyle": "-", "color": "grey", "lw": 0.6, "shrinkA": 0, "shrinkB": 3}
    for (x, y), text in zip(points, labels):
        chosen = None
        for radius in (6, 14, 24, 36, 50, 66, 84, 104, 126):
            for dx, dy in directions:
                ann = ax.annotate(
                    text,
                    (x, y),
                    xytext=(dx * radius, dy * radius),
                    textcoords="offset points",
                    ha="left" if dx > 0 else "right" if dx < 0 else "center",
                    va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                    fontsize=fontsize,
                    # a leader line once the label sits away from its point
                    arrowprops=leader if radius > 14 else None,
                )
                ann.update_positions(renderer)
                box = Text.get_window_extent(ann, renderer)  # the text alone, without the leader line
                if axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1):
                    if not any(box.overlaps(other) for other in placed + marker_boxes):
                        chosen = ann
                        break
                ann.remove()
            if chosen is not None:
                break
        if chosen is None:  # crowded beyond every ring: the first spot (every value is in the CSV too)
            chosen = ax.annotate(text, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=fontsize)
        chosen.update_positions(renderer)
        placed.append(Text.get_window_extent(chosen, renderer))
        annotations.append(chosen)
    return annotations


def plot_learning_curves(out_dir: str | Path, path: str | Path) -> Path:
    """Per game: normalised return vs env steps (pix, simp; mean and per seed) and BC score vs frames.

    A NaN AUC reads "AUC n/a"; a panel without any finite point says why instead of staying blank.
    """
    import matplotlib.pyplot as plt

    results = load_results(out_dir)
    games = sorted({r["game"] for r in results}, key=GAMES.index)
    fig, axes = plt.subplots(len(games), 2, figsize=(10, 2.6 * len(games)), squeeze=False)
    style = {
        "pix": ("C0", "PPO, standard pixels"),
        "simp": ("C1", "PPO, simplified"),
        "bc": ("C2", "BC of expert, pixels"),
    }
    empty_reason = {
        0: "no episode finished within the budget",
        1: "no informative BC curve: the expert always takes one action",
    }
    for gi, game in enumerate(games):
        has_points = [False, False]
        for r in (r for r in results if r["game"] == game):
            panel = 1 if r["condition"] == "bc" else 0
            color, label = style[r["condition"]]
            auc = f"AUC {r['auc']:.2f}" if np.isfinite(r["auc"]) else "AUC n/a"
            y = np.asarray(r["y"], dtype=np.float64)
            has_points[panel] |= bool(np.isfinite(y).any())
            if r.get("budget"):  # the whole budget, also for a panel with nothing to draw
                axes[gi, panel].set_xlim(0, r["budget"])
            axes[gi, panel].plot(
                r["x"], y, "-o", ms=3, color=color, alpha=0.8, label=f"{label} (seed {r['seed']}, {auc})"
            )
        axes[gi, 0].set(title=f"{game}: RL", xlabel="env steps", ylabel="normalised return", ylim=(-0.05, 1.05))
        axes[gi, 1].set(
            title=f"{game}: behavioural cloning",
            xlabel="labelled frames seen",
            ylabel="chance-corrected agreement",
            ylim=(-0.05, 1.05),
        )
        for panel, ax in enumerate(axes[gi]):
            if has_points[panel]:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, empty_reason[panel], transform=ax.transAxes, ha="center", va="center", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def write_taxonomy(out_dir: str | Path, **kwargs: Any) -> dict[str, Path]:
    """Build the taxonomy of a diagnosis folder and write ``taxonomy.{csv,json,png}`` and ``curves.png``
    (each atomically: a reader never sees half a file; a rerun replaces them, as they are derived)."""
    out_dir = Path(out_dir)
    table = build_taxonomy(out_dir, **kwargs)
    paths = {
        "csv": out_dir / "taxonomy.csv",
        "json": out_dir / "taxonomy.json",
        "png": out_dir / "taxonomy.png",
        "curves": out_dir / "curves.png",
    }
    atomic_write_table(paths["csv"], table)
    insufficient = table[table["quadrant"] == INSUFFICIENT]
    atomic_write_text(
        paths["json"],
        json.dumps(
            {
                "settings": table.attrs,
                "games": [
                    {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in table.to_dict(orient="records")
                ],
                # games with a condition unfinished or without a finite AUC in any seed
                "incomplete_games": insufficient.loc[insufficient["PLC"].isna(), "game"].tolist(),
                INSUFFICIENT: dict(zip(insufficient["game"], insufficient["note"])),
                "note": "rldiag's own PLC/RLC definitions (LCD-style), not the published paper's formulas",
            },
            indent=1,
            default=float,
        ),
    )
    plot_taxonomy(table, paths["png"])
    plot_learning_curves(out_dir, paths["curves"])
    return paths
