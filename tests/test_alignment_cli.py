"""``python -m shared.alignment score`` on a real Lightning checkpoint and folders of maps/images."""

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset

from shared.alignment.cli import load_model, main
from shared.alignment.saliency import input_gradients
from shared.pathfinder.module import PathfinderClassifier


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = PathfinderClassifier("resnet_small", {"widths": [4], "stem_channels": 4}, readout="pool_mlp")
    data = TensorDataset(torch.rand(8, 1, 16, 16), torch.randint(0, 2, (8,)))
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, DataLoader(data, batch_size=4))
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_score_checkpoint_against_folders(tmp_path, checkpoint):
    rng = np.random.default_rng(0)
    images = (rng.random((5, 16, 16)) * 255).astype(np.uint8)
    maps = rng.random((5, 16, 16))
    (tmp_path / "images").mkdir()
    (tmp_path / "maps").mkdir()
    for i in range(5):
        Image.fromarray(images[i]).save(tmp_path / "images" / f"im{i}.png")
        np.save(tmp_path / "maps" / f"im{i}.npy", maps[i])
    labels = np.array([0, 1, 1, 0, 1])
    np.save(tmp_path / "labels.npy", labels)
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "score",
                str(checkpoint),
                str(tmp_path / "maps"),
                "--images",
                str(tmp_path / "images"),
                "--labels",
                str(tmp_path / "labels.npy"),
                "--out",
                str(out),
                "--ceiling",
                "1",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["n_images"] == 5 and report["per_image"]["name"] == [f"im{i}" for i in range(5)]
    # independent recomputation: reload, saliency, scipy Spearman
    model = load_model(checkpoint)
    sal = input_gradients(model, images[:, None].astype(np.float32), labels)
    rho = [stats.spearmanr(s.ravel(), m.ravel()).statistic for s, m in zip(sal, maps)]
    assert report["mean_spearman"] == pytest.approx(np.mean(rho), abs=1e-6)
    assert report["score"] == pytest.approx(np.mean(rho), abs=1e-6)
    assert 0.0 <= report["accuracy"] <= 1.0


def test_score_npz_with_clickme_processing_and_smoothgrad(tmp_path, checkpoint):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "images.npz", images=rng.random((3, 1, 16, 16)).astype(np.float32))
    np.savez(tmp_path / "maps.npz", maps=rng.random((3, 32, 32)) * 255)
    out = tmp_path / "sub" / "report.json"
    assert (
        main(
            [
                "score",
                str(checkpoint),
                str(tmp_path / "maps.npz"),
                "--images",
                str(tmp_path / "images.npz"),
                "--out",
                str(out),
                "--clickme-processing",
                "--method",
                "smoothgrad",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["method"] == "smoothgrad" and report["target"] == "predicted" and "accuracy" not in report
    assert report["ceiling"] == pytest.approx(0.6575315343478081)
    assert len(report["per_image"]["spearman"]) == 3


def test_cli_errors_and_help(tmp_path, checkpoint, capsys):
    (tmp_path / "maps").mkdir()
    (tmp_path / "images").mkdir()
    np.save(tmp_path / "maps" / "a.npy", np.zeros((16, 16)))
    np.save(tmp_path / "images" / "b.npy", np.zeros((16, 16)))
    assert (
        main(
            [
                "score",
                str(checkpoint),
                str(tmp_path / "maps"),
                "--images",
                str(tmp_path / "images"),
                "--out",
                str(tmp_path / "r.json"),
            ]
        )
        == 2
    )
    assert "paired by name" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--module must be one of"):
        load_model(checkpoint, "evil.module:Class")
    done = subprocess.run([sys.executable, "-m", "shared.alignment", "score", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--clickme-processing" in done.stdout


@pytest.fixture()
def inputs(tmp_path):
    """Valid maps, images and labels for the checkpoint fixture's model (4 images of 16 x 16)."""
    rng = np.random.default_rng(2)
    np.save(tmp_path / "maps.npy", rng.random((4, 16, 16)))
    np.save(tmp_path / "images.npy", rng.random((4, 1, 16, 16)).astype(np.float32))
    np.save(tmp_path / "labels.npy", np.array([0, 1, 1, 0]))
    return tmp_path


def test_score_draws_images_maps_saliency_and_the_score_distribution(tmp_path, checkpoint, capsys):
    from tests.figure_checks import assert_png

    rng = np.random.default_rng(2)
    np.save(tmp_path / "images.npy", rng.random((8, 1, 16, 16)).astype(np.float32))
    np.save(tmp_path / "maps.npy", rng.random((8, 16, 16)))
    argv = ["score", str(checkpoint), str(tmp_path / "maps.npy"), "--images", str(tmp_path / "images.npy")]
    assert main([*argv, "--out", str(tmp_path / "report.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (f"figure (images, human maps and saliency; score distribution): {tmp_path / 'report.png'}")
    assert_png(tmp_path / "report.png", min_size=(600, 500), software="shared.alignment score")
    # a PNG the command did not write is never replaced, and nothing is scored then
    (tmp_path / "other.png").write_bytes(b"mine")
    assert main([*argv, "--out", str(tmp_path / "other.json")]) == 2
    assert "other.png exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "other.png").read_bytes() == b"mine" and not (tmp_path / "other.json").exists()
    assert main([*argv, "--out", str(tmp_path / "other.json"), "--overwrite"]) == 0
    assert_png(tmp_path / "other.png", min_size=(600, 500))


def _score(checkpoint, d, *extra, maps="maps.npy", images="images.npy"):
    return main(
        ["score", str(checkpoint), str(d / maps), "--images", str(d / images), "--out", str(d / "r.json"), *extra]
    )


def test_score_never_replaces_an_earlier_report(checkpoint, inputs, capsys):
    assert _score(checkpoint, inputs) == 0
    first = (inputs / "r.json").read_text()
    assert _score(checkpoint, inputs, "--ceiling", "1") == 2
    assert "r.json exists; pass --overwrite" in capsys.readouterr().err
    assert (inputs / "r.json").read_text() == first
    assert _score(checkpoint, inputs, "--ceiling", "1", "--overwrite") == 0
    assert json.loads((inputs / "r.json").read_text())["ceiling"] == 1


def _bad_inputs(d: Path, checkpoint: Path) -> dict:
    """name -> (extra argv, maps, images, expected words); each makes one input wrong."""
    from tests.test_shared_core import hostile_checkpoint

    np.save(d / "nan_maps.npy", np.full((4, 16, 16), np.nan))
    np.save(d / "three_maps.npy", np.zeros((3, 16, 16)))
    np.save(d / "small_maps.npy", np.zeros((4, 8, 8)))
    np.save(d / "flat.npy", np.zeros(4))
    np.save(d / "empty.npy", np.zeros((0, 16, 16)))
    np.save(d / "objects.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    np.save(d / "rgb_images.npy", np.zeros((4, 3, 16, 16), np.float32))
    np.savez(d / "two.npz", a=np.zeros((4, 16, 16)), b=np.zeros((4, 16, 16)))
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 not really")
    (d / "notes.txt").write_text("not an array")
    np.save(d / "floats.npy", np.array([0.5, 1, 1, 0]))
    np.save(d / "big_labels.npy", np.array([0, 1, 7, 0]))
    np.save(d / "short_labels.npy", np.array([0, 1]))
    (d / "empty.ckpt").write_bytes(b"")
    (d / "cut.ckpt").write_bytes(checkpoint.read_bytes()[:200])
    hostile_checkpoint(d / "evil.ckpt", d / "pwned")
    import torch

    torch.save(
        {"state_dict": {}, "hyper_parameters": {"encoder": "mlp", "width": 8, "depth": 2, "fingerprint_bits": 0}},
        d / "ibp.ckpt",
    )
    (d / "folder.json").mkdir()
    (d / "afile").write_text("x")
    return {
        "missing maps": ([], "nope.npy", "images.npy", "maps path does not exist"),
        "missing images": ([], "maps.npy", "nope.npy", "images path does not exist"),
        "NaN maps": ([], "nan_maps.npy", "images.npy", "contains 1024 NaN"),
        "count mismatch": ([], "three_maps.npy", "images.npy", "3 maps but 4 images"),
        "size mismatch": ([], "small_maps.npy", "images.npy", "or pass --clickme-processing"),
        "1-D maps": ([], "flat.npy", "images.npy", "must have 3 axes"),
        "no images": ([], "maps.npy", "empty.npy", "holds no images"),
        "pickled objects": ([], "objects.npy", "images.npy", "cannot read"),
        "npz without key": ([], "two.npz", "images.npy", "pass key"),
        "npz unknown key": (["--maps-key", "c"], "two.npz", "images.npy", "has no array 'c'"),
        "corrupt npz": ([], "corrupt.npz", "images.npy", "cannot read"),
        "text file": ([], "notes.txt", "images.npy", "neither a .npy/.npz file nor a zarr array"),
        "wrong channels": ([], "maps.npy", "rgb_images.npy", "must have 1 channel(s) on axis 1, got 3"),
        "float labels": (["--labels", str(d / "floats.npy")], "maps.npy", "images.npy", "must be 4 integers"),
        "labels out of range": (
            ["--labels", str(d / "big_labels.npy")],
            "maps.npy",
            "images.npy",
            "class indices in [0, 2)",
        ),
        "too few labels": (["--labels", str(d / "short_labels.npy")], "maps.npy", "images.npy", "must be 4 integers"),
        "missing labels": (["--labels", str(d / "nope.npy")], "maps.npy", "images.npy", "labels does not exist"),
        "batch size": (["--batch-size", "0"], "maps.npy", "images.npy", "--batch-size must be >= 1"),
        "ceiling": (["--ceiling", "0"], "maps.npy", "images.npy", "--ceiling must be in (0, 1]"),
        "out is a folder": (["--out", str(d / "folder.json")], "maps.npy", "images.npy", "is a folder"),
        "out under a file": (["--out", str(d / "afile" / "r.json")], "maps.npy", "images.npy", "is a file"),
        "empty checkpoint": (["CKPT", "empty.ckpt"], "maps.npy", "images.npy", "is empty (0 bytes)"),
        "truncated checkpoint": (["CKPT", "cut.ckpt"], "maps.npy", "images.npy", "is truncated or corrupt"),
        "hostile checkpoint": (["CKPT", "evil.ckpt"], "maps.npy", "images.npy", "could run code"),
        "foreign checkpoint": (
            ["CKPT", "ibp.ckpt"],
            "maps.npy",
            "images.npy",
            "this is a phenotypic IBP checkpoint; expected a Pathfinder checkpoint",
        ),
    }


def test_every_input_error_is_one_line_with_exit_code_2(checkpoint, inputs, capsys):
    for name, (extra, maps, images, words) in _bad_inputs(inputs, checkpoint).items():
        ckpt = inputs / extra[1] if extra[:1] == ["CKPT"] else checkpoint
        extra = [] if extra[:1] == ["CKPT"] else extra
        rc = _score(ckpt, inputs, *extra, maps=maps, images=images)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and words in err[0], (name, rc, err)
        assert not (inputs / "r.json").exists(), name
    assert not (inputs / "pwned").exists()  # the hostile payload never ran


def test_models_with_batch_statistics_in_evaluation_are_scored():
    """The hGRU's batch_stats readout normalises with the batch's own statistics, also in eval mode: the
    probe that counts classes must not feed it a single image (found by tests/test_readme_commands.py)."""
    from shared.alignment.cli import _n_classes

    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16, 2), torch.nn.BatchNorm1d(2, track_running_stats=False)
    ).eval()
    assert _n_classes(model, np.random.default_rng(0).random((5, 1, 4, 4), dtype=np.float32)) == 2
