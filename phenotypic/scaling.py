"""Neural scaling laws for phenotypic drug discovery: a resumable data x model grid and the fits.

What is published and what is ours (see ``shared/reference/phenotypic.md``):

* **Published (reconstructed from the authors' plotting code, unverified against the paper):** accuracy of
  IBP-pretrained, probed models against the number of training wells, maximised over model size at each
  data level (a frontier), fitted with a straight line and extrapolated. The reference code regresses on
  the raw count; we fit the line in ``log10(wells)`` as the issue asks (:func:`fit_log_linear`), which is
  the local approximation the literature recommends over a line in raw counts.
* **Ours:** the saturating power law ``err = E + A * x**-alpha`` and a one-break broken neural scaling law
  (Caballero et al. 2022), all fitted by *summed* Huber loss on log residuals with L-BFGS-B from a grid of
  starts (Hoffmann et al. 2022, with Besiroglu et al. 2024's correction: sum, do not average), bootstrap
  percentile intervals (refitting on resampled grid cells; the reference code had none), the wells needed
  for a target accuracy with its interval, and a leave-largest-out extrapolation check. A warning is
  attached when the data span less than 1.5 decades (a reviewer criticism of the paper).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import logsumexp

from phenotypic.scaling_settings import GridConfig
from shared.figures import pyplot, save_figure
from shared.jobs import open_job
from shared.scaleout import dask_client, run_job_units
from shared.stdio import quiet_lightning

__all__ = [
    "GridConfig",
    "run_scaling_grid",
    "huber",
    "fit_log_linear",
    "fit_power_law",
    "fit_bnsl",
    "fit_scaling_laws",
    "plot_scaling",
    "frontier",
    "cell_line",
]


# ----------------------------------------------------------------------------------------------- fits
def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber loss per residual: r**2/2 inside ``delta``, linear outside."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def _best_of_starts(loss, starts: list[np.ndarray], bounds) -> np.ndarray:
    best, best_x = np.inf, None
    for s in starts:
        res = minimize(loss, s, method="L-BFGS-B", bounds=bounds)
        if np.isfinite(res.fun) and res.fun < best:
            best, best_x = res.fun, res.x
    if best_x is None:
        raise RuntimeError("every optimiser start failed")
    return best_x


def _check_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ValueError(f"need >= 3 points to fit a scaling law, got {len(x)}")
    if np.any(x <= 0) or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError("x must be positive and finite, y finite")
    return x, y


@dataclass
class Fit:
    """A fitted law: ``predict(x)`` gives accuracy; ``params`` its parameters."""

    name: str
    params: dict[str, float]
    predict_fn: object = field(repr=False)
    raw: np.ndarray | None = field(default=None, repr=False)

    def predict(self, x) -> np.ndarray:
        return self.predict_fn(np.asarray(x, float))


def fit_log_linear(x, y, *, delta: float = 0.01, start: np.ndarray | None = None) -> Fit:
    """Accuracy = a + b * log10(x), Huber loss (``delta`` in accuracy units).

    Examples
    --------
    >>> f = fit_log_linear([10, 100, 1000], [0.2, 0.4, 0.6])
    >>> round(f.params["slope_per_decade"], 3)
    0.2
    """
    x, y = _check_xy(x, y)
    lx = np.log10(x)
    b0, a0 = np.polyfit(lx, y, 1)
    p = _best_of_starts(
        lambda p: huber(y - p[0] - p[1] * lx, delta).sum(), [np.array([a0, b0])], [(None, None), (None, None)]
    )
    a, b = p
    return Fit("log-linear", {"intercept": a, "slope_per_decade": b}, lambda v: a + b * np.log10(v), p)


def fit_power_law(x, y, *, delta: float = 1e-3, start: np.ndarray | None = None) -> Fit:
    """Saturating power law on error: ``1 - acc = E + A * x**-alpha``.

    Fitted as log(err) ~ logsumexp(e, a - alpha log x) with summed Huber loss, L-BFGS-B, grid of starts.
    """
    x, y = _check_xy(x, y)
    err = np.clip(1 - y, 1e-6, None)
    lx, le = np.log(x), np.log(err)

    def pred_log(p, lx_):
        return logsumexp(np.stack([np.full_like(lx_, p[0]), p[1] - p[2] * lx_]), axis=0)

    starts = (
        [start]
        if start is not None
        else [
            np.array([e, a, al])
            for e in (np.log(err.min()) - 1,)
            for a in (le.max() + 1, le.max() + 4)
            for al in (0.2, 0.7)
        ]
    )
    p = _best_of_starts(lambda p: huber(pred_log(p, lx) - le, delta).sum(), starts, [(-20, 1), (-20, 30), (1e-4, 3.0)])
    return Fit(
        "power law + offset",
        {"E": float(np.exp(p[0])), "A": float(np.exp(p[1])), "alpha": float(p[2])},
        lambda v: 1 - np.exp(pred_log(p, np.log(v))),
        p,
    )


def fit_bnsl(x, y, *, delta: float = 1e-3, start: np.ndarray | None = None) -> Fit:
    """Broken neural scaling law with one break (Caballero et al. 2022) on error:
    ``err = E + b * x**-c0 * (1 + (x / d)**(1 / f))**(-c1 * f)``, summed Huber on log residuals."""
    x, y = _check_xy(x, y)
    err = np.clip(1 - y, 1e-6, None)
    lx, le = np.log(x), np.log(err)

    def pred_log(p, lx_):
        e, lb, c0, c1, ld, lf = p
        f = np.exp(lf)
        brk = -c1 * f * np.logaddexp(0, (lx_ - ld) / f)
        return np.logaddexp(e, lb - c0 * lx_ + brk)

    starts = (
        [start]
        if start is not None
        else [
            np.array([np.log(err.min()) - 1, le.max(), c0, c1, ld, 0.0])
            for c0 in (0.0, 0.3)
            for c1 in (0.1, 0.6)
            for ld in np.quantile(lx, [0.5])
        ]
    )
    p = _best_of_starts(
        lambda p: huber(pred_log(p, lx) - le, delta).sum(),
        starts,
        [(-20, 1), (-20, 30), (0, 3), (0, 3), (lx.min() - 2, lx.max() + 2), (-3, 3)],
    )
    names = ["E", "b", "c0", "c1", "d", "f"]
    vals = [np.exp(p[0]), np.exp(p[1]), p[2], p[3], np.exp(p[4]), np.exp(p[5])]
    return Fit(
        "broken neural scaling law",
        dict(zip(names, map(float, vals), strict=True)),
        lambda v: 1 - np.exp(pred_log(p, np.log(v))),
        p,
    )


_FITTERS = {"log-linear": fit_log_linear, "power law + offset": fit_power_law, "broken neural scaling law": fit_bnsl}


def _wells_for(fit: Fit, target: float, x_min: float) -> float:
    grid = np.logspace(np.log10(x_min), np.log10(x_min) + 8, 4000)
    hit = np.flatnonzero(fit.predict(grid) >= target)
    return float(grid[hit[0]]) if len(hit) else float("inf")


def _band(samples: np.ndarray, q: float) -> np.ndarray:
    """Percentile ``q`` over bootstrap samples (axis 0); NaN, without numpy's warning, when none was usable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(samples, q, axis=0)


def fit_scaling_laws(
    x,
    y,
    *,
    n_boot: int = 100,
    target_accuracy: float | None = None,
    seed: int = 0,
    laws: Sequence[str] = tuple(_FITTERS),
) -> dict:
    """Fit every law, with bootstrap intervals and a leave-largest-out extrapolation error.

    Parameters
    ----------
    x : ndarray of shape (n_points,), training wells per grid cell (or frontier point).
    y : ndarray of shape (n_points,), accuracy in [0, 1].
    n_boot : bootstrap resamples of the points (each refitted).
    target_accuracy : also report the wells needed to reach it (point estimate and 95% interval).

    Returns
    -------
    result : dict per law: ``params``, ``ci`` (2.5/97.5 percentiles per parameter), ``rmse``,
        ``extrapolation_error`` (|predicted - observed| at the largest x, fitted without it),
        ``curve`` (x grid, prediction, lower, upper); plus ``span_decades`` and ``warnings``.
    """
    x, y = _check_xy(x, y)
    rng = np.random.default_rng(seed)
    grid = np.logspace(np.log10(x.min()), np.log10(x.max()) + 1, 60)
    span = float(np.log10(x.max() / x.min()))
    out: dict = {"span_decades": span, "warnings": []}
    if span < 1.5:
        out["warnings"].append(f"x spans only {span:.2f} decades (< 1.5): extrapolations are unreliable")
    for law in laws:
        fitter = _FITTERS[law]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fitter(x, y)
            boots, curves, needs = [], [], []
            for _ in range(n_boot):
                idx = rng.integers(0, len(x), len(x))
                if len(np.unique(x[idx])) < 3:
                    continue
                b = fitter(x[idx], y[idx], start=fit.raw)
                boots.append(list(b.params.values()))
                curves.append(b.predict(grid))
                if target_accuracy is not None:
                    needs.append(_wells_for(b, target_accuracy, x.min()))
            largest = x == x.max()
            held = fitter(x[~largest], y[~largest]) if len(np.unique(x[~largest])) >= 3 else None
        boots_a = np.array(boots) if boots else np.full((1, len(fit.params)), np.nan)
        curves_a = np.array(curves) if curves else np.full((1, len(grid)), np.nan)
        entry = {
            "params": fit.params,
            "ci": {
                k: [float(_band(boots_a[:, i], 2.5)), float(_band(boots_a[:, i], 97.5))]
                for i, k in enumerate(fit.params)
            },
            "rmse": float(np.sqrt(np.mean((fit.predict(x) - y) ** 2))),
            "extrapolation_error": None
            if held is None
            else float(np.mean(np.abs(held.predict(x[largest]) - y[largest]))),
            "curve": {
                "x": grid.tolist(),
                "y": fit.predict(grid).tolist(),
                "lower": _band(curves_a, 2.5).tolist(),
                "upper": _band(curves_a, 97.5).tolist(),
            },
            "n_boot": len(boots),
        }
        if target_accuracy is not None:
            entry["wells_for_target"] = {
                "target": target_accuracy,
                "point": _wells_for(fit, target_accuracy, x.min()),
                "ci": [float(np.percentile(needs, 2.5)), float(np.percentile(needs, 97.5))] if needs else None,
            }
        out[law] = entry
    return out


def frontier(results: pd.DataFrame, *, x: str, y: str) -> pd.DataFrame:
    """Best ``y`` over model sizes at each ``x`` (the reference code's max over hyper-parameters)."""
    return results.loc[results.groupby(x)[y].idxmax(), [x, y]].sort_values(x).reset_index(drop=True)


def plot_scaling(
    results: pd.DataFrame,
    fits: dict,
    path: str | Path,
    *,
    x: str = "n_train_wells",
    series: Sequence[tuple[str, str]] = (("ibp_probe_top1", "IBP + probe"), ("supervised_top1", "task-supervised")),
    chance: str | None = "chance_top1",
) -> Path:
    """Accuracy against training wells for every grid cell, the fitted laws with 95% bootstrap bands."""
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    for (col, label), marker in zip(series, ("o", "s", "^"), strict=False):
        if col in results:
            ax.scatter(results[x], results[col], marker=marker, alpha=0.6, label=f"{label} (grid cells)")
    for law, style in zip(_FITTERS, ("-", "--", ":"), strict=True):
        if law in fits:
            c = fits[law]["curve"]
            (line,) = ax.plot(c["x"], c["y"], style, label=f"{law} fit")
            ax.fill_between(c["x"], c["lower"], c["upper"], color=line.get_color(), alpha=0.15)
    if chance and chance in results:
        ax.axhline(results[chance].mean(), color="grey", lw=1, label="chance (majority classes)")
    ax.set_xscale("log")
    ax.set_xlabel("training wells (IBP)")
    ax.set_ylabel("MoA deconvolution accuracy (test compounds)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Pheno-CA scaling (fits on the IBP frontier, 95% bootstrap bands)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, software="phenotypic scaling", dpi=110)


# ----------------------------------------------------------------------------------------------- grid
def _run_cell(release_root: str, cfg: GridConfig, fraction: float, width: int, depth: int) -> dict:
    """Train and score one grid cell (IBP + probe, and the supervised baseline); a dask task, so it takes
    plain values and returns the cell's row. Lightning's per-Trainer banners are silenced: the grid prints
    one line per cell itself."""
    with quiet_lightning():
        return _train_and_score_cell(release_root, cfg, fraction, width, depth)


def _train_and_score_cell(release_root: str, cfg: GridConfig, fraction: float, width: int, depth: int) -> dict:
    from phenotypic.datamodule import PhenoDataModule
    from phenotypic.experiment import train_module, well_embeddings, well_scores
    from phenotypic.ibp import IBPModule
    from phenotypic.tasks import probe_task, topk_hits

    started = time.perf_counter()
    common = dict(
        release_root=release_root, split=cfg.split, data_fraction=fraction, batch_size=cfg.batch_size, seed=cfg.seed
    )
    ibp_dm = PhenoDataModule(label="compound", **common)
    ibp_dm.setup()
    ibp = train_module(IBPModule(width=width, depth=depth, lr=cfg.lr), ibp_dm, max_steps=cfg.max_steps, seed=cfg.seed)
    probe = probe_task(
        well_embeddings(ibp, ibp_dm),
        ibp_dm.dataset.meta,
        ibp_dm.splits,
        task="moa",
        kind=cfg.probe,
        k=cfg.k,
        seed=cfg.seed,
    )
    sup_dm = PhenoDataModule(label="moa", **common)
    sup_dm.setup()
    sup = train_module(IBPModule(width=width, depth=depth, lr=cfg.lr), sup_dm, max_steps=cfg.max_steps, seed=cfg.seed)
    test = sup_dm.splits["test"]
    test = test[sup_dm.dataset.annotated[test]]
    scores = well_scores(sup, sup_dm)[test]
    y = sup_dm.y[test]
    n_params = sum(p.numel() for p in ibp.net["encoder"].parameters())
    return {
        "fraction": fraction,
        "width": width,
        "depth": depth,
        "encoder_params": int(n_params),
        "n_train_wells": int(len(ibp_dm.fit_index["train"])),
        "n_train_annotated_wells": int(len(sup_dm.fit_index["train"])),
        "ibp_probe_top1": probe["top1"],
        "ibp_probe_topk": probe["topk"],
        "supervised_top1": float(topk_hits(scores, y, 1).mean()),
        "supervised_topk": float(topk_hits(scores, y, cfg.k).mean()),
        "chance_top1": probe["chance_top1"],
        "chance_topk": probe["chance_topk"],
        "n_test_wells": int(len(test)),
        "seconds": time.perf_counter() - started,
    }


def cell_line(done: int, total: int, key: str, row: dict) -> str:
    """The one line the grid prints for a finished cell.

    Examples
    --------
    >>> cell_line(2, 8, "f0.5_w64_d2", {"ibp_probe_top1": 0.41, "supervised_top1": 0.38, "chance_top1": 0.2,
    ...                                 "n_train_wells": 720, "seconds": 41.23})
    'scaling grid [2/8] f0.5_w64_d2: 720 wells, IBP+probe top-1 0.410, supervised 0.380, chance 0.200 (41.2 s)'
    """
    return (
        f"scaling grid [{done}/{total}] {key}: {row['n_train_wells']} wells, IBP+probe top-1 "
        f"{row['ibp_probe_top1']:.3f}, supervised {row['supervised_top1']:.3f}, chance "
        f"{row['chance_top1']:.3f} ({row['seconds']:.1f} s)"
    )


def run_scaling_grid(
    release_root: str | Path,
    out_dir: str | Path,
    config: GridConfig | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    wait: bool = False,
    workers: int = 0,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Run (or resume) the grid, a :mod:`shared.jobs` job with one unit per cell: ``out_dir/cells/<cell>.json``
    per finished cell; ``results.csv`` gathers them.

    The grid's configuration and release path are the job's settings: resuming with different ones raises
    (:class:`shared.jobs.JobConfigError`) instead of mixing incomparable cells, unless ``overwrite``. A cell
    that fails is recorded and retried on the next run; the others still finish.

    Parameters
    ----------
    progress : print one line per finished cell (to standard error), nothing else per cell.
    workers, scheduler : run the cells serially here (``workers=0``, the default), on a dask ``LocalCluster``
        of ``workers`` processes, or on a running dask ``scheduler`` (``tcp://host:8786``; every worker must
        see ``release_root``); see :mod:`shared.scaleout`. Each cell is seeded alone, so the results do not
        depend on where it ran (one torch thread per process: dask workers run with one).

    Returns
    -------
    results : DataFrame, one row per finished cell.

    Raises
    ------
    shared.jobs.JobIncompleteError : some cells failed (after ``results.csv`` is written for the others).
    """
    cfg = config or GridConfig()
    release = Path(release_root)
    if not (release / "metadata").is_dir():
        raise FileNotFoundError(f"release {release} has no metadata/ folder; run `phenotypic simulate` first")
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    ident = {"release_root": str(release.resolve()), **asdict(cfg)}
    cells = {
        f"f{f:g}_w{w}_d{d}": {"fraction": f, "width": w, "depth": d}
        for f in cfg.fractions
        for w in cfg.widths
        for d in cfg.depths
    }
    with open_job(out_dir, "phenotypic scaling", ident, overwrite=overwrite, wait=wait) as job:
        n_done = len(set(cells) & job.done_units())
        if progress and n_done:
            todo = f"running the other {len(cells) - n_done}" if n_done < len(cells) else "nothing to run"
            print(f"scaling grid: {n_done} of {len(cells)} cells done earlier; {todo}", file=sys.stderr, flush=True)

        def save(key: str, row: dict) -> None:
            nonlocal n_done
            job.write_json(f"cells/{key}.json", row)
            n_done += 1
            if progress:
                print(cell_line(n_done, len(cells), key, row), file=sys.stderr, flush=True)

        pending = n_done < len(cells)
        with dask_client(workers=workers, scheduler=scheduler) if pending else contextlib.nullcontext() as client:
            report = run_job_units(
                job,
                cells,
                _run_cell,
                save,
                common={"release_root": ident["release_root"], "cfg": cfg},
                client=client,
                desc="scaling grid",
                progress=False,
            )
        done = job.done_units()
        rows = [json.loads((job.root / "cells" / f"{key}.json").read_text()) for key in cells if key in done]
        results = pd.DataFrame(rows)
        if len(results):
            results = results.sort_values(["fraction", "width", "depth"]).reset_index(drop=True)
            job.write_table("results.csv", results)
        report.raise_if_incomplete()
    return results
