"""IBP LightningModule, datamodule splits, Pheno-CA tasks, the CLI (fit -> evaluate) and the scaling grid."""

import json

import numpy as np
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


def test_fit_cli_reload_and_evaluate(release, tmp_path):
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
    res = run_scaling_grid(release, tmp_path, cfg, progress=False)
    assert len(res) == 3 and res["n_train_wells"].is_monotonic_increasing
    assert {"ibp_probe_top1", "supervised_top1", "chance_top1"} <= set(res.columns)
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()}
    again = run_scaling_grid(release, tmp_path, cfg, progress=False)  # everything finished: nothing reruns
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()} == stamp
    assert again.equals(res)
    with pytest.raises(ValueError, match="different configuration"):
        run_scaling_grid(
            release, tmp_path, GridConfig(fractions=[0.5], widths=[16], depths=[1], max_steps=5), progress=False
        )
    assert main(["scaling", "--release", str(release), "--out", str(tmp_path), "--fit-only", "--n-boot", "3"]) == 0
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert {"log-linear", "power law + offset", "broken neural scaling law"} <= set(fits)
    assert (tmp_path / "scaling.png").stat().st_size > 0
