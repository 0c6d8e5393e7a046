"""The interface every registered backbone shares.

One forward signature for all models::

    y = model(x)                           # Tensor (batch, out_channels, *spatial_out)
    out = model(x, return_steps=True)      # BackboneOutput: .output, .steps (one per timestep), .stats

``x`` is ``(batch, in_channels, row, column)`` for 2D models, ``(batch, in_channels, plane, row,
column)`` for 3D models and ``(batch, in_channels, frame, row, column)`` for video models
(``input_kind == "video"``, the tracking models of :mod:`shared.backbones.tracking`), floating point.
Dense models (U-Net, gamma-Net, hGRU/fGRU models) return a map at the input resolution; the ResNet
returns a map at ``output_stride``; video classifiers return logits (batch, 1). Feedforward models return a
single step; recurrent models return one readout per timestep and the recurrence engine's convergence
statistics (:class:`shared.recurrence.RecurrenceStats`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from shared.validation import check_dtype_kind, check_ndim


@dataclass
class BackboneOutput:
    """Everything a forward pass can report.

    Attributes
    ----------
    output : Tensor of shape (batch, out_channels, *spatial_out), the final readout.
    steps : list of Tensors shaped like ``output``, one per timestep (length 1 for feedforward models).
    stats : the recurrence engine's convergence statistics, or None for feedforward models.
    aux : named extra maps of the forward pass (empty unless the model documents some), e.g. the tracking
        circuits' ``"attention"`` (batch, frame, row, column) and the CV-RNN's ``"phase"``.
    """

    output: torch.Tensor
    steps: list[torch.Tensor] = field(default_factory=list)
    stats: Any = None
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class Backbone(nn.Module):
    """Base class: validates input once, then calls :meth:`forward_steps`.

    Subclasses set ``in_channels``, ``out_channels``, ``spatial_dims``, ``output_stride`` and implement
    ``forward_steps(x, return_steps) -> BackboneOutput``.
    """

    in_channels: int
    out_channels: int
    spatial_dims: int
    output_stride: int = 1
    recurrent: bool = False
    model_name: str = ""
    input_kind: str = ""  # "video" for models reading (batch, channel, frame, row, column); "" = by spatial_dims

    def forward(self, x: torch.Tensor, *, return_steps: bool = False) -> torch.Tensor | BackboneOutput:
        self.check_input(x)
        out = self.forward_steps(x, return_steps=return_steps)
        return out if return_steps else out.output

    def check_input(self, x: torch.Tensor) -> None:
        if self.input_kind == "video":
            axes = "(batch, channel, frame, row, column)"
        elif self.spatial_dims == 2:
            axes = "(batch, channel, row, column)"
        else:
            axes = "(batch, channel, plane, row, column)"
        name = f"input to {self.model_name or type(self).__name__}"
        check_ndim(x, self.spatial_dims + 2, name=name, axes=axes)
        check_dtype_kind(x, "f", name=name)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} must have {self.in_channels} channel(s) on axis 1, got {x.shape[1]} (shape {tuple(x.shape)})"
            )
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            n_bad = int((~finite).sum())
            raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s) (shape {tuple(x.shape)})")
