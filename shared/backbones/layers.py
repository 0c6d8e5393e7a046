"""Small building blocks shared by the 2D and 3D backbones."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("batch", "group", "instance", "none", "batch_stats")


def as_tuple(value: int | Sequence[int], dims: int, *, name: str) -> tuple[int, ...]:
    """Broadcast an int to ``dims`` values, or check a sequence has ``dims`` entries."""
    if isinstance(value, int):
        return (value,) * dims
    value = tuple(int(v) for v in value)
    if len(value) != dims:
        raise ValueError(f"{name} needs {dims} values for a {dims}D model, got {value}")
    return value


def conv_nd(dims: int, in_ch: int, out_ch: int, kernel_size: int | Sequence[int], bias: bool = True) -> nn.Module:
    """A 'same'-padded convolution in 2 or 3 dimensions (odd kernels only, so padding is symmetric)."""
    k = as_tuple(kernel_size, dims, name="kernel_size")
    if any(s % 2 == 0 for s in k):
        raise ValueError(f"kernel_size must be odd in every dimension, got {k}")
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return conv(in_ch, out_ch, k, padding=tuple(s // 2 for s in k), bias=bias)


def make_norm(kind: str, channels: int, dims: int, *, affine: bool = False) -> nn.Module:
    """A normalisation layer that computes the same map at every call.

    ``batch`` is BatchNorm (running statistics), ``batch_stats`` is BatchNorm with batch statistics in
    training and testing (``track_running_stats=False``, as in the c-rbp hGRU; affine only if ``affine``),
    ``group`` is GroupNorm with up to 8 groups, ``instance`` is instance normalisation (parameter-free
    unless ``affine``), ``none`` is the identity. None of them keeps per-timestep state, which is what
    C-RBP requires. BatchNorm (``batch``) and GroupNorm are always affine.
    """
    if kind == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    if kind == "batch_stats":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels, affine=affine, track_running_stats=False)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=affine)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}; got {kind!r}")


class ConvBlock(nn.Sequential):
    """Two (conv -> norm -> ReLU) layers."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, kernel_size: int | Sequence[int], norm: str) -> None:
        super().__init__(
            conv_nd(dims, in_ch, out_ch, kernel_size, bias=norm == "none"),
            make_norm(norm, out_ch, dims),
            nn.ReLU(inplace=True),
            conv_nd(dims, out_ch, out_ch, kernel_size, bias=norm == "none"),
            make_norm(norm, out_ch, dims),
            nn.ReLU(inplace=True),
        )


def max_pool(x: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """Max-pool by ``factor`` per spatial axis, ceil mode so odd sizes keep their border voxels."""
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return pool(x, kernel_size=tuple(factor), stride=tuple(factor), ceil_mode=True)


def resize_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Upsample ``x`` to the spatial size of ``like`` (bilinear / trilinear)."""
    if x.shape[2:] == like.shape[2:]:
        return x
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    return F.interpolate(x, size=like.shape[2:], mode=mode, align_corners=False)
