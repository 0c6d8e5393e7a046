"""Encoders for IBP: the residual MLP on profiles (reference code's ``Mmd_resnet``) and an image encoder
built from the ``shared`` backbone registry on 5-channel crops; plus gradient reversal for batch heads."""

from __future__ import annotations

import torch
import torch.nn as nn

from shared.backbones import create

__all__ = ["ResidualMLP", "ImageEncoder", "grad_reverse"]


class ResidualMLP(nn.Module):
    """Residual MLP over profiles, as in the reference IBP code (reconstructed, see docs).

    Linear + BatchNorm1d projection to ``width`` -> ``depth`` blocks of [Linear -> BatchNorm1d -> Dropout
    -> GELU] with a residual add after every second block. The output is the embedding.

    Parameters
    ----------
    in_features : profile features (after whitening).
    width : hidden width (grid: 128, 256, 512, 1024, 1512).
    depth : number of blocks (grid: 1, 3, 6, 9, 12).
    dropout : dropout probability inside blocks.

    Examples
    --------
    >>> net = ResidualMLP(20, width=32, depth=3)
    >>> net(torch.zeros(4, 20)).shape
    torch.Size([4, 32])
    """

    def __init__(self, in_features: int, *, width: int = 256, depth: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        if in_features < 1 or width < 1 or depth < 0:
            raise ValueError(f"need in_features, width >= 1 and depth >= 0, got {in_features}, {width}, {depth}")
        self.proj = nn.Sequential(nn.Linear(in_features, width), nn.BatchNorm1d(width))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.Dropout(dropout), nn.GELU())
            for _ in range(depth)
        )
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_features) -> (batch, width)."""
        if x.ndim != 2:
            raise ValueError(f"profiles must have shape (batch, features), got {tuple(x.shape)}")
        h = self.proj(x)
        skip = h
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i % 2 == 1:
                h = h + skip
                skip = h
        return h


class ImageEncoder(nn.Module):
    """A registry backbone (``shared.backbones.create``) on 5-channel crops, global-average pooled.

    Parameters
    ----------
    backbone : registry name, e.g. ``resnet_small`` (or recurrent ``hgru`` when registered).
    in_channels : image channels (5 for Cell Painting).
    backbone_config : extra config for the backbone.
    """

    def __init__(
        self, backbone: str = "resnet_small", *, in_channels: int = 5, backbone_config: dict | None = None
    ) -> None:
        super().__init__()
        self.backbone = create(backbone, in_channels=in_channels, **(backbone_config or {}))
        self.out_features = self.backbone.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, rows, columns) -> (batch, out_features)."""
        if x.ndim != 4:
            raise ValueError(f"images must have shape (batch, channels, rows, columns), got {tuple(x.shape)}")
        return self.backbone(x).mean(dim=(-2, -1))


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward, gradient multiplied by ``-scale`` backward (Ganin & Lempitsky 2015)."""
    return _GradReverse.apply(x, scale)
