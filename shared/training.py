"""Lightning plumbing shared by the training modules (Pathfinder, tracking): recurrence statistics as
loggable scalars, the C-RBP contraction penalty, parameter counts and a learning-curve recorder."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import lightning as L
import torch
import torch.nn as nn

PENALTY_NAMES = ("penalty", "lipschitz_penalty")
"""Names under which a recurrence engine's statistics carry the differentiable contraction penalty."""


def recurrence_metrics(stats: Any) -> dict[str, float]:
    """Flatten recurrence statistics into scalars for logging.

    Numbers are logged as they are, booleans as 0/1, per-step sequences (e.g. residuals) as their last
    value (``<name>_final``) and their mean; strings and ``None`` (e.g. Neumann fields before backward) are
    skipped. Works on any dataclass or object with public attributes, so it follows
    :class:`shared.recurrence.RecurrenceStats` as it evolves.
    """
    if stats is None:
        return {}
    if dataclasses.is_dataclass(stats):
        items = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
    elif isinstance(stats, dict):
        items = dict(stats)
    else:
        items = {k: v for k, v in vars(stats).items() if not k.startswith("_")}
    out: dict[str, float] = {}
    for name, value in items.items():
        if name in PENALTY_NAMES or value is None:
            continue  # the penalty is logged with the loss
        if isinstance(value, torch.Tensor):
            value = value.detach().float().flatten().cpu().tolist()
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)):
            if math.isfinite(value):
                out[name] = float(value)
        elif (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            if len(value) == 1:
                out[name] = float(value[0])
            else:
                out[f"{name}_final"] = float(value[-1])
                out[f"{name}_mean"] = float(sum(value) / len(value))
    return out


def lipschitz_penalty(stats: Any) -> torch.Tensor | None:
    """The differentiable C-RBP contraction penalty carried by the statistics, if the engine exposes one."""
    for name in PENALTY_NAMES:
        value = stats.get(name) if isinstance(stats, dict) else getattr(stats, name, None)
        if isinstance(value, torch.Tensor) and value.requires_grad:
            return value
    return None


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class LearningCurve(L.Callback):
    """Records the learning curve: training loss per optimiser step and a validation metric per validation.

    After training, ``train`` holds ``(step, loss)`` pairs and ``val`` holds ``(step, value)`` pairs of the
    logged metric ``metric`` (default ``"val/acc"``).
    """

    def __init__(self, metric: str = "val/acc") -> None:
        self.metric = metric
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.train.append((int(trainer.global_step), float(loss.detach())))

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self.metric in trainer.callback_metrics:
            self.val.append((int(trainer.global_step), float(trainer.callback_metrics[self.metric])))
