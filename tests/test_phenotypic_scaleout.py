"""phenotypic evaluate and the scaling grid: progress, one line per cell, figures, and dask (issue 16).

The dask runs use one local 2-process cluster (the ``--scheduler`` path; ``--workers N`` starts the same kind
of cluster inside the command) and must give exactly the serial results.
"""

import json

import lightning as L
import pandas as pd
import pytest

from phenotypic.cli import main
from phenotypic.datamodule import PhenoDataModule
from phenotypic.ibp import IBPModule
from phenotypic.scaling import GridConfig, run_scaling_grid
from phenotypic.simulate import simulate_release
from tests.figure_checks import assert_png


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return simulate_release(
        tmp_path_factory.mktemp("sim"), n_compounds=60, plates_per_batch=1, n_batches=2, n_features=30, progress=False
    )


@pytest.fixture(scope="module")
def checkpoint(release, tmp_path_factory):
    dm = PhenoDataModule(str(release), batch_size=64)
    trainer = L.Trainer(
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(IBPModule(width=16, depth=1), dm)
    path = tmp_path_factory.mktemp("ckpt") / "ibp.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def scheduler():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0
    ) as cluster:
        yield cluster.scheduler_address


def test_evaluate_shows_progress_draws_tasks_against_chance_and_runs_on_dask(checkpoint, scheduler, tmp_path, capfd):
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--probes", "linear", "--k", "3", "--epochs", "20"]
    serial = tmp_path / "serial"
    assert main([*argv, "--out", str(serial)]) == 0
    out, err = capfd.readouterr()
    assert "embedding" in err and "phenotypic evaluate: 100%" in err and "10/10" in err  # stages, then a bar
    assert f"figure (every task against chance): {serial / 'tasks.png'}" in out.splitlines()
    assert_png(serial / "tasks.png", software="phenotypic evaluate")
    rows = json.loads((serial / "tasks.json").read_text())["rows"]
    assert len(rows) == 10 and all(r["top1"] is not None for r in rows)

    on_dask = tmp_path / "dask"
    assert main([*argv, "--out", str(on_dask), "--scheduler", scheduler]) == 0
    assert json.loads((on_dask / "tasks.json").read_text())["rows"] == rows

    # an interrupted evaluation resumes: only the unit without its done-marker is computed again
    job = on_dask / ".job" / "done"
    (job / "tasks").unlink()
    (job / "cellprofiler-whitened.moa-deconvolution.linear").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in (on_dask / "units").iterdir()}
    capfd.readouterr()
    assert main([*argv, "--out", str(on_dask)]) == 0
    assert "9 done earlier" in capfd.readouterr().err
    changed = {p.name for p in (on_dask / "units").iterdir() if p.stat().st_mtime_ns != stamps[p.name]}
    assert changed == {"cellprofiler-whitened.moa-deconvolution.linear.json"}
    assert json.loads((on_dask / "tasks.json").read_text())["rows"] == rows


def test_scaling_prints_one_line_per_cell_and_dask_gives_the_serial_grid(release, scheduler, tmp_path, capfd):
    cfg = GridConfig(fractions=[0.5, 1.0], widths=[16], depths=[1], max_steps=3, batch_size=64, k=3)
    serial = run_scaling_grid(release, tmp_path / "serial", cfg)
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("scaling grid [") for line in lines), lines
    assert lines[1].startswith("scaling grid [2/2] f1_w16_d1: ")
    on_dask = run_scaling_grid(release, tmp_path / "dask", cfg, scheduler=scheduler, progress=False)
    assert capfd.readouterr().err == ""
    pd.testing.assert_frame_equal(serial.drop(columns="seconds"), on_dask.drop(columns="seconds"))
