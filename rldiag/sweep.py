"""Run a diagnosis's cells: serially, on a local dask cluster, or on a running dask scheduler.

Parallelism comes from ``dask.distributed`` through :func:`shared.scaleout.dask_client`, the helper every
subsystem scales out with: a ``LocalCluster`` of worker *processes* (one thread each; procgen is not
fork-safe and leaks memory when envs are destroyed, both of which separate worker processes contain), or a
client of a cluster started with ``dask scheduler`` / ``dask worker`` (workers must have recurrent-vision
installed and see ``out_dir``). Each worker with GPUs trains on its own one
(:func:`shared.worker_devices.pin_workers_to_gpus`; PPO's ``device="auto"`` is
:func:`shared.devices.default_device`).

The output folder is a :mod:`shared.jobs` job: its ``.job/`` holds the settings (a rerun with other
settings is refused in one line), the lock (a second sweep into the same folder refuses naming the first,
or waits), and one done-marker per finished cell (:func:`rldiag.diagnose.is_done`): finished cells are
skipped before submission, so re-running the same command continues an interrupted sweep. Each ``bc`` cell
is submitted with its ``pix`` cell's future as an argument, so dask runs it after the expert exists.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from rldiag.diagnose import COMMAND, Cell, DiagnoseConfig, is_done, plan_cells, run_cell
from shared.jobs import open_job


def run_diagnosis(
    cfg: DiagnoseConfig,
    out_dir: str | Path,
    *,
    workers: int = 0,
    scheduler: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    wait: bool = False,
) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``cfg`` and return all cell results.

    Parameters
    ----------
    cfg : DiagnoseConfig
    out_dir : path
        Results go to ``out_dir/cells/*.json`` (atomic), runs to ``out_dir/runs/<cell>/``.
    workers : int
        0 runs cells serially in this process (debuggable); N > 0 starts a dask ``LocalCluster`` with N
        single-threaded worker processes. Ignored when ``scheduler`` is given.
    scheduler : str, optional
        Address of a running dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
    progress : bool
        Show a tqdm bar over cells and, when cells run serially in this process, one bar inside each cell
        (PPO: env steps, steps/s, mean return of the last 20 episodes; bc: expert frames, then training
        samples and held-out agreement). dask workers run without bars.
    overwrite : start over in an ``out_dir`` holding a diagnosis with other settings (or files this
        command did not write); cells are replaced as they are recomputed.
    wait : if another sweep holds ``out_dir``, wait for it instead of refusing.

    Raises
    ------
    shared.jobs.JobConfigError : ``out_dir`` holds a diagnosis with other settings (and not ``overwrite``).
    shared.jobs.JobLockedError : another sweep is writing ``out_dir`` (and not ``wait``).
    """
    from tqdm.auto import tqdm

    cfg.validate()
    if workers < 0:  # refused before the output folder exists (dask_client would refuse after)
        raise ValueError(f"--workers must be >= 0, got {workers}")
    out_dir = Path(out_dir)
    cfg_dict = dataclasses.asdict(cfg)
    cells = plan_cells(cfg)
    with open_job(out_dir, COMMAND, cfg.scoring_dict(), overwrite=overwrite, wait=wait) as job:
        job.claim("cells", "runs")
        todo = [c for c in cells if not is_done(out_dir, c, cfg)]
        bar = tqdm(
            total=len(cells), initial=len(cells) - len(todo), desc="rldiag cells", unit="cell", disable=not progress
        )
        if todo and scheduler is None and workers == 0:
            for cell in todo:  # plan order: pix and simp before bc
                bar.set_postfix_str(cell.key)
                run_cell(cfg_dict, cell, out_dir, progress=progress)
                bar.update()
        elif todo:
            _run_on_dask(cfg_dict, todo, out_dir, workers=workers, scheduler=scheduler, bar=bar)
        bar.close()
        return [run_cell(cfg_dict, c, out_dir) for c in cells]


def _run_on_dask(
    cfg_dict: dict[str, Any], todo: list[Cell], out_dir: Path, *, workers: int, scheduler: str | None, bar
) -> None:
    """Submit ``todo`` to the client of :func:`shared.scaleout.dask_client` (each worker pinned to its own GPU,
    as every subsystem's workers are) and wait for all of them; a cell's error is re-raised here."""
    from distributed import as_completed

    from shared.scaleout import dask_client

    if scheduler is None:
        # each local worker process runs one cell at a time with one torch thread (workers inherit this)
        os.environ.setdefault("RLDIAG_TORCH_THREADS", "1")
    with dask_client(workers=workers, scheduler=scheduler) as client:
        futures, pix_futures = [], {}
        for cell in todo:
            deps = []
            if cell.condition == "bc" and cfg_dict["expert_checkpoint"] is None:
                pix = pix_futures.get((cell.game, cell.seed))
                deps = [pix] if pix is not None else []
            future = client.submit(run_cell, cfg_dict, cell, str(out_dir), *deps, key=f"rldiag-{cell.key}", pure=False)
            if cell.condition == "pix":
                pix_futures[(cell.game, cell.seed)] = future
            futures.append(future)
        for future in as_completed(futures):
            future.result()  # re-raise a cell's error here, with its traceback
            bar.update()
