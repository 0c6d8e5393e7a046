"""Pathfinder classification around any registered backbone: backbone -> readout -> cross-entropy.

The readout follows the hGRU Pathfinder model (Linsley et al. 2018): BatchNorm -> 1x1 conv to 2 class
maps -> global max pool -> BatchNorm -> dense 2 (``readout="reference"``). ``readout="pool_mlp"`` is a small
alternative head (global average + max pool -> hidden layer -> 2 logits) for feature-rich backbones.

Recurrent backbones report their recurrence statistics (:class:`shared.recurrence.RecurrenceStats`) on
every forward pass; they are logged under ``<stage>/recurrence/...``. In C-RBP mode the contraction
(Lipschitz) penalty exposed by the recurrence engine is added to the loss, weighted by
``lipschitz_weight``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from shared.backbones import BackboneOutput, create, model_info
from shared.training import count_parameters, lipschitz_penalty, recurrence_metrics

READOUTS = ("reference", "pool_mlp")
READOUT_NORMS = ("batch_stats", "batch")
LR_SCHEDULES = ("constant", "onecycle")
__all__ = [
    "PathfinderClassifier",
    "PoolMLPReadout",
    "ReferenceReadout",
    "count_parameters",
    "lipschitz_penalty",
    "recurrence_metrics",
]


class ReferenceReadout(nn.Module):
    """BN -> 1x1 conv (C -> 2) -> global max pool -> BN -> dense 2, as in the hGRU Pathfinder model.

    ``class_maps(features)`` gives the (batch, 2, rows, columns) maps before pooling (for figures).
    ``norm="batch_stats"`` normalises with the statistics of the batch at hand in training and evaluation
    (c-rbp's readout BN keeps no running statistics); evaluate it on batches of several mixed images.
    ``norm="batch"`` keeps running statistics (hgru-pytorch).
    """

    def __init__(self, channels: int, norm: str = "batch_stats") -> None:
        super().__init__()
        if norm not in READOUT_NORMS:
            raise ValueError(f"readout norm must be one of {', '.join(map(repr, READOUT_NORMS))}; got {norm!r}")
        running = norm == "batch"
        self.norm = nn.BatchNorm2d(channels, track_running_stats=running)
        self.to_classes = nn.Conv2d(channels, 2, kernel_size=1)
        self.pooled_norm = nn.BatchNorm1d(2, track_running_stats=running)
        self.dense = nn.Linear(2, 2)

    def class_maps(self, features: torch.Tensor) -> torch.Tensor:
        return self.to_classes(self.norm(features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.class_maps(features).amax(dim=(2, 3))
        return self.dense(self.pooled_norm(pooled))


class PoolMLPReadout(nn.Module):
    """Global average and max pool -> Linear -> ReLU -> Linear(2)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Linear(2 * channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))

    def class_maps(self, features: torch.Tensor) -> torch.Tensor:
        """The head applied to each pixel as if it were the whole image: (batch, 2, rows, columns)."""
        per_pixel = features.permute(0, 2, 3, 1)
        return self.head(torch.cat([per_pixel, per_pixel], dim=-1)).permute(0, 3, 1, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


class PathfinderClassifier(L.LightningModule):
    """Pathfinder classifier wrapping a registered backbone by name.

    Parameters
    ----------
    backbone : a name from :func:`shared.backbones.list_models` (2D models).
    backbone_config : keyword config for :func:`shared.backbones.create`; ``in_channels`` defaults to 1.
    readout : ``"reference"`` (1x1 conv to 2, global max pool, as published) or ``"pool_mlp"``.
    readout_hidden : hidden units of the ``pool_mlp`` head.
    readout_norm : the ``reference`` head's BatchNorms: ``"batch_stats"`` (c-rbp: batch statistics in
        training and testing) or ``"batch"`` (running statistics).
    lr, weight_decay : Adam(W) settings (published: Adam, lr 1e-3).
    lr_schedule : ``"constant"`` or ``"onecycle"`` (warm up to ``lr`` over the first 15% of the trainer's
        steps, then cosine decay; needs a step budget, i.e. ``max_steps`` or ``max_epochs``).
    lipschitz_weight : weight of the C-RBP contraction penalty when the backbone reports one (the
        reference Pathfinder setting is 10).

    Examples
    --------
    >>> model = PathfinderClassifier("resnet_small", {"widths": [8, 16]})
    >>> model(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        backbone: str = "hgru",
        backbone_config: dict[str, Any] | None = None,
        readout: str = "reference",
        readout_hidden: int = 32,
        readout_norm: str = "batch_stats",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lipschitz_weight: float = 10.0,
        lr_schedule: str = "constant",
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(map(repr, READOUTS))}; got {readout!r}")
        if lr <= 0 or weight_decay < 0 or lipschitz_weight < 0:
            raise ValueError("lr must be > 0 and weight_decay, lipschitz_weight >= 0")
        config = dict(backbone_config or {})
        info = model_info(backbone)
        if info.spatial_dims != 2:
            raise ValueError(f"Pathfinder images are 2D; backbone {backbone!r} is {info.spatial_dims}D")
        if "in_channels" in {f.name for f in dataclasses.fields(info.config_class)}:
            config.setdefault("in_channels", 1)
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, LR_SCHEDULES))}; got {lr_schedule!r}")
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "backbone_config": config,
                "readout": readout,
                "readout_hidden": readout_hidden,
                "readout_norm": readout_norm,
                "lr": lr,
                "weight_decay": weight_decay,
                "lipschitz_weight": lipschitz_weight,
                "lr_schedule": lr_schedule,
            }
        )
        self.backbone = create(backbone, **config)
        self.recurrent = bool(info.recurrent)
        self._train_stats: Any = None
        channels = self.backbone.out_channels
        self.readout = (
            ReferenceReadout(channels, readout_norm)
            if readout == "reference"
            else PoolMLPReadout(channels, readout_hidden)
        )
        # ModuleDict keys may not shadow nn.Module attributes such as ``train``
        self.accuracy = nn.ModuleDict(
            {f"{stage}_acc": MulticlassAccuracy(num_classes=2) for stage in ("train", "val", "test")}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, 2) for images (batch, 1, rows, columns)."""
        return self.readout(self.backbone(x))

    def forward_with_steps(self, x: torch.Tensor) -> tuple[torch.Tensor, BackboneOutput]:
        """Logits (batch, 2) and the backbone's :class:`BackboneOutput` (per-step states and statistics)."""
        out = self.backbone(x, return_steps=True)
        return self.readout(out.output), out

    @torch.no_grad()
    def timestep_readouts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-timestep hidden-state energy, class-1 evidence maps and P(connected), for figures.

        Returns
        -------
        dict with ``state_energy`` (steps, batch, rows', columns') mean |state| over channels,
        ``evidence`` (steps, batch, rows', columns') class-1 minus class-0 map of the readout, and
        ``probability`` (steps, batch) the readout's P(label 1) applied to each step's state.
        """
        was_training = self.training
        self.eval()
        out = self.backbone(x, return_steps=True)
        steps = out.steps or [out.output]
        energy, evidence, prob = [], [], []
        for state in steps:
            energy.append(state.abs().mean(dim=1))
            maps = self.readout.class_maps(state)
            evidence.append(maps[:, 1] - maps[:, 0])
            prob.append(self.readout(state).softmax(dim=1)[:, 1])
        self.train(was_training)
        return {
            "state_energy": torch.stack(energy),
            "evidence": torch.stack(evidence),
            "probability": torch.stack(prob),
        }

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        if self.recurrent:
            logits, out = self.forward_with_steps(x)
            stats = out.stats
        else:
            logits, stats = self(x), None
        loss = F.cross_entropy(logits, y)
        total = loss
        penalty = lipschitz_penalty(stats) if stats is not None and stage == "train" else None
        if penalty is not None:
            total = loss + self.hparams.lipschitz_weight * penalty
            self.log(f"{stage}/lipschitz_penalty", penalty.detach(), on_step=False, on_epoch=True)
        on_step = stage == "train"
        if stage == "train":
            self._train_stats = stats  # its C-RBP Neumann fields are filled in by backward()
        else:
            self._log_stats(stats, stage)
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy(logits.detach(), y)
        self.log(f"{stage}/loss", loss.detach(), on_step=on_step, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        return total

    def _log_stats(self, stats: Any, stage: str) -> None:
        for name, value in recurrence_metrics(stats).items():
            self.log(f"{stage}/recurrence/{name}", value, on_step=False, on_epoch=True, sync_dist=True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log the training step's recurrence statistics after backward (the Neumann fields exist now)."""
        if self._train_stats is not None:
            self._log_stats(self._train_stats, "train")
            self._train_stats = None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """P(label 1) per image, shape (batch,)."""
        return self(batch[0]).softmax(dim=1)[:, 1]

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.get("lr_schedule", "constant") == "constant":
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=hp.lr, total_steps=max(total, 1), pct_start=0.15
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
