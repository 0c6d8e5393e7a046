"""``make demo`` part: an unharmonized and a harmonized model side by side, on data with known answers.

Known answers (nothing is downloaded):

* Pathfinder images whose "human map" is the true path and markers, with a planted label shortcut (a
  corner square) so a model *can* answer without looking at the path: the unharmonized model does, the
  harmonizer pulls its saliency back onto the path;
* a synthetic neural assembly ``Y = f(X) W + noise`` (true features vs random features, known ceiling);
* error consistency between the two models (Cohen's kappa, accuracy-matched null).

Budget: <= 90 s on 2 CPU cores (CPU-sized: 40 x 40 images, a tiny CNN, a few hundred steps).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, TensorDataset

from shared.alignment.adversarial import adversarial_alignment
from shared.alignment.behaviour import accuracy_matched_null
from shared.alignment.evaluate import predict_classes
from shared.alignment.harmonizer import HarmonizerCallback
from shared.alignment.predictivity import neural_predictivity
from shared.alignment.saliency import input_gradients
from shared.alignment.scores import alignment_score
from shared.alignment.synthetic import add_label_shortcut, pathfinder_with_maps, synthetic_neural_assembly
from shared.report import Report

DEMO_SIZES: dict[str, Any] = {
    "image_size": 40,
    "geometry_scale": 0.3,
    "n_train": 128,
    "n_test": 64,
    "steps": 200,
    "batch_size": 16,
    "n_stimuli": 200,
    "n_neurons": 40,
}


class TinyClassifier(L.LightningModule):
    """Conv 3x3 (4) -> ReLU -> max-pool 2 -> linear: a small, position-aware classifier that can learn the
    planted shortcut. Knows nothing about the harmonizer (the callback adds it)."""

    def __init__(self, image_size: int = 40, width: int = 4, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(width * (image_size // 2) ** 2, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def train_pair(
    images: np.ndarray, labels: np.ndarray, human_maps: np.ndarray, *, steps: int, batch_size: int = 16, seed: int = 0
) -> dict[str, TinyClassifier]:
    """Train the same TinyClassifier with and without :class:`HarmonizerCallback` (same seed and batches)."""
    models = {}
    for name, harmonize in (("unharmonized", False), ("harmonized", True)):
        torch.manual_seed(seed)
        model = TinyClassifier(image_size=images.shape[-1])
        tensors = [torch.as_tensor(images), torch.as_tensor(labels)]
        if harmonize:
            tensors.append(torch.as_tensor(human_maps))
        loader = DataLoader(
            TensorDataset(*tensors), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        trainer = L.Trainer(
            max_steps=steps,
            callbacks=[HarmonizerCallback(weight=1.0)] if harmonize else [],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(model, loader)
        models[name] = model.eval()
    return models


def plot_saliency(
    images: np.ndarray, human_maps: np.ndarray, saliency: dict[str, np.ndarray], png: Path, n: int = 5
) -> Path:
    """Rows: image, human map, then one row of saliency per model. Arrays (n_images, [1,] rows, columns)."""
    from shared.alignment.figures import draw_image_rows
    from shared.figures import pyplot, save_figure

    n = min(n, len(images))
    rows = 2 + len(saliency)
    fig, axes = pyplot().subplots(rows, n, figsize=(1.9 * n, 1.9 * rows), squeeze=False)
    panels = [("image", images[:n, 0], "gray"), ("human map (path)", human_maps[:n], "magma")]
    panels += [(f"saliency: {k}", v[:n], "magma") for k, v in saliency.items()]
    draw_image_rows(axes, panels)
    fig.tight_layout()
    return save_figure(fig, png, software="alignment demo", dpi=90)


def run_alignment_comparison(sizes: dict[str, Any] | None = None, *, seed: int = 0) -> dict[str, Any]:
    """Everything the demo and the notebook show; returns tables (DataFrames) and arrays for figures."""
    cfg = {**DEMO_SIZES, **(sizes or {})}
    gen = {"image_size": cfg["image_size"], "geometry_scale": cfg["geometry_scale"]}
    train = pathfinder_with_maps(cfg["n_train"], seed=seed, **gen)
    test = pathfinder_with_maps(cfg["n_test"], seed=seed + 1, **gen)
    train_x = add_label_shortcut(train.images, train.labels)
    test_x = add_label_shortcut(test.images, test.labels)
    models = train_pair(
        train_x, train.labels, train.human_maps, steps=cfg["steps"], batch_size=cfg["batch_size"], seed=seed
    )
    rows, saliency, correct = [], {}, {}
    for name, model in models.items():
        sal = input_gradients(model, test_x, test.labels)
        scores = alignment_score(sal, test.human_maps, ceiling=1.0)  # the path map is exact: ceiling 1
        adv = adversarial_alignment(model, test_x, test.labels, test.human_maps, n_search=6)
        # without the shortcut the models must use the path: their errors there are what kappa compares
        correct[name] = predict_classes(model, test.images) == test.labels
        saliency[name] = sal
        rows.append(
            {
                "model": name,
                "accuracy": float(np.mean(predict_classes(model, test_x) == test.labels)),
                "accuracy without shortcut": float(correct[name].mean()),
                "spearman (= score, ceiling 1)": scores.mean_spearman,
                "dice top 10%": scores.dice,
                "iou top 10%": scores.iou,
                "adversarial spearman": adv.mean_spearman,
                "min L2 eps": adv.mean_eps,
            }
        )
    kappa = accuracy_matched_null(correct["unharmonized"], correct["harmonized"], n_permutations=200, seed=seed)
    asm = synthetic_neural_assembly(cfg["n_stimuli"], cfg["n_neurons"], seed=seed)
    true_feats = np.maximum(asm.stimuli_features, 0)
    random_feats = np.random.default_rng(seed + 1000).standard_normal(true_feats.shape)
    neural = []
    for name, feats in (("true features f(X)", true_feats), ("random features", random_feats)):
        res = neural_predictivity(
            feats,
            asm.mean_responses,
            categories=asm.categories,
            repetitions=asm.responses,
            n_components=min(25, feats.shape[1]),
        )
        neural.append(
            {
                "features": name,
                "raw r (median over neurons)": res.raw,
                "sem": res.sem,
                "ceiling (split-half SB)": res.ceiling,
                "ceiled r^2/ceiling": res.ceiled,
            }
        )
    return {
        "scores": pd.DataFrame(rows),
        "saliency": saliency,
        "images": test_x,
        "human_maps": test.human_maps,
        "kappa": pd.DataFrame(
            [
                {
                    "kappa": kappa.kappa,
                    "null mean": kappa.null_mean,
                    "p": kappa.p_value,
                    "kappa min": kappa.kappa_min,
                    "kappa max": kappa.kappa_max,
                }
            ]
        ),
        "neural": pd.DataFrame(neural),
        "expected_ceiling": asm.expected_ceiling,
        "models": models,
    }


def run_demo(out_dir: Path, report: Report) -> None:
    """Add the alignment section to the demo report (figures under ``out_dir``)."""
    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # the models are tiny: one thread beats two contending ones (and leaves a core to the rest of the demo)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            result = run_alignment_comparison()
    finally:
        torch.set_num_threads(threads)
    section = report.section(
        "Vision alignment (shared.alignment)",
        "Pathfinder with a planted shortcut: a corner square tells the label, so a model need not follow the "
        "path. The human map is the true path and markers (a known answer). The same tiny CNN is trained "
        "twice on the same batches, once with the harmonizer callback (published loss, weight 1). Scores use "
        "the published recipe (|gradient| saliency, per-image Spearman, top-10% Dice/IoU) with ceiling 1, "
        "since the path map is exact.\n\n"
        "Neural predictivity on a synthetic assembly Y = f(X) W + noise: PLS under stratified shuffle "
        "splits, median Pearson over neurons; the ceiled score is r^2 / ceiling (current Brain-Score), "
        f"and the true reliability is {result['expected_ceiling']:.3f}.",
    )
    section.add_table("Human-feature alignment, unharmonized vs harmonized", result["scores"])
    section.add_table(
        "Error consistency of the two models on the images without the shortcut "
        "(Cohen's kappa; null: same accuracy, errors permuted)",
        result["kappa"],
    )
    section.add_table("Neural predictivity on the synthetic assembly", result["neural"])
    png = plot_saliency(result["images"], result["human_maps"], result["saliency"], out_dir / "saliency.png")
    section.add_figure("Test images, their human maps (path), and each model's saliency", png)
    section.seconds = time.perf_counter() - started
