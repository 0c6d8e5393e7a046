"""Score a model against human maps end to end: saliency -> alignment score, Dice, IoU."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from shared.alignment.saliency import saliency_maps
from shared.alignment.scores import CLICKME_HUMAN_CEILING, alignment_score


@torch.no_grad()
def predict_classes(model: nn.Module, images, *, batch_size: int = 64) -> np.ndarray:
    """Arg-max class of ``model`` for images (n_images, channels, rows, columns), in eval mode."""
    x = torch.as_tensor(np.asarray(images, np.float32) if not isinstance(images, torch.Tensor) else images)
    param = next(iter(model.parameters()), None)
    dev = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        return torch.cat(
            [model(x[s : s + batch_size].to(dev)).argmax(1).cpu() for s in range(0, len(x), batch_size)]
        ).numpy()
    finally:
        model.train(was_training)


def score_model(
    model: nn.Module,
    images,
    human_maps,
    labels=None,
    *,
    method: str = "gradient",
    ceiling: float = CLICKME_HUMAN_CEILING,
    batch_size: int = 64,
    saliency_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Human-feature alignment of ``model`` on ``images``.

    Parameters
    ----------
    model : classifier (batch, channels, rows, columns) -> logits.
    images : array of shape (n_images, channels, rows, columns).
    human_maps : array of shape (n_images, rows, columns), already processed as wanted.
    labels : int array of shape (n_images,); the explained class (published: the true label). ``None``
        explains the predicted class and leaves accuracy out.
    method : ``"gradient"`` (published), ``"smoothgrad"`` or ``"integrated_gradients"``.
    ceiling : human ceiling for the normalised score.
    saliency_options : extra keyword options of the saliency method (e.g. ``n_samples``).

    Returns
    -------
    report : dict with the scalar scores (score, mean_spearman, ceiling, dice, iou, n_images, n_nan,
        accuracy when labels are given), ``per_image`` lists (spearman, dice, iou, target) and
        ``saliency`` (ndarray, n_images x rows x columns; not JSON).
    """
    images = np.asarray(images, np.float32)
    maps = np.asarray(human_maps, np.float64)
    if maps.shape != (images.shape[0], *images.shape[2:]):
        expected = (images.shape[0], *images.shape[2:])
        raise ValueError(
            f"human_maps must be (n_images, rows, columns) = {expected} to match the images, got {maps.shape}"
        )
    predicted = predict_classes(model, images, batch_size=batch_size)
    targets = predicted if labels is None else np.asarray(labels, np.int64)
    sal = saliency_maps(model, images, targets, method=method, batch_size=batch_size, **(saliency_options or {}))
    scores = alignment_score(sal, maps, ceiling=ceiling)
    report: dict[str, Any] = {
        **scores.summary(),
        "method": method,
        "target": "label" if labels is not None else "predicted",
    }
    if labels is not None:
        report["accuracy"] = float(np.mean(predicted == targets))
    report["per_image"] = {
        "spearman": scores.spearman.tolist(),
        "dice": scores.dice_per_image.tolist(),
        "iou": scores.iou_per_image.tolist(),
        "target": targets.tolist(),
    }
    report["saliency"] = sal
    return report
