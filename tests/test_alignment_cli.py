"""``python -m shared.alignment score`` on a real Lightning checkpoint and folders of maps/images."""

import json
import subprocess
import sys

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
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
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
    assert main(["score", str(checkpoint), str(tmp_path / "maps"), "--images", str(tmp_path / "images"),
                 "--labels", str(tmp_path / "labels.npy"), "--out", str(out), "--ceiling", "1"]) == 0
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
    assert main(["score", str(checkpoint), str(tmp_path / "maps.npz"), "--images", str(tmp_path / "images.npz"),
                 "--out", str(out), "--clickme-processing", "--method", "smoothgrad"]) == 0
    report = json.loads(out.read_text())
    assert report["method"] == "smoothgrad" and report["target"] == "predicted" and "accuracy" not in report
    assert report["ceiling"] == pytest.approx(0.6575315343478081)
    assert len(report["per_image"]["spearman"]) == 3


def test_cli_errors_and_help(tmp_path, checkpoint):
    (tmp_path / "maps").mkdir()
    (tmp_path / "images").mkdir()
    np.save(tmp_path / "maps" / "a.npy", np.zeros((16, 16)))
    np.save(tmp_path / "images" / "b.npy", np.zeros((16, 16)))
    with pytest.raises(SystemExit, match="paired by name"):
        main(["score", str(checkpoint), str(tmp_path / "maps"), "--images", str(tmp_path / "images"),
              "--out", str(tmp_path / "r.json")])
    with pytest.raises(ValueError, match="--module must be one of"):
        load_model(checkpoint, "evil.module:Class")
    done = subprocess.run([sys.executable, "-m", "shared.alignment", "score", "--help"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and "--clickme-processing" in done.stdout
