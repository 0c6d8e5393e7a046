"""Place games on the Perceptual-Challenge x RL-Challenge plane, label and cluster them, draw the figure.

Labels are ours (LCD-style, never the paper's taxonomy): an axis is ``high`` or ``low`` only when its
bootstrap interval excludes the threshold (default 0.5, or ``"median"``: the across-game median of the
point estimates), else ``uncertain``. Quadrants: ``solved`` (low PLC, low RLC), ``perception-limited``
(high PLC, low RLC), ``RL-limited`` (low PLC, high RLC), ``both``. ``stability`` is the share of bootstrap
resamples that fall in the quadrant of the point estimate. Clusters come from scipy's hierarchical
clustering (average linkage) of the (PLC, RLC) points.

Outputs in the diagnosis folder: ``taxonomy.csv``, ``taxonomy.json`` and ``taxonomy.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rldiag.diagnose import summarize

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
    if not rows:
        raise ValueError(f"no game in {out_dir} has all three conditions finished; run rldiag diagnose first")
    table = pd.DataFrame(rows)
    if threshold == "median":
        plc_t, rlc_t = float(table["PLC"].median()), float(table["RLC"].median())
        # the median moves with every resample: recompute it per resample for the stability
        stacked = np.stack([samples[g] for g in table["game"]])  # (games, n_boot, 2)
        boot_thresholds = np.median(stacked, axis=0)  # (n_boot, 2)
    elif isinstance(threshold, int | float):
        plc_t = rlc_t = float(threshold)
        boot_thresholds = None
    else:
        raise ValueError(f"threshold must be a number or 'median', got {threshold!r}")
    table["PLC_axis"] = [axis_label(lo, hi, plc_t) for lo, hi in zip(table["PLC_low"], table["PLC_high"])]
    table["RLC_axis"] = [axis_label(lo, hi, rlc_t) for lo, hi in zip(table["RLC_low"], table["RLC_high"])]
    quadrants, stability = [], []
    for _, row in table.iterrows():
        quadrant = QUADRANTS[(row["PLC"] > plc_t, row["RLC"] > rlc_t)]
        s = samples[row["game"]]
        t = boot_thresholds if boot_thresholds is not None else np.array([[plc_t, rlc_t]])
        in_quadrant = ((s[:, 0] > t[:, 0]) == (row["PLC"] > plc_t)) & ((s[:, 1] > t[:, 1]) == (row["RLC"] > rlc_t))
        certain = "uncertain" not in (row["PLC_axis"], row["RLC_axis"])
        quadrants.append(quadrant if certain else f"uncertain (nearest: {quadrant})")
        stability.append(float(in_quadrant.mean()))
    table["quadrant"] = quadrants
    table["stability"] = stability
    table["cluster"] = cluster_games(table[["PLC", "RLC"]].to_numpy(), n_clusters)
    table.attrs.update(plc_threshold=plc_t, rlc_threshold=rlc_t, plc=plc, ci=ci, n_boot=n_boot)
    return table


def plot_taxonomy(table: pd.DataFrame, path: str | Path, *, title: str = "LCD-style taxonomy (rldiag)") -> Path:
    """Scatter games on (PLC, RLC) with bootstrap intervals, threshold lines and cluster colours; PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    colors = plt.get_cmap("tab10")
    for _, row in table.iterrows():
        c = colors((int(row["cluster"]) - 1) % 10)
        ax.errorbar(
            row["PLC"],
            row["RLC"],
            xerr=[[row["PLC"] - row["PLC_low"]], [row["PLC_high"] - row["PLC"]]],
            yerr=[[row["RLC"] - row["RLC_low"]], [row["RLC_high"] - row["RLC"]]],
            fmt="o",
            color=c,
            capsize=3,
            alpha=0.9,
        )
        ax.annotate(row["game"], (row["PLC"], row["RLC"]), textcoords="offset points", xytext=(5, 5), fontsize=9)
    ax.axvline(table.attrs.get("plc_threshold", 0.5), color="grey", ls="--", lw=1)
    ax.axhline(table.attrs.get("rlc_threshold", 0.5), color="grey", ls="--", lw=1)
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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curves(out_dir: str | Path, path: str | Path) -> Path:
    """Per game: normalised return vs env steps (pix, simp; mean and per seed) and BC score vs frames."""
    import matplotlib.pyplot as plt

    from rldiag.diagnose import load_results

    results = load_results(out_dir)
    games = sorted({r["game"] for r in results})
    fig, axes = plt.subplots(len(games), 2, figsize=(10, 2.6 * len(games)), squeeze=False)
    style = {
        "pix": ("C0", "PPO, standard pixels"),
        "simp": ("C1", "PPO, simplified"),
        "bc": ("C2", "BC of expert, pixels"),
    }
    for gi, game in enumerate(games):
        for r in (r for r in results if r["game"] == game):
            ax = axes[gi, 1 if r["condition"] == "bc" else 0]
            color, label = style[r["condition"]]
            ax.plot(
                r["x"],
                r["y"],
                "-o",
                ms=3,
                color=color,
                alpha=0.8,
                label=f"{label} (seed {r['seed']}, AUC {r['auc']:.2f})",
            )
        axes[gi, 0].set(title=f"{game}: RL", xlabel="env steps", ylabel="normalised return", ylim=(-0.05, 1.05))
        axes[gi, 1].set(
            title=f"{game}: behavioural cloning",
            xlabel="labelled frames seen",
            ylabel="chance-corrected agreement",
            ylim=(-0.05, 1.05),
        )
        for ax in axes[gi]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_taxonomy(out_dir: str | Path, **kwargs: Any) -> dict[str, Path]:
    """Build the taxonomy of a diagnosis folder and write ``taxonomy.{csv,json,png}`` and ``curves.png``."""
    out_dir = Path(out_dir)
    table = build_taxonomy(out_dir, **kwargs)
    paths = {
        "csv": out_dir / "taxonomy.csv",
        "json": out_dir / "taxonomy.json",
        "png": out_dir / "taxonomy.png",
        "curves": out_dir / "curves.png",
    }
    table.to_csv(paths["csv"], index=False)
    from rldiag.diagnose import load_results

    # games with a condition missing, or no finished episode in every seed of one: not placed, but listed
    incomplete = sorted({r["game"] for r in load_results(out_dir)} - set(table["game"]))
    paths["json"].write_text(
        json.dumps(
            {
                "settings": table.attrs,
                "games": [
                    {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
                    for row in table.to_dict(orient="records")
                ],
                "incomplete_games": incomplete,
                "note": "rldiag's own PLC/RLC definitions (LCD-style), not the published paper's formulas",
            },
            indent=1,
            default=float,
        )
    )
    plot_taxonomy(table, paths["png"])
    plot_learning_curves(out_dir, paths["curves"])
    return paths
