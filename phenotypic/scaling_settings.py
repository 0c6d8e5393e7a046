"""The settings of a scaling grid (:class:`GridConfig`), apart from the grid and the fits
(:mod:`phenotypic.scaling`: pandas, scipy, Lightning) so that ``phenotypic scaling --help`` builds its options fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class GridConfig:
    """The scaling grid; every field is a ``phenotypic scaling`` option (its docstring is the help)."""

    fractions: list[float] = field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0])
    """fractions of each compound's training wells (the data axis), each in (0, 1]"""
    widths: list[int] = field(default_factory=lambda: [64, 256])
    """residual-MLP widths (model axis; every width x depth pair)"""
    depths: list[int] = field(default_factory=lambda: [2])
    """residual-MLP depths (model axis)"""
    max_steps: int = 300
    """optimiser steps for every model, IBP and supervised alike (equal compute)"""
    batch_size: int = 256
    """training batch size"""
    lr: float = 1e-3
    """AdamW learning rate"""
    probe: Literal["linear", "mlp"] = "linear"
    """probe on the frozen IBP encoder"""
    k: int = 5
    """top-k reported besides top-1"""
    split: Literal["compounds", "plates"] = "compounds"
    """held-out compounds or held-out plates"""
    seed: int = 0
    """seeds splits, subsampling and training"""

    def __post_init__(self) -> None:
        if not self.fractions or not all(0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must be in (0, 1], got {self.fractions}")
        for name in ("widths", "depths"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "batch_size", "k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.probe not in ("linear", "mlp") or self.split not in ("compounds", "plates"):
            raise ValueError(
                f"probe must be 'linear' or 'mlp' and split 'compounds' or 'plates', got {self.probe!r}, {self.split!r}"
            )
