"""A small space-time transformer with divided attention (TimeSformer-style), written with torch.nn only.

The tracking papers compare against TimeSformer (Bertasius et al. 2021; pathtracker-models
``models/transformers.py``, feature_tracker ``models/transformers.py``); the vision model hubs do not
import here, so this is a small re-implementation of its "divided space-time" design, not a port:

* patch embedding: a Conv3d with kernel = stride = (tubelet, patch, patch), tokens (batch, T', N, D);
* learned positional embeddings, one per spatial position and one per token time (up to ``max_frames``);
* each block: temporal attention (every spatial position attends across time), then spatial attention
  (every token time attends across positions, with the CLS token; TimeSformer's CLS handling: the CLS token
  joins every frame's spatial attention and its outputs are averaged over time), then an MLP; pre-norm
  residuals throughout;
* ``pool="cls"`` reads the CLS token, ``pool="mean"`` averages the patch tokens; LayerNorm, ``Linear(D, 1)``.

TimeSformer's extra linear after the temporal attention and its ImageNet initialisation are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from shared.backbones.base import Backbone, BackboneOutput
from shared.backbones.registry import register_backbone


@dataclass
class SpaceTimeTransformerConfig:
    """Divided space-time transformer.

    in_channels : input channels.
    image_size : row and column size of the input (the spatial positional embedding is learned for it).
    patch_size : spatial patch size (divides ``image_size``).
    tubelet : frames per token.
    max_frames : the longest video (temporal positional embeddings for ``max_frames // tubelet`` times).
    embed_dim : token width D, the width knob (divisible by ``heads``).
    depth : number of blocks.
    heads : attention heads.
    mlp_ratio : MLP hidden width / D.
    pool : ``"cls"`` or ``"mean"``.
    dropout : dropout in attention and MLP.
    """

    in_channels: int = 3
    image_size: int = 32
    patch_size: int = 4
    tubelet: int = 2
    max_frames: int = 128
    embed_dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    pool: Literal["cls", "mean"] = "cls"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("in_channels", "image_size", "patch_size", "tubelet", "max_frames", "embed_dim", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size must divide image_size, got {self.patch_size} and {self.image_size}")
        if self.embed_dim % self.heads:
            raise ValueError(f"embed_dim must be divisible by heads, got {self.embed_dim} and {self.heads}")
        if self.max_frames < self.tubelet:
            raise ValueError(f"max_frames must be >= tubelet, got {self.max_frames} and {self.tubelet}")
        if self.mlp_ratio <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"mlp_ratio must be > 0 and dropout in [0, 1), got {self.mlp_ratio}, {self.dropout}")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {self.pool!r}")


class DividedBlock(nn.Module):
    """Temporal attention, spatial attention (with CLS), MLP; pre-norm residuals."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm_time, self.norm_space, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn_time = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.attn_space = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        hidden = max(1, round(dim * mlp_ratio))
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, tokens: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (batch, T', N, D), cls (batch, 1, D) -> the same shapes."""
        b, t, n, d = tokens.shape
        y = tokens.transpose(1, 2).reshape(b * n, t, d)
        q = self.norm_time(y)
        y = y + self.attn_time(q, q, q, need_weights=False)[0]
        y = y.reshape(b, n, t, d).transpose(1, 2).reshape(b * t, n, d)
        z = torch.cat([cls.repeat_interleave(t, dim=0), y], dim=1)
        q = self.norm_space(z)
        z = z + self.attn_space(q, q, q, need_weights=False)[0]
        cls = z[:, :1].reshape(b, t, 1, d).mean(dim=1)
        tokens = z[:, 1:].reshape(b, t, n, d)
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        cls = cls + self.mlp(self.norm_mlp(cls))
        return tokens, cls


class SpaceTimeTransformer(Backbone):
    """Video (batch, in_channels, frame, row, column) -> logits (batch, 1)."""

    spatial_dims = 3
    input_kind = "video"
    out_channels = 1

    def __init__(self, cfg: SpaceTimeTransformerConfig) -> None:
        super().__init__()
        self.config, self.in_channels = cfg, cfg.in_channels
        d, kernel = cfg.embed_dim, (cfg.tubelet, cfg.patch_size, cfg.patch_size)
        self.embed = nn.Conv3d(cfg.in_channels, d, kernel, stride=kernel)
        n_space = (cfg.image_size // cfg.patch_size) ** 2
        self.pos_space = nn.Parameter(torch.zeros(1, 1, n_space, d))
        self.pos_time = nn.Parameter(torch.zeros(1, cfg.max_frames // cfg.tubelet, 1, d))
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        for p in (self.pos_space, self.pos_time, self.cls):
            nn.init.trunc_normal_(p, std=0.02)
        self.blocks = nn.ModuleList(DividedBlock(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 1)

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        cfg = self.config
        if x.shape[3] != cfg.image_size or x.shape[4] != cfg.image_size:
            raise ValueError(
                f"input to {self.model_name or 'spacetime_transformer'} must be {cfg.image_size}x"
                f"{cfg.image_size} (image_size) on its row and column axes, got shape {tuple(x.shape)}"
            )
        if not cfg.tubelet <= x.shape[2] <= cfg.max_frames or x.shape[2] % cfg.tubelet:
            raise ValueError(
                f"input to {self.model_name or 'spacetime_transformer'} must have a multiple of "
                f"{cfg.tubelet} (tubelet) frames, at most {cfg.max_frames} (max_frames), got "
                f"{x.shape[2]}"
            )

    def forward_steps(self, x: torch.Tensor, return_steps: bool) -> BackboneOutput:
        tokens = self.embed(x).flatten(3).permute(0, 2, 3, 1)  # (B, T', N, D)
        tokens = tokens + self.pos_space + self.pos_time[:, : tokens.shape[1]]
        cls = self.cls.expand(x.shape[0], -1, -1)
        for block in self.blocks:
            tokens, cls = block(tokens, cls)
        pooled = cls[:, 0] if self.config.pool == "cls" else tokens.mean(dim=(1, 2))
        y = self.fc(self.norm(pooled))
        return BackboneOutput(y, [y] if return_steps else [], None)


@register_backbone(
    "spacetime_transformer",
    SpaceTimeTransformerConfig,
    spatial_dims=3,
    recurrent=False,
    input_kind="video",
    description="small divided space-time transformer (TimeSformer-style)",
)
def spacetime_transformer(cfg: SpaceTimeTransformerConfig) -> SpaceTimeTransformer:
    """Create a :class:`SpaceTimeTransformer`.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("spacetime_transformer", image_size=16, embed_dim=16, heads=2, depth=1)
    >>> net(torch.rand(2, 3, 4, 16, 16)).shape
    torch.Size([2, 1])
    """
    return SpaceTimeTransformer(cfg)
