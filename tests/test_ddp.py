"""Lightning DDP with 2 CPU processes (gloo) through a real console command and configs/trainer/ddp_cpu.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from pathfinder_cli_args import tiny_fit_args

REPO = Path(__file__).resolve().parents[1]


def test_pathfinder_fit_with_two_ddp_processes_on_cpu(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "shared.pathfinder",
        "fit",
        "--config",
        str(REPO / "configs/pathfinder/resnet.yaml"),
        "--config",
        str(REPO / "configs/trainer/ddp_cpu.yaml"),
        *tiny_fit_args(tmp_path),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "MEMBER: 2/2" in log and "distributed_backend=gloo" in log, log[-3000:]
    ckpt = tmp_path / "runs" / "checkpoints" / "last.ckpt"  # the run folder's layout (shared.cli.lightning_cli)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    # 16 training images, batch 4: one process takes 4 steps per epoch; DDP gives each of 2 ranks half the data
    assert state["global_step"] == 2
