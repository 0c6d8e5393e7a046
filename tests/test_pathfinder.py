"""Pathfinder: the stimulus generator, its zarr store, the DataModule, the LightningCLI entry and the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pathfinder_cli_args import tiny_fit_args
from scipy import ndimage

from shared.checkpoints import load_lightning_module
from shared.data.pathfinder import (
    PathfinderConfig,
    balanced_labels,
    generate_pathfinder,
    load_pathfinder_zarr,
    markers_connected,
    write_pathfinder_zarr,
)
from shared.pathfinder import PathfinderClassifier, PathfinderDataModule
from shared.pathfinder.__main__ import main as pathfinder_main
from shared.pathfinder.module import recurrence_metrics

SMALL = PathfinderConfig(image_size=(48, 48), contour_length=6, geometry_scale=0.3)


@pytest.fixture(scope="module")
def small_set():
    return generate_pathfinder(16, config=SMALL, seed=7)


def test_same_seed_same_images_and_other_seed_differs(small_set):
    again = generate_pathfinder(16, config=SMALL, seed=7)
    np.testing.assert_array_equal(small_set.images, again.images)
    np.testing.assert_array_equal(small_set.path_masks, again.path_masks)
    np.testing.assert_array_equal(small_set.labels, again.labels)
    other = generate_pathfinder(16, config=SMALL, seed=8)
    assert not np.array_equal(small_set.images, other.images)
    # an image depends only on (seed, index): generating a subset reproduces it
    subset = generate_pathfinder(16, config=SMALL, seed=7, indices=[3, 11])
    np.testing.assert_array_equal(subset.images, small_set.images[[3, 11]])


def test_outputs_shapes_dtypes_ranges(small_set):
    assert small_set.images.shape == (16, 1, 48, 48) and small_set.images.dtype == np.float32
    assert small_set.images.min() >= 0 and small_set.images.max() <= 1
    assert small_set.path_masks.shape == (16, 1, 48, 48) and set(np.unique(small_set.path_masks)) <= {0, 1}
    assert small_set.markers.shape == (16, 2, 2) and small_set.labels.dtype == np.int64
    # paddles and markers are drawn: bright pixels beyond the two markers, and some clutter
    assert ((small_set.images > 0.5).sum(axis=(1, 2, 3)) > 30).all()
    assert (small_set.num_distractor_paddles > 0).any()


def test_labels_exactly_balanced():
    for n in (2, 9, 64):
        labels = balanced_labels(n, 3)
        assert labels.sum() == (n + 1) // 2 and set(np.unique(labels)) == {0, 1}
    assert not np.array_equal(balanced_labels(64, 1), balanced_labels(64, 2))


def test_markers_lie_on_one_path_iff_positive(small_set):
    for image, mask, markers, label in zip(small_set.images, small_set.path_masks, small_set.markers, small_set.labels):
        assert markers_connected(mask, markers) == bool(label)
        components, n = ndimage.label(mask[0] > 0, structure=np.ones((3, 3)))
        # positives: one marked path; negatives: two separate marked paths
        assert n == (1 if label else 2)
        # the markers are drawn in the image, at the end of the path
        for r, c in np.rint(markers).astype(int):
            assert image[0, r, c] > 0.9 and mask[0, r, c] == 1
        # the path mask covers bright paddle pixels (it is the path through the image, not elsewhere)
        assert image[0][mask[0] > 0].mean() > 0.3


def test_image_size_and_published_geometry():
    rect = generate_pathfinder(
        2, config=PathfinderConfig(image_size=(48, 64), contour_length=6, geometry_scale=0.4), seed=0
    )
    assert rect.images.shape == (2, 1, 48, 64)
    # the published stimulus resized (scale = 100 / 300) with 14-paddle contours
    cfg = PathfinderConfig(image_size=100, contour_length=14)
    assert cfg.scale == pytest.approx(1 / 3) and cfg.num_distractor_snakes == 8
    big = generate_pathfinder(2, config=cfg, seed=1)
    assert big.images.shape == (2, 1, 100, 100)
    assert all(markers_connected(m, k) == bool(y) for m, k, y in zip(big.path_masks, big.markers, big.labels))


def test_bad_config_and_impossible_geometry_are_clear_errors():
    with pytest.raises(ValueError, match="contour_length"):
        PathfinderConfig(contour_length=1)
    with pytest.raises(ValueError, match="image_size"):
        PathfinderConfig(image_size=(8, 8))
    with pytest.raises(TypeError, match="unknown Pathfinder config key"):
        PathfinderConfig.from_dict({"contour_lenght": 6})
    tight = PathfinderConfig(image_size=24, contour_length=14, geometry_scale=0.5, max_image_retrial=3)
    with pytest.raises(RuntimeError, match="does not fit"):
        generate_pathfinder(2, config=tight, seed=0)


def test_zarr_round_trip_resume_and_refusal(tmp_path):
    path = tmp_path / "pf.zarr"
    write_pathfinder_zarr(path, 10, config=SMALL, seed=(1, 0), block_size=4, progress=False)
    data = load_pathfinder_zarr(path, expected_config=SMALL)
    direct = generate_pathfinder(10, config=SMALL, seed=(1, 0))
    np.testing.assert_array_equal(data.images, direct.images)
    np.testing.assert_array_equal(data.path_masks, direct.path_masks)
    np.testing.assert_array_equal(data.labels, direct.labels)
    assert data.config == SMALL and data.seed == (1, 0)

    # an interrupted write (a block not marked done) is refused by the loader and resumed by the writer
    import zarr

    group = zarr.open_group(path, mode="r+")
    group["done"][1] = False
    (path / "images/.job/done/block-1").unlink()
    group["images"][4:8] = 0.0
    with pytest.raises(ValueError, match="incomplete"):
        load_pathfinder_zarr(path)
    write_pathfinder_zarr(path, 10, config=SMALL, seed=(1, 0), block_size=4, progress=False)
    np.testing.assert_array_equal(load_pathfinder_zarr(path).images, direct.images)

    # a different configuration is never mixed in: refused, or regenerated only on overwrite
    other = PathfinderConfig(image_size=(48, 48), contour_length=9, geometry_scale=0.3)
    with pytest.raises(ValueError, match=r"config.contour_length: stored 6, requested 9"):
        write_pathfinder_zarr(path, 10, config=other, seed=(1, 0), block_size=4, progress=False)
    with pytest.raises(ValueError, match="seed"):
        write_pathfinder_zarr(path, 10, config=SMALL, seed=(2, 0), block_size=4, progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        load_pathfinder_zarr(path, expected_config=other)
    write_pathfinder_zarr(path, 4, config=other, seed=0, block_size=4, progress=False, overwrite=True)
    assert load_pathfinder_zarr(path).config.contour_length == 9

    # something that is not a Pathfinder store is never deleted
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(foreign, mode="w").attrs["format"] = "other"
    with pytest.raises(ValueError, match="not a Pathfinder dataset"):
        write_pathfinder_zarr(foreign, 4, config=SMALL, overwrite=True, progress=False)
    assert foreign.exists()


def test_zarr_writer_never_writes_into_a_group_it_did_not_create(tmp_path):
    """Issue 15: a Pathfinder group without the writer's bookkeeping (another tool, an older writer) is
    refused unless overwrite; a second writer holding the lock is named; the bookkeeping travels with a copy."""
    import json
    import os
    import shutil
    import socket

    import zarr

    from shared.cli import UserError
    from shared.jobs import JobLockedError, OutputExistsError

    path = tmp_path / "pf.zarr"
    write_pathfinder_zarr(path, 4, config=SMALL, seed=0, block_size=2, progress=False)
    shutil.copytree(path, tmp_path / "copy.zarr")
    write_pathfinder_zarr(tmp_path / "copy.zarr", 4, config=SMALL, seed=0, block_size=2, progress=False)
    np.testing.assert_array_equal(
        load_pathfinder_zarr(tmp_path / "copy.zarr").images, load_pathfinder_zarr(path).images
    )
    shutil.rmtree(path / "images/.job")
    stamp = (path / "zarr.json").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="not written by write_pathfinder_zarr"):
        write_pathfinder_zarr(path, 4, config=SMALL, seed=0, block_size=2, progress=False)
    assert (path / "zarr.json").stat().st_mtime_ns == stamp and not (path / "images/.job").exists()
    write_pathfinder_zarr(path, 4, config=SMALL, seed=0, block_size=2, progress=False, overwrite=True)
    assert load_pathfinder_zarr(path).labels.shape == (4,)
    assert "images" in zarr.open_group(path, mode="r")
    lock = path / "images/.job/lock"
    lock.write_text(
        json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": "now", "command": "pathfinder generate"}
        )
    )
    with pytest.raises(JobLockedError, match=f"pid {os.getpid()}"):
        write_pathfinder_zarr(path, 4, config=SMALL, seed=0, block_size=2, progress=False)
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        write_pathfinder_zarr(tmp_path / "file.zarr", 4, config=SMALL, progress=False)


def _datamodule(root: Path, **kw) -> PathfinderDataModule:
    args = dict(
        root=str(root), image_size=48, contour_length=6, geometry_scale=0.3, n_train=16, n_val=8, n_test=8, batch_size=4
    )
    args.update(kw)
    return PathfinderDataModule(**args)


def test_datamodule_shapes_flips_and_root_validation(tmp_path):
    dm = _datamodule(tmp_path / "data")
    dm.prepare_data()
    assert all((tmp_path / "data" / f"{s}.zarr").is_dir() for s in ("train", "val", "test"))
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 48, 48) and x.dtype == torch.float32
    assert y.shape == (4,) and y.dtype == torch.int64
    assert set(dm.datasets) == {"train", "val"}
    val = dm.datasets["val"]
    assert not val.augment and dm.datasets["train"].augment
    # flips keep the pixel content (a flipped copy of the stored image)
    torch.manual_seed(0)
    img, _ = dm.datasets["train"][0]
    stored = dm.datasets["train"].images[0]
    assert any(torch.equal(img, torch.flip(stored, dims)) for dims in ([], [1], [2], [1, 2]))
    # splits differ (own seeds) and are balanced
    assert not torch.equal(dm.datasets["train"].images[:8], val.images)
    assert int(val.labels.sum()) == 4
    with pytest.raises(ValueError, match="is a file"):
        (tmp_path / "file").write_text("x")
        _datamodule(tmp_path / "file")
    with pytest.raises(ValueError, match="different configuration"):
        _datamodule(tmp_path / "data", contour_length=9).prepare_data()


def test_classifier_on_feedforward_backbone_and_bad_names():
    model = PathfinderClassifier("resnet_small", {"widths": [8]}, readout="reference")
    logits = model(torch.rand(3, 1, 32, 32))
    assert logits.shape == (3, 2)
    steps = model.timestep_readouts(torch.rand(2, 1, 32, 32))
    assert steps["probability"].shape == (1, 2)
    with pytest.raises(KeyError, match="unknown backbone"):
        PathfinderClassifier("no_such_net")
    with pytest.raises(ValueError, match="readout"):
        PathfinderClassifier("resnet_small", readout="avg")
    with pytest.raises(ValueError, match="2D"):
        PathfinderClassifier("unet3d")


def test_recurrence_metrics_flattens_stats():
    from dataclasses import dataclass

    @dataclass
    class Stats:
        residuals: list
        neumann_iterations: int
        converged: bool

    metrics = recurrence_metrics(Stats([0.5, 0.1, 0.01], 7, True))
    assert metrics == {
        "residuals_final": 0.01,
        "residuals_mean": pytest.approx(0.61 / 3),
        "neumann_iterations": 7.0,
        "converged": 1.0,
    }


def test_cli_fit_two_batches_writes_reloadable_checkpoint(tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs" / "pathfinder" / "resnet.yaml"
    pathfinder_main(["fit", "--config", str(config), *tiny_fit_args(tmp_path), "--trainer.limit_train_batches", "2"])
    ckpts = sorted((tmp_path / "runs").rglob("*.ckpt"))
    assert ckpts, "Lightning saved no checkpoint"
    model = load_lightning_module(PathfinderClassifier, ckpts[-1])
    assert model.hparams.backbone == "resnet_small" and model.hparams.backbone_config["widths"] == [8, 16]
    x = torch.rand(2, 1, 48, 48)
    assert torch.isfinite(model(x)).all()


def test_demo_runs_tiny_and_reports(tmp_path):
    from shared.pathfinder.demo import run_demo
    from shared.report import Report

    report = Report("t")
    result = run_demo(
        tmp_path / "pathfinder",
        report,
        model={
            "name": "tiny",
            "backbone": "resnet_small",
            "backbone_config": {"widths": [4], "stem_channels": 4},
            "readout": "reference",
        },
        data={"image_size": 48, "geometry_scale": 0.3, "n_train": 16, "n_val": 8, "n_test": 8, "batch_size": 8},
        steps=3,
    )
    assert 0.0 <= result["test_acc"] <= 1.0 and result["parameters"] > 0 and result["train_steps"] == 3
    for key in ("examples_png", "learning_curve_png", "timesteps_png"):
        png = Path(result[key])
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG" and png.parent == tmp_path / "pathfinder"
    (section,) = report.sections
    assert section.tables[0][1]["test_acc"].iloc[0] == result["test_acc"] and len(section.figures) == 3
    html = report.write(tmp_path)
    assert "pathfinder/pathfinder_timesteps.png" in html.read_text()


@pytest.mark.parametrize("name", ["hgru", "hgru_crbp", "resnet", "gammanet"])
def test_example_configs_build_their_models(name):
    import yaml

    config = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs" / "pathfinder" / f"{name}.yaml").read_text()
    )
    model = PathfinderClassifier(**config["model"])
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 2)
    # every example trains on the same data, so their stored splits are interchangeable
    assert config["data"]["root"] == "data/pathfinder/pf6_48" and config["data"]["image_size"] == 48


def test_crbp_training_logs_neumann_statistics_and_penalty(tmp_path):
    import lightning as L

    model = PathfinderClassifier(
        "hgru",
        {
            "hidden_channels": 4,
            "kernel_size": 3,
            "frontend_kernel": 3,
            "timesteps": 3,
            "mode": "crbp",
            "norm": "instance",
        },
    )
    dm = _datamodule(tmp_path / "data", n_train=8, n_val=4, n_test=4)
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, datamodule=dm)
    metrics = trainer.callback_metrics
    assert "train/lipschitz_penalty" in metrics and float(metrics["train/lipschitz_penalty"]) >= 0
    assert float(metrics["train/recurrence/neumann_iterations"]) >= 0
    assert "train/recurrence/residuals_final" in metrics and "val/recurrence/residuals_final" in metrics


def test_demo_settings_are_the_documented_gabor_hgru():
    from shared.pathfinder.demo import DEMO_DATA, DEMO_MODEL
    from shared.pathfinder.experiment import build_model

    model = build_model(DEMO_MODEL)
    assert model.backbone.config.frontend_init == "gabor" and model.backbone.config.norm == "batch_stats"
    assert torch.all(model.backbone.cell.norm_exc.norms[0].weight == 0.5)  # horizontal maps on from the start
    assert model.hparams.readout == "reference" and model.hparams.readout_norm == "batch_stats"
    # honest Pathfinder: the shortest published contours, with distractors
    assert DEMO_DATA["contour_length"] >= 6 and DEMO_DATA["distractor_paddles"] > 0


def test_reference_readout_with_batch_stats_gives_the_same_logits_in_train_and_eval():
    torch.manual_seed(0)
    model = PathfinderClassifier("hgru", {"hidden_channels": 4, "kernel_size": 3, "frontend_kernel": 5, "timesteps": 3})
    x = torch.rand(6, 1, 24, 24)
    assert torch.allclose(model.train()(x), model.eval()(x), atol=1e-5)
    with pytest.raises(ValueError, match="readout norm"):
        PathfinderClassifier("hgru", {"hidden_channels": 4}, readout_norm="layer")
    with pytest.raises(ValueError, match="lr_schedule"):
        PathfinderClassifier("hgru", {"hidden_channels": 4}, lr_schedule="step")


@pytest.mark.slow
def test_demo_learning_benchmark_runs_tiny_and_reuses_its_cache(tmp_path, capsys):
    import importlib.util
    import json

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pathfinder_demo_learning.py"
    spec = importlib.util.spec_from_file_location("pathfinder_demo_learning", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = [
        "--out",
        str(tmp_path),
        "--seeds",
        "0,1",
        "--steps",
        "4",
        "--data",
        json.dumps({"n_train": 32, "n_val": 16, "n_test": 16, "batch_size": 8, "generation_workers": 1}),
        "--model",
        json.dumps({"hidden_channels": 4, "kernel_size": 3, "timesteps": 2}),
    ]
    assert bench.main(args) == 0
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["seeds"] == [0, 1] and len(summary["test_acc"]) == 2
    assert all(row["train_steps"] == 4 for row in summary["rows"].values())
    assert (tmp_path / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "mean" in capsys.readouterr().out
    before = (tmp_path / "seed0" / "result.json").stat().st_mtime_ns
    assert bench.main(args) == 0  # cached: not retrained
    assert (tmp_path / "seed0" / "result.json").stat().st_mtime_ns == before
    assert bench.main(["--seeds", "x"]) == 2
