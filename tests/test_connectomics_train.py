"""Affinity targets, augmentations, the AffinityModel / AffinityDataModule and `connectomics fit`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from connectomics.affinities import DEFAULT_OFFSETS, compute_affinities, shift_affinities, validate_offsets
from connectomics.augment import AugmentConfig, augment_crop, flip_transpose, misalign
from connectomics.io import open_volume
from connectomics.simulate import simulate_to_zarr
from connectomics.train import AffinityDataModule, AffinityModel, affinity_loss, cli
from shared.checkpoints import load_lightning_module

TINY_UNET = {"features": [4, 8], "downsample": [[1, 2, 2]], "kernel_size": [1, 3, 3]}


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("vols")
    paths = []
    for i, source in enumerate(("sstem", "fib")):
        path = root / f"{source}.zarr"
        simulate_to_zarr(path, source, (6, 48, 48), seed=i, chunks=(6, 48, 48), progress=False)
        paths.append(str(path))
    return paths


def test_affinity_convention():
    labels = np.zeros((3, 4, 5), np.uint64)
    labels[:, :2] = 1
    labels[:, 2:, :3] = 2
    affs, mask = compute_affinities(labels, DEFAULT_OFFSETS)
    assert affs.shape == (12, 3, 4, 5) and affs.dtype == np.float32
    # channel 1 (offset (0, -1, 0)) at voxel v links v to the voxel one row above
    assert affs[1, 0, 1, 0] == 1 and affs[1, 0, 2, 0] == 0 and affs[1, 0, 3, 0] == 1
    assert mask[1, :, 0].sum() == 0 and mask[1, :, 1:].min() == 1  # neighbour outside: masked
    assert affs[:, labels == 0].max() == 0  # background never gets affinity
    assert affs[0, 0].sum() == 0 and mask[0, 0].sum() == 0  # first plane has no z-neighbour
    assert mask[10].sum() == 0  # 27-voxel offset does not fit in 4 rows
    annotated = np.zeros_like(labels, bool)
    annotated[1] = True  # only plane 1 annotated
    _, mask2 = compute_affinities(labels, [[-1, 0, 0]], labels_mask=annotated)
    # z-edges (1, 0) and (2, 1) touch the annotated plane: trained (target 0 across its boundary); none else
    assert mask2[0, 1].min() == 1 and mask2[0, 2].min() == 1 and mask2[0, 0].sum() == 0
    with pytest.raises(ValueError, match="offsets must be non-positive"):
        validate_offsets([[0, 1, 0]])
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        compute_affinities(labels.astype(np.float32), DEFAULT_OFFSETS)
    with pytest.raises(ValueError, match=r"labels must have 3 axes \(plane, row, column\)"):
        compute_affinities(labels[0], DEFAULT_OFFSETS)


def test_shift_between_conventions_roundtrips():
    rng = np.random.default_rng(0)
    affs = rng.random((3, 4, 6, 6)).astype(np.float32)
    offsets = DEFAULT_OFFSETS[:3]
    source = shift_affinities(affs, offsets, to="source")
    np.testing.assert_array_equal(source[1, :, :-1], affs[1, :, 1:])
    back = shift_affinities(source, offsets, to="target")
    np.testing.assert_array_equal(back[:, 1:, 1:, 1:], affs[:, 1:, 1:, 1:])


def test_geometric_augmentations_keep_raw_and_labels_aligned():
    rng = np.random.default_rng(1)
    labels = rng.integers(1, 1000, size=(6, 20, 20)).astype(np.uint64)
    raw = labels.astype(np.float32)
    for seed in range(8):
        r, lab = flip_transpose(raw, labels, np.random.default_rng(seed))
        np.testing.assert_array_equal(r, lab.astype(np.float32))
        r, lab = misalign(raw, labels, np.random.default_rng(seed), margin=3, probability=1.0)
        assert r.shape == (6, 14, 14)
        np.testing.assert_array_equal(r, lab.astype(np.float32))
    config = AugmentConfig(intensity=0.0, p_missing=0.0, p_blur=0.0, p_misalign=1.0, max_misalign=2)
    r, lab = augment_crop(raw / 1000, labels, np.random.default_rng(3), config)
    np.testing.assert_allclose(r * 1000, lab.astype(np.float32), rtol=1e-5)
    blanked = augment_crop(
        raw / 1000, labels, np.random.default_rng(0), AugmentConfig(p_missing=1.0, p_misalign=0.0, flips=False)
    )[0]
    assert blanked.max() == 0


def test_loss_is_masked_and_balanced():
    target = torch.zeros(1, 2, 2, 4, 4)
    target[:, :, :, :1] = 1
    mask = torch.ones_like(target)
    logits = torch.zeros_like(target)
    loss, per_channel = affinity_loss(logits, target, mask)
    assert per_channel.shape == (2,) and loss.item() == pytest.approx(np.log(2), rel=1e-5)
    wrong = logits.clone()
    wrong[:, :, 0] = 50.0
    mask[:, :, 0] = 0
    masked, _ = affinity_loss(wrong, target, mask)
    assert masked.item() == pytest.approx(np.log(2), rel=1e-5)  # masked voxels contribute nothing


def test_affinity_model_interface():
    model = AffinityModel("unet3d", TINY_UNET)
    assert model.offsets == DEFAULT_OFFSETS
    out = model(torch.rand(2, 1, 4, 16, 16))
    assert out.shape == (2, 12, 4, 16, 16)
    with pytest.raises(ValueError, match="out_channels is 3 but there are 12 offsets"):
        AffinityModel("unet3d", {**TINY_UNET, "out_channels": 3})
    with pytest.raises(ValueError, match="backbone 'unet2d' takes images; affinity models need a volume"):
        AffinityModel("unet2d", {"features": [4]})
    with pytest.raises(ValueError, match="backbone 'int' takes videos"):  # 3D input, but (frame, row, column)
        AffinityModel("int", {})
    gamma = AffinityModel(
        "gammanet3d", {"features": [4], "timesteps": 2, "kernel_sizes": [[1, 3, 3]]}, offsets=DEFAULT_OFFSETS[:3]
    )
    logits = gamma(torch.rand(1, 1, 3, 12, 12))
    assert logits.shape == (1, 3, 3, 12, 12)
    logits.sum().backward()


def test_datamodule_crops_and_errors(volumes, tmp_path):
    dm = AffinityDataModule(
        train=volumes, crop_shape=[4, 24, 24], batch_size=2, samples_per_epoch=4, data_fraction=0.25
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["raw"].shape == (2, 1, 4, 24, 24) and batch["raw"].dtype == torch.float32
    assert 0.0 <= batch["raw"].min() and batch["raw"].max() <= 1.0
    assert batch["affinities"].shape == (2, 12, 4, 24, 24) and batch["mask"].shape == (2, 12, 4, 24, 24)
    assert dm.train_set.volumes[0][-1] == (6, 32, 32)  # sqrt(0.25) of the rows/columns, at least crop+margin
    val = [dm.val_set[i]["raw"] for i in range(2)]
    assert torch.equal(val[0], dm.val_set[0]["raw"]) and not torch.equal(val[0], val[1])
    with pytest.raises(ValueError, match="smaller than the crop plus augmentation margin"):
        AffinityDataModule(train=volumes, crop_shape=[8, 24, 24]).setup("fit")
    import zarr

    root = zarr.open_group(str(tmp_path / "mismatch.zarr"), mode="w")
    root.create_array("raw", data=np.zeros((6, 48, 48), np.uint8))
    root.create_array("labels", data=np.zeros((6, 48, 40), np.uint64))
    with pytest.raises(ValueError, match="must have the same shape"):
        AffinityDataModule(train=[str(tmp_path / "mismatch.zarr")]).setup("fit")
    with pytest.raises(ValueError, match="data.train must list at least one container"):
        AffinityDataModule(train=[])


def test_fit_cli_saves_resumes_and_reloads(volumes, tmp_path):
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": 2,
            "accelerator": "cpu",
            "devices": 1,
            "default_root_dir": str(tmp_path),
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 1,
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True},
                }
            ],
        },
        "model": {"backbone": "unet3d", "backbone_config": TINY_UNET, "lr": 0.01},
        "data": {
            "train": volumes[:1],
            "val": volumes[1:],
            "crop_shape": [4, 24, 24],
            "batch_size": 1,
            "samples_per_epoch": 2,
            "val_samples": 1,
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli(["--config", str(path)]) == 0
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.exists()
    first = torch.load(last, weights_only=True)
    assert first["global_step"] == 2
    assert cli(["--config", str(path), "--trainer.max_steps", "4", "--ckpt_path", str(last)]) == 0
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] == 4
    model = load_lightning_module(AffinityModel, last)
    assert model.offsets == DEFAULT_OFFSETS
    x = torch.rand(1, 1, 4, 24, 24)
    with torch.no_grad():
        assert model(x).shape == (1, 12, 4, 24, 24)
    # the shipped configs parse and build both models
    for name in ("unet", "gammanet"):
        shipped = yaml.safe_load(Path(f"configs/connectomics/{name}.yaml").read_text())
        AffinityModel(**shipped["model"])


def test_fit_writes_one_run_folder_refuses_reuse_resumes_quietly_and_overwrites(volumes, tmp_path, capsys):
    """The shipped configs' checkpoint layout (no dirpath): everything in trainer.default_root_dir; a second fit
    there is refused (issue 15); --ckpt_path resumes without the "val/loss not found" warning; --overwrite
    replaces only the run's own files (issue 16)."""
    import warnings

    from connectomics.cli import main

    shipped = yaml.safe_load(Path("configs/connectomics/unet.yaml").read_text())["trainer"]["callbacks"]
    assert all("dirpath" not in c["init_args"] for c in shipped)  # one folder per run, never a shared one
    run = tmp_path / "run"
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": 3,
            "accelerator": "cpu",
            "devices": 1,
            "default_root_dir": str(run),
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 1,
            "callbacks": shipped,
        },
        "model": {"backbone": "unet3d", "backbone_config": TINY_UNET, "lr": 0.01},
        "data": {
            "train": volumes[:1],
            "val": volumes[1:],
            "crop_shape": [4, 24, 24],
            "batch_size": 1,
            "samples_per_epoch": 2,
            "val_samples": 1,
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli(["--config", str(path)]) == 0  # stops mid-epoch: step 3 of epochs of 2
    last = run / "checkpoints" / "last.ckpt"
    assert (run / "config.yaml").is_file() and not (run / "lightning_logs").exists()
    assert torch.load(last, weights_only=True)["global_step"] == 3
    assert [p.name for p in (run / "checkpoints").glob("best-*.ckpt")] == ["best-epoch=0-step=2.ckpt"]
    before = last.read_bytes()

    capsys.readouterr()
    assert main(["fit", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds an earlier run" in err[0] and f"--ckpt_path {last}" in err[0]
    assert last.read_bytes() == before

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli(["--config", str(path), "--trainer.max_steps", "5", "--ckpt_path", str(last)]) == 0
    noise = [str(w.message) for w in caught if "monitored key" in str(w.message) or "not empty" in str(w.message)]
    assert not noise
    assert torch.load(last, weights_only=True)["global_step"] == 5

    (run / "notes.txt").write_text("mine")
    assert cli(["--config", str(path), "--trainer.max_steps", "2", "--overwrite"]) == 0
    assert torch.load(last, weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best-epoch=0-step=2.ckpt",
        "epoch=0-step=2.ckpt",
        "last.ckpt",
    ]
    assert (run / "notes.txt").read_text() == "mine"
    assert yaml.safe_load((run / "config.yaml").read_text())["overwrite"] is False  # a saved config never deletes


def test_star_refuses_unmatched_budgets_and_formats_results(tmp_path):
    import pandas as pd

    from connectomics.star import results_markdown, run_star

    models = {
        "big": {"backbone": "unet3d", "backbone_config": {"features": [16, 32]}},
        "small": {"backbone": "unet3d", "backbone_config": TINY_UNET},
    }
    with pytest.raises(ValueError, match=r"parameter budgets differ by .*x \(\{'big': \d+, 'small': \d+\}\)"):
        run_star(out_dir=str(tmp_path / "out"), data_dir=str(tmp_path / "data"), models=models)
    assert not (tmp_path / "data").exists()  # refused before simulating anything
    table = pd.DataFrame(
        [
            {
                "model": "unet",
                "parameters": 10,
                "data_fraction": 0.1,
                "threshold": 0.5,
                "in_source_arand": 0.25,
                "held_out_arand": 0.5,
                "held_out_voi_split": 1.0,
                "held_out_voi_merge": 2.0,
                "held_out_cremi": 1.5,
                "train_seconds": 3.0,
            }
        ]
    )
    text = results_markdown(table, "retina", ["sstem"])
    assert "held out: retina" in text and "| unet | 10 | 0.1 | 0.5 | 0.2500 | 0.5000 |" in text


def test_loss_ignores_affinities_touching_unlabelled_voxels(tmp_path):
    path = simulate_to_zarr(
        tmp_path / "sparse.zarr", "sbem", (6, 48, 48), seed=1, chunks=(6, 48, 48), progress=False, label_fraction=0.4
    )
    data = AffinityDataModule(
        train=[str(path)], crop_shape=[6, 48, 48], augment=False, val_samples=1, offsets=DEFAULT_OFFSETS[:3]
    )
    data.setup()
    item = data.val_set[0]
    labelled = open_volume(f"{path}/labels_mask").data.compute() > 0
    assert 0 < labelled.mean() < 1
    mask = item["mask"].numpy()
    # x-edge at v joins v and v - (0, 0, 1): trained when either voxel is labelled (gunpowder's rule)
    both_unlabelled = ~labelled[:, :, 1:] & ~labelled[:, :, :-1]
    np.testing.assert_array_equal(mask[2][:, :, 1:] > 0, ~both_unlabelled)
    assert mask[2][:, :, 0].sum() == 0
    # a labelled object's boundary with unlabelled voxels is trained as "different objects"
    border = labelled[:, :, 1:] != labelled[:, :, :-1]
    assert border.any() and item["affinities"].numpy()[2][:, :, 1:][border].max() == 0
    # edges between two unlabelled voxels contribute nothing to the loss, whatever the prediction there
    logits = torch.randn(1, *item["affinities"].shape)
    target, m = item["affinities"][None], item["mask"][None]
    changed = logits.clone()
    changed[:, 2, :, :, 1:][:, torch.from_numpy(both_unlabelled)] += 5.0
    torch.testing.assert_close(affinity_loss(logits, target, m), affinity_loss(changed, target, m))
    # with augmentation the mask travels with the labels through misalignment and flips
    augmented = AffinityDataModule(
        train=[str(path)],
        crop_shape=[6, 32, 32],
        val_samples=1,
        offsets=DEFAULT_OFFSETS[:3],
        augment_config={"p_misalign": 1.0},
    )
    augmented.setup()
    sample = augmented.train_set[0]
    assert (sample["affinities"] * (1 - sample["mask"])).max() == 0  # unlabelled: 0, never the reserved id
    assert 0 < sample["mask"].mean() < 1
