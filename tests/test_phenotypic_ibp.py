"""IBP LightningModule, datamodule splits, Pheno-CA tasks, the CLI (fit -> evaluate) and the scaling grid."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from phenotypic.cli import main
from phenotypic.datamodule import PhenoDataModule, make_splits, subsample_wells
from phenotypic.ibp import IBPModule, topk_accuracy
from phenotypic.models import ResidualMLP, grad_reverse
from phenotypic.scaling import GridConfig, run_scaling_grid
from phenotypic.simulate import simulate_release
from phenotypic.tasks import chance_topk, probe_task, topk_hits
from shared.checkpoints import load_lightning_module


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return simulate_release(
        tmp_path_factory.mktemp("sim"),
        n_compounds=90,
        plates_per_batch=2,
        n_batches=2,
        n_features=40,
        progress=False,
    )


def test_splits_hold_out_compounds_and_plates(release):
    dm = PhenoDataModule(str(release))
    dm.setup()
    meta = dm.dataset.meta
    sp = make_splits(meta, kind="compounds", seed=0)
    comp = meta["Metadata_JCP2022"].to_numpy()
    assert not set(comp[sp["train"]]) & set(comp[sp["test"]])
    assert not set(comp[sp["val"]]) & set(comp[sp["test"]])
    assert (meta["Metadata_moa"].to_numpy()[sp["test"]] != "").all()
    assert set(meta["Metadata_pert_type"].to_numpy()[np.concatenate(list(sp.values()))]) == {"trt"}
    pl = make_splits(meta, kind="plates", val_fraction=0.25, test_fraction=0.25, seed=0)
    plates = meta["Metadata_Plate"].to_numpy()
    assert not set(plates[pl["train"]]) & set(plates[pl["test"]])
    sub = subsample_wells(meta, sp["train"], fraction=0.25)
    per = np.bincount(np.unique(comp[sp["train"]], return_inverse=True)[1])
    assert len(sub) < len(sp["train"]) and len(np.unique(comp[sub])) == len(per)
    # IBP classes are training compounds only; test compounds are never seen in pretraining
    assert not set(dm.class_names) & set(comp[sp["test"]])


def test_models_and_metrics():
    net = ResidualMLP(10, width=16, depth=4)
    assert net(torch.randn(5, 10)).shape == (5, 16)
    with pytest.raises(ValueError, match="features"):
        net(torch.randn(5, 10, 1))
    x = torch.ones(3, requires_grad=True)
    grad_reverse(x, 2.0).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -2.0))
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert topk_accuracy(logits, torch.tensor([1, 2]), 1) == 0.5
    assert topk_accuracy(logits, torch.tensor([[0.0, 1, 0], [1, 0, 0]]), 2) == 0.5
    assert topk_hits(logits.numpy(), np.array([1, 2]), 2).tolist() == [True, True]
    assert chance_topk(np.array([0, 0, 1]), np.array([0, 1, 2]), 3, 1) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="fingerprint_bits"):
        IBPModule(fingerprint_weight=1.0)


def test_probe_selects_on_validation_and_beats_chance(release):
    dm = PhenoDataModule(str(release))
    dm.setup()
    res = probe_task(dm.x, dm.dataset.meta, dm.splits, task="moa", kind="linear", k=3, epochs=60)
    assert res["top1"] > res["chance_top1"] + 0.1
    res_t = probe_task(dm.x, dm.dataset.meta, dm.splits, task="target", kind="mlp", k=3, epochs=30)
    assert 0 <= res_t["top1"] <= 1 and res_t["n_classes"] > res["n_classes"]


def test_fit_cli_reload_and_evaluate(release, tmp_path, capsys):
    root = tmp_path / "run"
    rc = main(
        [
            "fit",
            "--config",
            "configs/phenotypic/ibp_mlp.yaml",
            "--data.release_root",
            str(release),
            "--trainer.max_steps",
            "8",
            "--trainer.default_root_dir",
            str(root),
            "--model.width",
            "32",
            "--model.depth",
            "2",
            "--model.adversarial_weight",
            "0.5",
            "--model.fingerprint_bits",
            "64",
            "--model.fingerprint_weight",
            "0.5",
            "--data.fingerprint_bits",
            "64",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
        ]
    )
    assert rc == 0
    ckpt = sorted(root.rglob("*.ckpt"))[-1]
    model = load_lightning_module(IBPModule, ckpt)
    assert model.hparams.n_classes > 10 and "batch" in model.net and "fingerprint" in model.net
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--probes",
                "linear",
                "--k",
                "3",
                "--epochs",
                "40",
            ]
        )
        == 0
    )
    rows = json.loads((out / "tasks.json").read_text())["rows"]
    tasks = {r["task"] for r in rows}
    assert {
        "moa deconvolution",
        "target deconvolution",
        "molecule rediscovery",
        "phenotypic activity",
        "phenotypic consistency (MoA)",
    } <= tasks
    assert {r["representation"] for r in rows} == {"IBP (frozen)", "CellProfiler (whitened)"}
    check_evaluate_keeps_results(ckpt, out, tmp_path, capsys)


def check_evaluate_keeps_results(ckpt, out, tmp_path, capsys):
    """`evaluate --out` never replaces earlier results: the same run finds them done, other settings are
    refused unless --overwrite; hostile and foreign checkpoints are refused in one line."""
    from tests.test_shared_core import hostile_checkpoint

    argv = [
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--out",
        str(out),
        "--probes",
        "linear",
        "--k",
        "3",
        "--epochs",
        "40",
    ]
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("tasks.*")}
    assert main(argv) == 0  # same checkpoint and settings: done already
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("tasks.*")} == before
    evil = hostile_checkpoint(tmp_path / "evil.ckpt", tmp_path / "pwned")
    pathfinder = tmp_path / "pathfinder.ckpt"
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"backbone": "hgru", "readout": "reference", "lipschitz_weight": 10.0}},
        pathfinder,
    )
    (tmp_path / "empty.ckpt").write_bytes(b"")
    cases = {
        "other settings": (argv[:-3] + ["2", "--epochs", "40"], "other settings (k: 3 -> 2)"),
        "hostile": (["evaluate", "--checkpoint", str(evil), "--out", str(tmp_path / "e2")], "could run code"),
        "hostile supervised": ([*argv, "--supervised-checkpoint", str(evil)], "could run code"),
        "foreign": (
            ["evaluate", "--checkpoint", str(pathfinder), "--out", str(tmp_path / "e3")],
            "this is a Pathfinder checkpoint (shared.pathfinder); expected a phenotypic IBP checkpoint",
        ),
        "empty": (
            ["evaluate", "--checkpoint", str(tmp_path / "empty.ckpt"), "--out", str(tmp_path / "e4")],
            "is empty (0 bytes)",
        ),
        "out is a file": (["evaluate", "--checkpoint", str(ckpt), "--out", str(ckpt)], "is a file, not a folder"),
        "fit resumes from a hostile file": (
            ["fit", "--config", "configs/phenotypic/ibp_mlp.yaml", "--ckpt_path", str(evil)],
            "could run code",
        ),
    }
    for name, (args, words) in cases.items():
        rc = main(args)
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and words in lines[-1], (name, lines)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("tasks.*")} == before
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "e2").exists()
    assert main([*argv[:-3], "2", "--epochs", "40", "--overwrite"]) == 0
    assert json.loads((out / "tasks.json").read_text())["k"] == 2


@pytest.mark.parametrize(
    "override, words",
    [
        (["--model.lr", "-0.1"], "model.lr must be > 0, got -0.1"),
        (
            ["--model.fingerprint_bits", "64", "--model.fingerprint_weight", "0.5"],
            "needs 64-bit fingerprints from the data, but the datamodule has none; set data.fingerprint_bits=64",
        ),
        (["--data.data_fraction", "0"], "data_fraction must be in (0, 1]"),
    ],
)
def test_fit_refuses_bad_settings_before_training(release, tmp_path, capsys, override, words):
    rc = main(
        [
            "fit",
            "--config",
            "configs/phenotypic/ibp_mlp.yaml",
            "--data.release_root",
            str(release),
            "--trainer.max_steps",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path),
            *override,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and words in err[-1]
    assert not list(tmp_path.rglob("*.ckpt"))


def test_image_encoder_ibp_trains(tmp_path):
    import lightning as L

    release = simulate_release(
        tmp_path, n_compounds=30, plates_per_batch=1, n_features=20, images=True, image_size=32, progress=False
    )
    dm = PhenoDataModule(str(release), modality="images", crop_size=24, batch_size=16, fingerprint_bits=32)
    model = IBPModule(
        encoder="image",
        backbone_config={"stem_channels": 8, "widths": [8, 16]},
        fingerprint_bits=32,
        fingerprint_weight=0.5,
    )
    trainer = L.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, dm)
    assert dm.x.shape[1:] == (5, 32, 32) and model.hparams.in_features == 5
    from phenotypic.experiment import well_embeddings

    emb = well_embeddings(model, dm)
    assert emb.shape == (len(dm.dataset.meta), 16) and np.isfinite(emb).all()


def test_scaling_grid_resumes_and_rejects_changed_config(release, tmp_path):
    cfg = GridConfig(fractions=[0.25, 0.5, 1.0], widths=[16], depths=[1], max_steps=4, batch_size=64, k=3)
    # kill -9 a grid run after its first finished cell, then resume it
    killed = tmp_path / "killed"
    argv = [
        "--release",
        str(release),
        "--out",
        str(killed),
        "--fractions",
        "0.25",
        "0.5",
        "1.0",
        "--widths",
        "16",
        "--depths",
        "1",
        "--max-steps",
        "4",
        "--batch-size",
        "64",
        "--k",
        "3",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "phenotypic", "scaling", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done_dir, deadline = killed / ".job" / "done", time.monotonic() + 300
    while not (done_dir.is_dir() and any(done_dir.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "the grid run ended before any cell finished"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list(done_dir.iterdir())) < 3  # interrupted mid-grid
    with pytest.warns(UserWarning, match="taking over the lock"):
        resumed = run_scaling_grid(release, killed, cfg, progress=False)
    res = run_scaling_grid(release, tmp_path, cfg, progress=False)
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), res.drop(columns="seconds"))
    assert len(res) == 3 and res["n_train_wells"].is_monotonic_increasing
    assert {"ibp_probe_top1", "supervised_top1", "chance_top1"} <= set(res.columns)
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()}
    assert len(stamp) == 3
    again = run_scaling_grid(release, tmp_path, cfg, progress=False)  # everything finished: nothing reruns
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()} == stamp
    assert again.equals(res)
    with pytest.raises(ValueError, match=r"other settings \(.*max_steps: 4 -> 5"):
        run_scaling_grid(
            release, tmp_path, GridConfig(fractions=[0.5], widths=[16], depths=[1], max_steps=5), progress=False
        )
    assert main(["scaling", "--release", str(release), "--out", str(tmp_path), "--fit-only", "--n-boot", "3"]) == 0
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert {"log-linear", "power law + offset", "broken neural scaling law"} <= set(fits)
    assert (tmp_path / "scaling.png").stat().st_size > 0
