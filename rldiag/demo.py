"""The rldiag part of ``make demo``: a CPU-smoke diagnosis of two games, their learning curves and taxonomy.

Runs in about a minute on 2 CPU cores. The budgets are tiny (a few thousand env steps), so the scores
show the pipeline working, not the games' real difficulty: full runs use ``--preset gpu-full`` and 25M
steps (BENCHMARKS.md, section rldiag).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from shared.report import Report

GAMES = ["coinrun", "starpilot"]


def run_demo(out_dir: Path, report: Report) -> None:
    """Diagnose coinrun and starpilot at a tiny budget (2 seeds, dask LocalCluster of 2 processes)."""
    from rldiag.diagnose import config_from_preset, summarize
    from rldiag.sweep import run_diagnosis
    from rldiag.taxonomy import write_taxonomy

    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    budget = int(os.environ.get("RLDIAG_DEMO_BUDGET", "4096"))
    cfg = config_from_preset(GAMES, "cpu-smoke", budget=budget, seeds=[0, 1], num_envs=8, num_steps=64)
    run_diagnosis(cfg, out_dir / "diagnosis", workers=2, progress=False)
    paths = write_taxonomy(out_dir / "diagnosis", n_boot=500)
    rows, _ = summarize(out_dir / "diagnosis", n_boot=500)
    section = report.section(
        "rldiag: Learning Challenge Diagnosticator (CPU smoke scale)",
        f"PPO on standard pixels (pix), PPO on perceptually simplified frames (simp) and behavioural "
        f"cloning of the pix expert's actions from pixels (bc) for {', '.join(GAMES)}, {budget} env steps "
        "per PPO run, seeds 0 and 1, Nature CNN, run as cells on a dask LocalCluster of 2 worker "
        "processes.\n\nReturns are normalised with the per-game (R_min, R_max) of openai/train-procgen "
        "(Cobbe et al. 2020). PLC = mean(max(0, AUC_simp - AUC_pix), 1 - AUC_bc) and RLC = 1 - AUC_simp are "
        "rldiag's own definitions (the published LCD formulas could not be read), with 95% bootstrap "
        "intervals over seeds. At this budget agents barely learn: the numbers demonstrate the pipeline, not "
        "the games' difficulty.",
    )
    section.add_table(
        "challenge scores per game",
        [
            {
                k: (round(v, 3) if isinstance(v, float) else v)
                for k, v in r.items()
                if k
                in (
                    "game",
                    "AUC_pix",
                    "AUC_simp",
                    "AUC_bc",
                    "PLC",
                    "PLC_low",
                    "PLC_high",
                    "RLC",
                    "RLC_low",
                    "RLC_high",
                    "n_seeds",
                    "n_seeds_bc",
                    "PLC_basis",
                )
            }
            for r in rows
        ],
    )
    section.add_figure("learning curves (normalised return vs env steps; BC agreement vs frames)", paths["curves"])
    section.add_figure("taxonomy: games on the PLC x RLC plane with bootstrap intervals", paths["png"])
    section.seconds = time.perf_counter() - started
