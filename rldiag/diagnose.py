"""The diagnostics: per game and seed, three learning curves -> Perceptual and RL Challenge scores.

These are **our** LCD-style definitions (Govindarajan et al., arXiv 2309.13181, measure perceptual and RL
demands separately; their exact formulas, budgets and taxonomy could not be read here, so nothing below is
attributed to the paper and every choice is configurable).

Conditions, per (game, seed), each a *cell* with one atomic result file:

* ``pix``: PPO on standard pixels, from random initialisation, for ``budget`` env steps.
* ``simp``: the same PPO on perceptually simplified frames (no backgrounds, one theme, monochrome
  sprites; :data:`rldiag.envs.SIMPLIFIED_OPTIONS`).
* ``bc``: behavioural cloning, from standard pixels and a fresh encoder, of the **expert**'s actions on
  ``bc_frames`` labelled frames. The expert is, by default, the final ``pix`` policy of the same game and
  seed (the reference's "converged PIX expert"; converged only at full budgets), or a user-supplied
  checkpoint (``expert_checkpoint``, e.g. a 25M-step ``rldiag train`` run). So ``bc`` runs after ``pix``.

Scores (:func:`normalized_auc`, :func:`challenge_scores`):

* RL curves: mean return of the episodes finished in each PPO iteration, normalised with the published
  per-game ``(R_min, R_max)`` (:mod:`rldiag.normalization`), clipped to [0, 1], against env steps.
* BC curve: top-1 agreement with the expert on held-out trajectories, chance-corrected by the majority
  rate ``m`` (always predicting the expert's commonest action): ``(agreement - m) / (1 - m)``, clipped.
* ``AUC_c``: trapezoid area under the curve over ``[0, T_c]`` divided by ``T_c`` (the curve is held flat
  before its first and after its last point); compared only at equal budgets.
* ``RLC = 1 - AUC_simp``: how hard learning stays with perception made easy.
* ``PLC_gap = max(0, AUC_simp - AUC_pix)``: what standard pixels cost under RL; ``PLC_bc = 1 - AUC_bc``:
  how hard it is to learn to see the expert's decisions with perfect credit assignment.
  ``PLC = mean(PLC_gap, PLC_bc)`` (``plc="mean"``, default), or either alone (``"gap"``, ``"bc"``).
  A ``bc`` cell whose expert always takes the same action (a barely trained expert: common at smoke
  budgets) is uninformative: its AUC is NaN and the mean falls back to ``PLC_gap`` (``PLC_basis``); the
  taxonomy then reports the game as "insufficient data" unless ``plc="gap"`` (:mod:`rldiag.taxonomy`).
* Intervals: percentile bootstrap over seeds, resampling each condition's seeds independently (a single
  seed gives a zero-width interval; the taxonomy needs >= 2 seeds with a finite AUC per condition).

Caveat: ``simp`` still learns from pixels, so RLC overstates pure RL difficulty (procgen exposes no
parsed state: :data:`rldiag.envs.PRIVILEGED_STATE_GAMES` is empty).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rldiag.envs import GAMES, check_procgen_options
from rldiag.normalization import SOURCE, normalize_return
from shared.jobs import Job, atomic_write_json
from shared.validation import check_choice

COMMAND = "rldiag diagnose"
CONDITIONS = ("pix", "simp", "bc")
PLC_MODES = ("mean", "gap", "bc")

#: Presets for the PPO scale; ``auto`` picks ``gpu-full`` with CUDA, else ``cpu-smoke``.
PRESETS: dict[str, dict[str, Any]] = {
    # CleanRL ppo_procgen.py settings (IMPALA CNN, 64 envs x 256 steps).
    "gpu-full": {
        "encoder": "impala",
        "num_envs": 64,
        "num_steps": 256,
        "num_minibatches": 8,
        "update_epochs": 3,
    },
    # Minutes on a laptop CPU: Nature CNN, 16 envs x 64 steps. Not comparable to full GPU runs.
    "cpu-smoke": {
        "encoder": "nature",
        "num_envs": 16,
        "num_steps": 64,
        "num_minibatches": 4,
        "update_epochs": 3,
    },
}


@dataclass
class DiagnoseConfig:
    """Everything a diagnosis depends on (saved as ``diagnose.json``; a cell's key includes its hash).

    ``ppo`` holds extra :class:`rldiag.ppo.PPOConfig` fields (e.g. ``{"learning_rate": 3e-4}``).
    """

    games: list[str]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    budget: int = 25_000_000
    bc_frames: int = 100_000
    bc_epochs: int = 1
    distribution_mode: str = "easy"
    num_levels: int = 0
    start_level: int = 0
    encoder: str = "impala"
    encoder_config: dict = field(default_factory=dict)
    num_envs: int = 64
    num_steps: int = 256
    num_minibatches: int = 8
    update_epochs: int = 3
    ppo: dict = field(default_factory=dict)
    expert_checkpoint: str | None = None
    profile: str = "gpu-full"

    def validate(self) -> None:
        if not self.games:
            raise ValueError("games must name at least one game")
        for game in self.games:
            check_procgen_options(game, self.distribution_mode, self.num_levels, self.start_level)
        if self.distribution_mode not in ("easy", "hard"):
            raise ValueError("diagnostics need published (R_min, R_max): distribution_mode must be easy or hard")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct, >= 0 and non-empty, got {self.seeds}")
        if self.budget < self.num_envs * self.num_steps:
            raise ValueError(
                f"budget {self.budget} is less than one PPO rollout (num_envs * num_steps = "
                f"{self.num_envs * self.num_steps}); raise --budget or use --preset cpu-smoke"
            )
        if self.bc_frames < 2 * self.num_envs:
            raise ValueError(f"bc_frames must be >= 2 * num_envs = {2 * self.num_envs}, got {self.bc_frames}")
        from rldiag.ppo import PPOConfig

        free = set(PPOConfig.__dataclass_fields__) - set(_MANAGED_PPO_FIELDS)
        bad = sorted(set(self.ppo) - free)
        if bad:
            raise ValueError(f"ppo overrides {bad} are not allowed; valid keys: {', '.join(sorted(free))}")
        try:
            ppo = ppo_config_for(self, self.games[0], "pix", self.seeds[0])
        except TypeError as err:  # a wrongly typed override
            raise ValueError(f"ppo overrides {self.ppo} do not fit rldiag.ppo.PPOConfig: {err}") from None
        ppo.validate()  # learning rate, encoder and encoder_config, before the first cell runs
        if self.expert_checkpoint is not None:
            self._check_experts()

    def _check_experts(self) -> None:
        """Every game and seed's expert checkpoint exists and is an ``rldiag train`` checkpoint."""
        from shared.checkpoints import load_checkpoint

        for game in self.games:
            for seed in self.seeds:
                try:
                    path = self.expert_checkpoint.format(game=game, seed=seed)
                except (KeyError, IndexError, ValueError) as err:
                    raise ValueError(
                        f"expert_checkpoint {self.expert_checkpoint!r} may only contain {{game}} and "
                        f"{{seed}} placeholders ({type(err).__name__}: {err})"
                    ) from None
                load_checkpoint(path, expect="ppo")

    def scoring_dict(self) -> dict[str, Any]:
        """The fields a cell's result depends on (not the list of games or seeds)."""
        d = dataclasses.asdict(self)
        d.pop("games")
        d.pop("seeds")
        return d

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.scoring_dict(), sort_keys=True).encode()).hexdigest()[:12]


def config_from_preset(games: list[str], preset: str = "auto", **overrides: Any) -> DiagnoseConfig:
    """A :class:`DiagnoseConfig` from a :data:`PRESETS` entry plus explicit overrides (which win)."""
    if preset == "auto":
        import torch

        preset = "gpu-full" if torch.cuda.is_available() else "cpu-smoke"
    check_choice(preset, PRESETS, name="preset")
    values = {**PRESETS[preset], "profile": preset, **{k: v for k, v in overrides.items() if v is not None}}
    if "bc_frames" not in values and "budget" in values:
        values["bc_frames"] = int(min(max(values["budget"] // 4, 2 * values["num_envs"]), 100_000))
    cfg = DiagnoseConfig(games=list(games), **values)
    cfg.validate()
    return cfg


# ---------------------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------------------


def normalized_auc(x, y, budget: float) -> float:
    """Area under a learning curve over ``[0, budget]`` divided by ``budget``.

    Parameters
    ----------
    x : array_like of shape (n,)
        Increasing positions (env steps or training samples) in ``[0, budget]``.
    y : array_like of shape (n,)
        Scores in [0, 1] at those positions.
    budget : float
        Length of the interval; the curve is held flat before ``x[0]`` and after ``x[-1]``.

    Returns
    -------
    float in [0, 1] for scores in [0, 1]; NaN for an empty curve.

    Examples
    --------
    >>> normalized_auc([0, 50, 100], [0.0, 1.0, 1.0], 100)
    0.75
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if budget <= 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size == 0:
        return float("nan")
    if np.any(np.diff(x) < 0) or x[0] < 0 or x[-1] > budget:
        raise ValueError("x must be increasing and lie in [0, budget]")
    from scipy.integrate import trapezoid  # here, not at the top: scipy.integrate alone costs ~0.5 s of CLI start-up

    x = np.concatenate([[0.0], x, [budget]])
    y = np.concatenate([[y[0]], y, [y[-1]]])
    return float(trapezoid(y, x) / budget)


def rl_curve(
    episodes: list[tuple[int, float, int]],
    iteration_steps: int,
    budget: int,
    game: str,
    distribution_mode: str,
) -> tuple[list[int], list[float]]:
    """Bin episodes by the PPO iteration they ended in: ``(iteration end step, mean normalised return)``."""
    if not episodes:
        return [], []
    steps = np.array([s for s, _, _ in episodes])
    scores = normalize_return([r for _, r, _ in episodes], game, distribution_mode)
    bins = np.ceil(steps / iteration_steps).astype(int) * iteration_steps
    xs = sorted(set(int(b) for b in bins if b <= budget))
    return xs, [float(scores[bins == b].mean()) for b in xs]


def bc_curve_scores(agreement, majority_rate: float) -> list[float]:
    """Chance-correct agreement by the majority rate ``m``: ``clip((a - m) / (1 - m), 0, 1)``.

    An expert that always takes the same action (``m = 1``; typical of a barely trained expert, whose
    greedy action barely depends on the frame) says nothing about perception: every point is NaN, the
    cell's AUC is NaN and PLC falls back to ``PLC_gap`` (:func:`challenge_scores`).
    """
    a = np.asarray(agreement, dtype=np.float64)
    if majority_rate >= 1.0:
        return [float("nan")] * a.size
    return np.clip((a - majority_rate) / (1.0 - majority_rate), 0.0, 1.0).tolist()


def challenge_scores(auc_pix: float, auc_simp: float, auc_bc: float, plc: str = "mean") -> dict[str, float]:
    """Our Perceptual and RL Challenge scores from three normalised AUCs (module docstring).

    Examples
    --------
    >>> challenge_scores(0.2, 0.6, 0.7)
    {'RLC': 0.4, 'PLC_gap': 0.4, 'PLC_bc': 0.3, 'PLC': 0.35}

    Without an informative ``bc`` cell (``auc_bc`` NaN) the mean falls back to ``PLC_gap``:

    >>> challenge_scores(0.2, 0.6, float("nan"))["PLC"]
    0.4
    """
    check_choice(plc, PLC_MODES, name="plc")
    plc_gap = max(0.0, auc_simp - auc_pix)
    plc_bc = 1.0 - auc_bc
    mean = plc_gap if np.isnan(plc_bc) else (plc_gap + plc_bc) / 2
    combined = {"mean": mean, "gap": plc_gap, "bc": plc_bc}[plc]
    return {
        "RLC": round(1.0 - auc_simp, 12),
        "PLC_gap": round(plc_gap, 12),
        "PLC_bc": round(plc_bc, 12),
        "PLC": round(combined, 12),
    }


def bootstrap_challenges(
    aucs: dict[str, np.ndarray], *, n_boot: int = 2000, ci: float = 0.95, plc: str = "mean", seed: int = 0
) -> dict[str, Any]:
    """Point estimates and percentile-bootstrap intervals of the challenge scores for one game.

    Parameters
    ----------
    aucs : dict
        ``{"pix": (n_seeds,), "simp": (n_seeds,), "bc": (n_seeds,)}`` per-seed AUCs (NaNs dropped).
    n_boot, ci : int, float
        Resamples and interval mass. Each condition's seeds are resampled independently.
    plc : str
        How PLC combines its parts (:func:`challenge_scores`).

    Returns
    -------
    dict with ``estimate`` (:func:`challenge_scores` of the seed means), ``low``/``high`` (same keys),
    ``samples`` (ndarray (n_boot, 2): PLC, RLC per resample) and ``n_seeds`` per condition.
    """
    clean = {c: np.asarray(aucs[c], dtype=np.float64)[np.isfinite(aucs[c])] for c in CONDITIONS}
    required = ("pix", "simp", "bc") if plc == "bc" else ("pix", "simp")
    empty = [c for c in required if clean[c].size == 0]
    if empty:
        raise ValueError(f"no finished seed with a finite AUC for condition(s) {', '.join(empty)}")
    estimate = challenge_scores(*(clean[c].mean() if clean[c].size else np.nan for c in CONDITIONS), plc=plc)
    rng = np.random.default_rng(seed)
    means = {
        c: v[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1) if v.size else np.full(n_boot, np.nan)
        for c, v in clean.items()
    }
    boot = [challenge_scores(means["pix"][i], means["simp"][i], means["bc"][i], plc=plc) for i in range(n_boot)]
    alpha = (1.0 - ci) / 2
    low = {k: float(np.quantile([b[k] for b in boot], alpha)) for k in estimate}  # NaN stays NaN
    high = {k: float(np.quantile([b[k] for b in boot], 1 - alpha)) for k in estimate}
    samples = np.array([[b["PLC"], b["RLC"]] for b in boot])
    return {
        "estimate": estimate,
        "low": low,
        "high": high,
        "samples": samples,
        "n_seeds": {c: int(v.size) for c, v in clean.items()},
    }


# ---------------------------------------------------------------------------------------------------------
# Cells: one (game, condition, seed) run with an atomic result file
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    game: str
    condition: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.game}__{self.condition}__s{self.seed}"


def plan_cells(cfg: DiagnoseConfig) -> list[Cell]:
    """Every cell of a diagnosis, RL conditions first (``bc`` depends on ``pix``)."""
    return [Cell(g, c, s) for c in CONDITIONS for g in cfg.games for s in cfg.seeds]


def cell_path(out_dir: Path, cell: Cell) -> Path:
    return Path(out_dir) / "cells" / f"{cell.key}.json"


def cell_job(out_dir: str | Path, cfg: DiagnoseConfig) -> Job:
    """The diagnosis job in ``out_dir`` (not opened: :func:`rldiag.sweep.run_diagnosis` holds its lock and
    checked its manifest), through which cells mark themselves done, in this process or a dask worker."""
    return Job(out_dir, COMMAND, cfg.scoring_dict())


def is_done(out_dir: Path, cell: Cell, cfg: DiagnoseConfig, *, quiet: bool = False) -> bool:
    """A cell is done when its done-marker exists and its result file reads as JSON.

    The settings were checked once for the whole output (its ``.job/manifest.json``). A marked cell whose
    result file is missing or unreadable (truncated by a copy, say) is named in a warning and recomputed.
    """
    if not cell_job(out_dir, cfg).is_done(cell.key):
        return False
    path = cell_path(out_dir, cell)
    try:
        json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        if not quiet:
            warnings.warn(
                f"{path} is missing or unreadable ({type(err).__name__}: {err}); recomputing cell {cell.key}",
                stacklevel=2,
            )
        return False
    return True


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("procgen2", "torch", "numpy", "gymnasium", "recurrent-vision"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


_MANAGED_PPO_FIELDS = (
    "game",
    "distribution_mode",
    "num_levels",
    "start_level",
    "simplified",
    "encoder",
    "encoder_config",
    "seed",
    "total_timesteps",
    "num_envs",
    "num_steps",
    "num_minibatches",
    "update_epochs",
    "tensorboard",
)


def ppo_config_for(cfg: DiagnoseConfig, game: str, condition: str, seed: int):
    """The :class:`rldiag.ppo.PPOConfig` of an RL cell."""
    from rldiag.ppo import PPOConfig

    return PPOConfig(
        game=game,
        distribution_mode=cfg.distribution_mode,
        num_levels=cfg.num_levels,
        start_level=cfg.start_level,
        simplified=condition == "simp",
        encoder=cfg.encoder,
        encoder_config=dict(cfg.encoder_config),
        seed=seed,
        total_timesteps=cfg.budget,
        num_envs=cfg.num_envs,
        num_steps=cfg.num_steps,
        num_minibatches=cfg.num_minibatches,
        update_epochs=cfg.update_epochs,
        tensorboard=False,
        **cfg.ppo,
    )


def run_cell(
    cfg_dict: dict[str, Any], cell: Cell, out_dir: str | Path, *_dependencies: Any, progress: bool = False
) -> dict[str, Any]:
    """Run one cell unless it is done; return the result (written atomically, then marked done).

    Module-level and taking plain values so dask workers can run it. ``_dependencies`` lets a scheduler
    order ``bc`` after its ``pix`` expert. An interrupted PPO cell resumes from its run's checkpoint.
    ``progress`` shows the cell's own tqdm bar under the sweep's: env steps, steps/s and recent return
    for PPO; expert frames, then training samples and held-out agreement for bc.
    """
    import torch

    cfg = DiagnoseConfig(**cfg_dict)
    out_dir = Path(out_dir)
    path = cell_path(out_dir, cell)
    if is_done(out_dir, cell, cfg, quiet=True):  # the sweep already named an unreadable result
        return json.loads(path.read_text())
    if os.environ.get("RLDIAG_TORCH_THREADS"):
        torch.set_num_threads(int(os.environ["RLDIAG_TORCH_THREADS"]))
    started = time.perf_counter()
    result: dict[str, Any] = {
        "game": cell.game,
        "condition": cell.condition,
        "seed": cell.seed,
        "fingerprint": cfg.fingerprint,
        "config": cfg.scoring_dict(),
        "normalization_source": SOURCE,
        "versions": _versions(),
    }
    if cell.condition in ("pix", "simp"):
        from rldiag.ppo import train

        ppo_cfg = ppo_config_for(cfg, cell.game, cell.condition, cell.seed)
        run = train(
            ppo_cfg, out_dir / "runs" / cell.key, progress=progress, progress_label=cell.key, progress_position=1
        )
        xs, ys = rl_curve(run.episodes, ppo_cfg.batch_size, cfg.budget, cell.game, cfg.distribution_mode)
        result.update(
            x=xs,
            y=ys,
            budget=cfg.budget,
            x_unit="env steps",
            n_episodes=len(run.episodes),
            raw_returns=[r for _, r, _ in run.episodes],
        )
    else:
        result.update(_run_bc_cell(cfg, cell, out_dir, progress=progress))
    result["auc"] = normalized_auc(result["x"], result["y"], result["budget"])
    result["seconds"] = time.perf_counter() - started
    atomic_write_json(path, result)  # the sweep claimed cells/ for this job
    cell_job(out_dir, cfg).mark_done(cell.key)
    return result


def _run_bc_cell(cfg: DiagnoseConfig, cell: Cell, out_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    from rldiag.distill import agreement_curve, collect_expert_frames
    from rldiag.envs import ProcgenVectorEnv
    from rldiag.ppo import load_agent

    expert_path = (
        Path(cfg.expert_checkpoint.format(game=cell.game, seed=cell.seed))
        if cfg.expert_checkpoint
        else out_dir / "runs" / Cell(cell.game, "pix", cell.seed).key / "checkpoint.pt"
    )
    if not expert_path.exists():
        raise FileNotFoundError(
            f"expert checkpoint for {cell.key} not found: {expert_path} (the bc cell needs "
            "its pix cell, or --expert-checkpoint)"
        )
    expert, _ = load_agent(expert_path)
    # Expert frames come from a level stream the PPO runs never saw first (seed offset), standard pixels.
    envs = ProcgenVectorEnv(
        cell.game,
        cfg.num_envs,
        distribution_mode=cfg.distribution_mode,
        num_levels=cfg.num_levels,
        start_level=cfg.start_level,
    )
    from tqdm.auto import tqdm

    # one bar for the cell: expert frames collected, then training samples with the held-out agreement
    bar = tqdm(
        total=cfg.bc_frames, desc=cell.key, unit="frame", unit_scale=True, position=1, leave=False, disable=not progress
    )
    data = collect_expert_frames(expert, envs, cfg.bc_frames, seed=10_000 + cell.seed, progress_bar=bar)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    bar.set_description(f"{cell.key} cloning")
    curve = agreement_curve(
        data,
        encoder=cfg.encoder,
        encoder_config=cfg.encoder_config,
        epochs=cfg.bc_epochs,
        seed=cell.seed,
        progress_bar=bar,
    )
    bar.close()
    return {
        "x": curve["samples"],
        "y": bc_curve_scores(curve["agreement"], curve["majority_rate"]),
        "agreement": curve["agreement"],
        "majority_rate": curve["majority_rate"],
        "budget": curve["budget"],
        "x_unit": "labelled frames",
        "expert": str(expert_path),
    }


def load_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished cell result under ``out_dir/cells``."""
    cells = Path(out_dir) / "cells"
    if not cells.is_dir():
        raise FileNotFoundError(f"no diagnosis found in {out_dir} (expected a 'cells' folder from rldiag diagnose)")
    results = []
    for p in sorted(cells.glob("*.json")):
        try:
            results.append(json.loads(p.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{p} is truncated or not JSON ({err}); rerun the same `rldiag diagnose` command to recompute that cell"
            ) from None
    return results


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarize(
    out_dir: str | Path, *, plc: str = "mean", n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Per-game challenge scores with bootstrap intervals from a diagnosis folder.

    Returns
    -------
    rows : list of dict, one per game with every condition's cells finished: mean AUCs, seeds, and
        ``PLC``, ``RLC``, ``PLC_gap``, ``PLC_bc`` with ``_low``/``_high`` bounds.
    samples : dict game -> ndarray (n_boot, 2) of bootstrap (PLC, RLC), for the taxonomy's stability.
    """
    results = load_results(out_dir)
    by_game: dict[str, dict[str, list[float]]] = {}
    for r in results:
        by_game.setdefault(r["game"], {c: [] for c in CONDITIONS})[r["condition"]].append(r["auc"])
    rows, samples = [], {}
    for game in sorted(by_game, key=GAMES.index):
        aucs = by_game[game]
        needed = CONDITIONS if plc == "bc" else ("pix", "simp")
        if any(not np.isfinite(aucs[c]).any() for c in needed) or not aucs["bc"]:
            continue  # a condition unfinished (bc must have run, even if uninformative)
        boot = bootstrap_challenges({c: np.array(v) for c, v in aucs.items()}, n_boot=n_boot, ci=ci, plc=plc, seed=seed)
        row: dict[str, Any] = {
            "game": game,
            **{f"AUC_{c}": _finite_mean(aucs[c]) for c in CONDITIONS},
            "n_seeds": min(boot["n_seeds"]["pix"], boot["n_seeds"]["simp"]),
            "n_seeds_bc": boot["n_seeds"]["bc"],
            "PLC_basis": "gap+bc" if boot["n_seeds"]["bc"] else "gap only (bc uninformative)",
        }
        for k, v in boot["estimate"].items():
            row.update({k: v, f"{k}_low": boot["low"][k], f"{k}_high": boot["high"][k]})
        rows.append(row)
        samples[game] = boot["samples"]
    return rows, samples
