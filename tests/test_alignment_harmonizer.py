"""The harmonizer loss (against numpy/scipy re-computations) and a known-answer training test."""

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import DataLoader, TensorDataset

from shared.alignment.harmonizer import (
    BINOMIAL_KERNEL,
    HarmonizerCallback,
    gaussian_pyramid,
    harmonizer_loss,
    standardize_cut,
    unpack_batch,
)
from shared.alignment.saliency import input_gradients
from shared.alignment.scores import alignment_score
from shared.alignment.synthetic import add_label_shortcut, pathfinder_with_maps


@pytest.mark.parametrize("size", [(16, 16), (15, 10)])
def test_pyramid_matches_scipy_same_padding(size):
    x = np.random.default_rng(0).random((2, *size))
    levels = gaussian_pyramid(torch.tensor(x), 3)
    k = BINOMIAL_KERNEL.double().numpy()
    cur = x
    for level in levels[1:]:
        nxt = []
        for img in cur:
            pr, pc = (max((-(-n // 2) - 1) * 2 + 5 - n, 0) for n in img.shape)
            padded = np.pad(img, ((pr // 2, pr - pr // 2), (pc // 2, pc - pc // 2)))
            full = ndimage.correlate(padded, k, mode="constant")[2:-2, 2:-2]
            nxt.append(full[::2, ::2])
        cur = np.stack(nxt)
        np.testing.assert_allclose(level.numpy(), cur, atol=1e-12)


def test_standardize_cut_and_loss_properties():
    rng = np.random.default_rng(1)
    x = rng.random((3, 8, 8))
    expected = np.maximum((x - x.mean((1, 2), keepdims=True)) / (x.std((1, 2), keepdims=True) + 1e-5), 0)
    np.testing.assert_allclose(standardize_cut(torch.tensor(x)).numpy(), expected, rtol=1e-10)
    h = torch.tensor(x)
    # a saliency map equal to the human map (up to scale) has ~zero loss; tokens 0 switch it off
    assert float(harmonizer_loss(3 * h, h)) < 1e-8
    s = torch.tensor(rng.random((3, 8, 8)), requires_grad=True)
    assert float(harmonizer_loss(s, h)) > 1e-3
    assert float(harmonizer_loss(s, h, torch.zeros(3))) == 0.0
    half = harmonizer_loss(s, h, torch.tensor([1.0, 0.0, 0.0]))
    per_image = harmonizer_loss(s[:1], h[:1])
    assert float(half) == pytest.approx(float(per_image) / 3, rel=1e-6)  # token-0 images dilute the mean
    half.backward()
    assert s.grad is not None and float(s.grad[1:].abs().sum()) == 0.0


def test_unpack_batch_forms():
    x, y, m = torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2, 4, 4)
    assert unpack_batch((x, y, m))[3] is None and len(unpack_batch((x, y, m))[4]) == 2
    d = unpack_batch({"images": x, "labels": y, "human_maps": m, "has_map": torch.ones(2)})
    assert set(d[4]) == {"images", "labels"}
    with pytest.raises(ValueError, match="harmonizer batch"):
        unpack_batch((x, y))


class TinyClassifier(L.LightningModule):
    """A generic classification LightningModule that knows nothing about the harmonizer."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 20 * 20, 2)
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _train(images, data, harmonize: bool, steps: int) -> TinyClassifier:
    torch.manual_seed(0)
    model = TinyClassifier()
    tensors = [torch.tensor(images), torch.tensor(data.labels)]
    if harmonize:
        tensors.append(torch.tensor(data.human_maps))
    loader = DataLoader(
        TensorDataset(*tensors), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    trainer = L.Trainer(
        max_steps=steps,
        callbacks=[HarmonizerCallback(weight=1.0)] if harmonize else [],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        deterministic=True,
    )
    trainer.fit(model, loader)
    return model


def test_harmonizer_raises_alignment_on_pathfinder():
    """Pathfinder with a planted label shortcut in a corner: without the harmonizer the model reads the
    corner; with it, the saliency must follow the path (the human map), at the same accuracy."""
    train = pathfinder_with_maps(64, image_size=40, geometry_scale=0.3, seed=0)
    test = pathfinder_with_maps(32, image_size=40, geometry_scale=0.3, seed=1)
    train_x = add_label_shortcut(train.images, train.labels)
    test_x = add_label_shortcut(test.images, test.labels)
    scores, accuracy = {}, {}
    for harmonize in (False, True):
        model = _train(train_x, train, harmonize, steps=150)
        sal = input_gradients(model, test_x, test.labels)
        scores[harmonize] = alignment_score(sal, test.human_maps, ceiling=1.0)
        with torch.no_grad():
            accuracy[harmonize] = float((model(torch.tensor(test_x)).argmax(1).numpy() == test.labels).mean())
    assert min(accuracy.values()) > 0.9
    assert scores[True].mean_spearman > scores[False].mean_spearman + 0.08
    assert scores[True].dice > scores[False].dice


def test_callback_is_one_line_of_lightningcli_config():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--callbacks", type=list[L.Callback])
    cfg = parser.parse_args(
        ["--callbacks", '[{"class_path": "shared.alignment.HarmonizerCallback", "init_args": {"weight": 0.5}}]']
    )
    (callback,) = parser.instantiate_classes(cfg).callbacks
    assert isinstance(callback, HarmonizerCallback) and callback.weight == 0.5


def test_callback_adds_the_term_to_dict_losses_and_respects_tokens():
    model = TinyClassifier()
    callback = HarmonizerCallback(weight=2.0)
    model.log = lambda *a, **k: None  # outside a Trainer
    model.training_step = lambda batch, idx: {"loss": torch.tensor(1.0)}
    callback.setup(None, model, "fit")
    x, y = torch.rand(4, 1, 40, 40), torch.tensor([0, 1, 0, 1])
    maps = torch.rand(4, 1, 40, 40)
    out = model.training_step({"images": x, "labels": y, "human_maps": maps}, 0)
    expected = 1.0 + 2.0 * float(callback.loss(model, x, y, maps))
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    off = model.training_step((x, y, maps, torch.zeros(4)), 0)
    assert float(off["loss"]) == pytest.approx(1.0)
    seen = []
    model2 = TinyClassifier()
    model2.validation_step = lambda batch, idx: seen.append(len(batch))
    callback.setup(None, model2, "fit")
    model2.validation_step((x, y, maps), 0)
    model2.validation_step((x, y), 0)
    assert seen == [2, 2]
