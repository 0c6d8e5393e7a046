"""connectomics star: a protocol killed mid-training resumes each training from its latest checkpoint and ends
with the results of an uninterrupted run; other settings in the same out_dir, or a second run while one holds
it, are refused (issue 15)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from connectomics.cli import main as connectomics_main
from connectomics.star import run_star, simulate_star_volumes
from connectomics.train import AffinityModel
from shared.jobs import reopen_job

STEPS = 12  # 3 steps per training epoch: last.ckpt after steps 3, 6, 9 and 12
STAR = {
    "train_sources": ["sstem"],
    "held_out": "fib",
    "volume_shape": [6, 48, 48],
    "test_shape": [6, 48, 48],
    "models": {
        "unet": {
            "backbone": "unet3d",
            "backbone_config": {"features": [4, 8], "downsample": [[1, 2, 2]], "kernel_size": [1, 3, 3]},
        }
    },
    "fractions": [1.0],
    "steps": STEPS,
    "crop_shape": [4, 32, 32],
    "batch_size": 2,
    "thresholds": [0.5],
    "precision": "32-true",
}


def test_killed_star_resumes_its_training_to_the_uninterrupted_result(tmp_path, monkeypatch):
    # on the CPU, where kernels are deterministic and "identical" can be asserted (cuDNN's need not be)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    data = tmp_path / "data"
    simulate_star_volumes(
        data, STAR["train_sources"], STAR["held_out"], STAR["volume_shape"], STAR["test_shape"], seed=0
    )
    killed = tmp_path / "killed"
    # a slow training step (sleep only: the same draws and weights) leaves time to kill between checkpoints
    script = (
        "import time\n"
        "from connectomics.train import AffinityModel\n"
        "step = AffinityModel.training_step\n"
        "AffinityModel.training_step = lambda self, *a, **k: (time.sleep(0.3), step(self, *a, **k))[1]\n"
        "from connectomics.star import run_star\n"
        f"run_star(out_dir={str(killed)!r}, data_dir={str(data)!r}, **{STAR!r})\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    last = killed / "unet_f1" / "checkpoints" / "last.ckpt"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not last.exists() and proc.poll() is None:
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
    step_at_kill = torch.load(last, weights_only=True)["global_step"]
    assert 0 < step_at_kill < STEPS and not (killed / "unet_f1" / "result.json").exists(), (
        "the run should have been killed mid-training"
    )

    steps_run = []
    training_step = AffinityModel.training_step

    def counted(self, *args, **kwargs):
        steps_run.append(1)
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(AffinityModel, "training_step", counted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run_star(out_dir=str(killed), data_dir=str(data), **STAR)
    assert not [str(w.message) for w in caught if "not empty" in str(w.message)]
    assert len(steps_run) == STEPS - step_at_kill  # resumed from the checkpoint, not from scratch
    steps_run.clear()
    uninterrupted = run_star(out_dir=str(tmp_path / "uninterrupted"), data_dir=str(data), **STAR)
    assert len(steps_run) == STEPS

    final = torch.load(last, weights_only=True)
    reference = torch.load(tmp_path / "uninterrupted" / "unet_f1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == reference["global_step"] == STEPS
    for name, weights in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], weights, msg=name)
    scores = [c for c in resumed.columns if c not in ("train_seconds", "device")]
    assert resumed[scores].to_dict("records") == uninterrupted[scores].to_dict("records")
    assert json.loads((killed / "results.json").read_text())["rows"][0]["steps"] == STEPS


TINY = {**STAR, "steps": 4}  # one step per training epoch: the quickest finished protocol


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny protocol: (its out_dir, its data_dir, the YAML config that made it)."""
    root = tmp_path_factory.mktemp("star")
    run_star(out_dir=str(root / "out"), data_dir=str(root / "data"), **TINY)
    config = root / "star.yaml"
    config.write_text(yaml.safe_dump({**TINY, "data_dir": str(root / "data")}))
    return root / "out", root / "data", config


def _copy(finished, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)  # the bookkeeping travels with the folder
    return out


def _count_training_steps(monkeypatch) -> list[int]:
    steps_run: list[int] = []
    training_step = AffinityModel.training_step

    def counted(self, *args, **kwargs):
        steps_run.append(1)
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(AffinityModel, "training_step", counted)
    return steps_run


def test_star_refuses_other_settings_in_a_finished_out_dir_unless_overwrite(finished, tmp_path, monkeypatch, capsys):
    out, config = _copy(finished, tmp_path), finished[2]
    before = (out / "results.csv").read_bytes()
    steps_run = _count_training_steps(monkeypatch)
    assert connectomics_main(["star", "--config", str(config), "--out_dir", str(out)]) == 0
    assert steps_run == [] and (out / "results.csv").read_bytes() == before  # same settings: all done

    capsys.readouterr()
    assert connectomics_main(["star", "--config", str(config), "--out_dir", str(out), "--steps", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "steps: 4 -> 8" in err and "--overwrite" in err, err
    assert steps_run == [] and (out / "results.csv").read_bytes() == before

    # --overwrite starts over: each training runs all 8 steps, not on from the 4-step checkpoint
    assert (
        connectomics_main(["star", "--config", str(config), "--out_dir", str(out), "--steps", "8", "--overwrite"]) == 0
    )
    assert len(steps_run) == 8
    assert torch.load(out / "unet_f1" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    assert json.loads((out / "results.json").read_text())["rows"][0]["steps"] == 8
    assert sorted(os.listdir(out / ".job" / "done")) == ["unet_f1_s0"]


def test_star_refuses_an_out_dir_in_use_or_waits_for_it(finished, tmp_path, monkeypatch, capsys):
    out, config = _copy(finished, tmp_path), finished[2]
    steps_run = _count_training_steps(monkeypatch)
    holder = reopen_job(out, "connectomics star")  # another run holds the lock (a live pid: this one)
    try:
        assert connectomics_main(["star", "--config", str(config), "--out_dir", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"in use by pid {os.getpid()}" in err and "--wait" in err, err
        threading.Timer(0.5, holder.close).start()
        table = run_star(out_dir=str(out), data_dir=str(finished[1]), wait=True, **TINY)
    finally:
        holder.close()
    assert steps_run == [] and len(table) == 1  # waited, then found the protocol done
    assert not (out / ".job" / "lock").exists()
