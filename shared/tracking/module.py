"""Tracking classification (PathTracker, FeatureTracker) around any registered video model.

The backbone maps a video ``(B, 3, T, H, W)`` to one logit per video ``(B, 1)`` (label 1: the dot that leaves
the red start marker ends in the blue goal marker), so the module adds no readout: the published readouts
(InT's goal-marker readout, the CNN heads) belong to the models. Training follows the reference code
(``pathtracker-models``, ``feature_tracker`` ``mainclean.py``): BCE-with-logits, Adam at lr 3e-4, balanced
accuracy as the metric.

* **Synchrony loss (CV-RNN).** When the backbone returns a decoded phase map ``aux["phase"]`` (B, T, H, W)
  and the batch carries object masks, ``synchrony_weight`` times
  :func:`shared.backbones.tracking.synchrony.synchrony_loss` is added to the loss (the reference's
  ``loss_coef1``, default 1). It is logged as ``<stage>/synchrony``.
* **Recurrence statistics** of recurrent circuits (InT, CV-RNN, ConvGRU) are logged under
  ``<stage>/recurrence/...`` as :mod:`shared.pathfinder.module` does, and the C-RBP contraction penalty is
  added (``lipschitz_weight``) when the engine returns one.
* **Per-condition test accuracy.** Test batches carry ``condition`` (an index into the datamodule's
  ``condition_names``); ``test/acc/<name>`` and ``test/balanced_acc/<name>`` are logged per condition.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from shared.backbones import BackboneOutput, create, model_info
from shared.training import lipschitz_penalty, recurrence_metrics

STAGES = ("train", "val", "test")


def _accuracies() -> nn.ModuleDict:
    """Plain and balanced (mean per-class recall) accuracy of 0/1 predictions."""
    return nn.ModuleDict(
        {
            "acc": MulticlassAccuracy(num_classes=2, average="micro"),
            "balanced_acc": MulticlassAccuracy(num_classes=2, average="macro"),
        }
    )


def condition_names_of(datamodule: Any, n: int) -> list[str]:
    """The datamodule's ``condition_names`` padded with ``condition<i>`` up to ``n`` entries."""
    names = list(getattr(datamodule, "condition_names", None) or [])
    return names + [f"condition{i}" for i in range(len(names), n)]


class TrackingClassifier(L.LightningModule):
    """A registered video model trained on a tracking task with BCE-with-logits.

    Parameters
    ----------
    backbone : a registered video model, e.g. ``"int"``, ``"cvrnn"``, ``"r3d_small"``, ``"convgru"``,
        ``"spacetime_transformer"`` (``shared.backbones.list_models(input_kind="video")``).
    backbone_config : keyword config for :func:`shared.backbones.create` (``in_channels`` defaults to 3).
    lr, weight_decay : Adam(W) settings (published: Adam, lr 3e-4, no weight decay).
    synchrony_weight : weight of the synchrony loss on ``aux["phase"]`` (CV-RNN; reference 1; 0 disables).
    synchrony_groups : the loss's groups of pixels. ``"reference"`` (default): background, all distractors
        together and the target, as the authors' masks and ``synch_loss`` define them (verified against their
        code in tests/test_tracking_reference.py); ``"objects"``: every object its own group, background and
        markers left out.
    lipschitz_weight : weight of the C-RBP contraction penalty when the backbone reports one.
    max_conditions : the most test conditions tracked per test run (metrics are allocated up front).

    Examples
    --------
    >>> model = TrackingClassifier("r3d_small", {"stem_channels": 4, "widths": [4, 6]})
    >>> model(torch.zeros(2, 3, 8, 32, 32)).shape
    torch.Size([2])
    """

    def __init__(
        self,
        backbone: str = "int",
        backbone_config: dict[str, Any] | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        synchrony_weight: float = 1.0,
        synchrony_groups: Literal["reference", "objects"] = "reference",
        lipschitz_weight: float = 10.0,
        max_conditions: int = 16,
    ) -> None:
        super().__init__()
        if lr <= 0 or weight_decay < 0 or synchrony_weight < 0 or lipschitz_weight < 0:
            raise ValueError("lr must be > 0 and weight_decay, synchrony_weight, lipschitz_weight >= 0")
        if synchrony_groups not in ("reference", "objects"):
            raise ValueError(f"synchrony_groups must be 'reference' or 'objects', got {synchrony_groups!r}")
        if max_conditions < 1:
            raise ValueError(f"max_conditions must be >= 1, got {max_conditions}")
        try:
            info = model_info(backbone)
        except KeyError as err:  # a wrong name in a config is the user's mistake: one line, exit 2
            raise ValueError(err.args[0]) from None
        kind = getattr(info, "input_kind", None)
        if kind is not None and kind != "video":
            raise ValueError(f"tracking needs a video model; backbone {backbone!r} takes {kind} input")
        config = dict(backbone_config or {})
        if "in_channels" in {f.name for f in dataclasses.fields(info.config_class)}:
            config.setdefault("in_channels", 3)
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "backbone_config": config,
                "lr": lr,
                "weight_decay": weight_decay,
                "synchrony_weight": synchrony_weight,
                "synchrony_groups": synchrony_groups,
                "lipschitz_weight": lipschitz_weight,
                "max_conditions": max_conditions,
            }
        )
        self.backbone = create(backbone, **config)
        self.recurrent = bool(info.recurrent)
        self._train_stats: Any = None
        # ModuleDict keys may not shadow nn.Module attributes such as ``train``
        self.metrics = nn.ModuleDict({f"{stage}_metrics": _accuracies() for stage in STAGES})
        self.condition_metrics = nn.ModuleList([_accuracies() for _ in range(max_conditions)])

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch,) for videos (batch, 3, frames, rows, columns) in [0, 1]."""
        return self.backbone(video).reshape(video.shape[0])

    def forward_with_steps(self, video: torch.Tensor) -> tuple[torch.Tensor, BackboneOutput]:
        """Logits (batch,) and the backbone's :class:`BackboneOutput` (steps, statistics, ``aux`` maps)."""
        out = self.backbone(video, return_steps=True)
        return out.output.reshape(video.shape[0]), out

    def synchrony(self, out: BackboneOutput, masks: torch.Tensor | None) -> torch.Tensor | None:
        """The synchrony loss of the decoded phase map against the object masks, or None when not applicable."""
        phase = (getattr(out, "aux", None) or {}).get("phase")
        if phase is None or masks is None or self.hparams.synchrony_weight == 0:
            return None
        from shared.backbones.tracking.synchrony import synchrony_loss

        reference = self.hparams.synchrony_groups == "reference"
        return synchrony_loss(phase.float(), masks.long(), merge_distractors=reference, include_background=reference)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        video, label = batch["video"], batch["label"]
        logits, out = self.forward_with_steps(video)
        loss = F.binary_cross_entropy_with_logits(logits.float(), label.float())
        total = loss
        on_step = stage == "train"
        synchrony = self.synchrony(out, batch.get("mask"))
        if synchrony is not None:
            total = total + self.hparams.synchrony_weight * synchrony
            self.log(f"{stage}/synchrony", synchrony.detach(), on_step=on_step, on_epoch=True, sync_dist=True)
        penalty = lipschitz_penalty(out.stats) if out.stats is not None and stage == "train" else None
        if penalty is not None:
            total = total + self.hparams.lipschitz_weight * penalty
            self.log(f"{stage}/lipschitz_penalty", penalty.detach(), on_step=False, on_epoch=True)
        if stage == "train":
            self._train_stats = out.stats  # its C-RBP Neumann fields are filled in by backward()
        else:
            self._log_stats(out.stats, stage)
        predicted = (logits.detach() > 0).long()
        for name, metric in self.metrics[f"{stage}_metrics"].items():
            metric(predicted, label)
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "balanced_acc")
        if stage == "test" and "condition" in batch:
            self._update_conditions(predicted, label, batch["condition"])
        self.log(f"{stage}/loss", loss.detach(), on_step=on_step, on_epoch=True, prog_bar=True, sync_dist=True)
        return total

    def _update_conditions(self, predicted: torch.Tensor, label: torch.Tensor, condition: torch.Tensor) -> None:
        if int(condition.max()) >= len(self.condition_metrics):
            raise ValueError(
                f"test condition {int(condition.max())} exceeds max_conditions "
                f"{len(self.condition_metrics)}; raise model.max_conditions"
            )
        for c in condition.unique().tolist():
            sel = condition == c
            for metric in self.condition_metrics[c].values():
                metric.update(predicted[sel], label[sel])

    def on_test_epoch_end(self) -> None:
        """Log ``test/acc/<condition>`` and ``test/balanced_acc/<condition>`` for every condition seen."""
        names = condition_names_of(getattr(self.trainer, "datamodule", None), len(self.condition_metrics))
        for c, metrics in enumerate(self.condition_metrics):
            for kind, metric in metrics.items():
                if metric.update_count:  # a condition absent from this test run stays unlogged
                    self.log(f"test/{kind}/{names[c]}", metric.compute(), sync_dist=False)
                metric.reset()

    def _log_stats(self, stats: Any, stage: str) -> None:
        for name, value in recurrence_metrics(stats).items():
            self.log(f"{stage}/recurrence/{name}", value, on_step=False, on_epoch=True, sync_dist=True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log the training step's recurrence statistics after backward (the Neumann fields exist now)."""
        if self._train_stats is not None:
            self._log_stats(self._train_stats, "train")
            self._train_stats = None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """P(label 1) per video, shape (batch,)."""
        return torch.sigmoid(self(batch["video"]).float())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
