"""Tiny end-to-end runs of the recurrent-evidence benchmarks and of the GPU science command (slow, CPU).

Each runs the real script in a subprocess (``--quick`` / ``--toy`` sizes) and checks what it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# each test runs a real training script: allow more than the suite-wide 5 min timeout on a busy machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHON": sys.executable,
    }
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, **kwargs)


def test_sample_efficiency_quick_run_and_cache(tmp_path: Path) -> None:
    cmd = [sys.executable, "benchmarks/hgru_sample_efficiency.py", "--quick", "--out", str(tmp_path)]
    first = run(cmd)
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads((tmp_path / "sample_efficiency.json").read_text())
    assert {(r["model"], r["n_train"]) for r in result["summary"]} == {
        (m, n) for m in ("hGRU", "CNN") for n in (100, 300)
    }
    assert result["parameters"]["CNN"] >= 3 * result["parameters"]["hGRU"]
    assert all(0.0 <= r["test_acc"] <= 1.0 and r["steps"] == 15 and not r["cached"] for r in result["runs"])
    assert (tmp_path / "sample_efficiency.png").stat().st_size > 10_000
    assert "| 300 |" in first.stdout
    # the same settings again: every run comes from the cache with the same accuracy
    second = run(cmd)
    assert second.returncode == 0, second.stderr[-2000:]
    again = json.loads((tmp_path / "sample_efficiency.json").read_text())
    assert all(r["cached"] for r in again["runs"])
    assert [r["test_acc"] for r in again["runs"]] == [r["test_acc"] for r in result["runs"]]


def test_crbp_stability_quick_run(tmp_path: Path) -> None:
    done = run([sys.executable, "benchmarks/crbp_stability.py", "--quick", "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "crbp_stability.json").read_text())
    arms = {r["arm"] for r in result["runs"]}
    assert arms == {"C-RBP", "C-BPTT", "BPTT"}  # C-BPTT: the backbone reports the penalty in bptt mode
    for r in result["runs"]:
        assert len(r["accuracy_by_t"]) == 12 and len(r["residual"]) == 12 and len(r["delta"]) == 12
        assert all(0.0 <= a <= 1.0 for a in r["accuracy_by_t"])
        assert set(r["spectral_radius"]) == {"6", "12"}
        assert all(0.0 < v < 100.0 for v in r["spectral_radius"].values())
    assert (tmp_path / "crbp_stability.png").stat().st_size > 10_000
    assert all(f"| {arm} (1 seeds) |" in done.stdout for arm in ("C-RBP", "C-BPTT", "BPTT"))


def test_gpu_science_toy_run(tmp_path: Path) -> None:
    out = tmp_path / "gs"
    done = run(
        [
            "bash",
            "scripts/gpu_science.sh",
            "--toy",
            "--out",
            str(out),
            "--seeds",
            "2",
            "--pf-seconds",
            "2",
            "--star-seconds",
            "2",
            "--tr-seconds",
            "2",
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    assert result["precision"] == "32-true"  # no CUDA on the test machine
    rows = {(r["experiment"].split()[0], r["model"]): r for r in result["rows"]}
    assert set(rows) == {
        ("Pathfinder-6", "hGRU (1 layer)"),
        ("Pathfinder-6", "ResNet (toy size)"),
        ("STAR", "gamma-Net 3D"),
        ("STAR", "U-Net 3D"),
        ("PathTracker", "InT"),
        ("PathTracker", "R3D (matched)"),
        ("FeatureTracker", "CV-RNN"),
        ("FeatureTracker", "InT"),
        ("FeatureTracker", "real-valued control"),
    }
    for (experiment, _), r in rows.items():
        assert r["status"] == "done" and r["steps"] >= 1
        assert len(r["values"]) == (2 if experiment == "STAR" else 1)
        assert all(0.0 <= v <= 1.0 for v in r["values"])
    assert "| STAR held-out retina | gamma-Net 3D |" in done.stdout
    tracking = [r for r in result["rows"] if r["experiment"].startswith(("PathTracker", "FeatureTracker"))]
    assert {r["experiment"] for r in tracking} >= {"PathTracker distractors=5", "FeatureTracker oodshapes_oodcolors"}
    # refuses to write into a folder that is not empty, in one line with exit status 2
    again = run(["bash", "scripts/gpu_science.sh", "--toy", "--out", str(out)])
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
