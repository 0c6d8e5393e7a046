"""GALA attention for the fGRU gain gate, as built in serre-lab/gammanet_pytorch (``layers/fgru_base.py``).

``GALA_Attention`` there multiplies two branches of the recurrent state H, both two layers deep
(``attention_layers=2``), each convolution followed by ReLU and no normalisation (``norm_attention=False``)::

    "global" (their SE_Attention, 1x1 kernels):  A_c = [V2 * [V1 * H + c1]+ + c2]+    K -> K/2 -> K channels
    spatial  (their SA_Attention, 5x5 kernels):  A_s = [S2 * [S1 * H + d1]+ + d2]+    K -> K/2 -> 1 channel
    GALA(H) = A_s . A_c                                                              (K channels)

and the fGRU uses ``GALA(H)`` in place of the gain-gate convolution ``U1 * H``. Kernels are orthogonally
initialised and biases start at 0, as there.

Differences, named: the "global" branch of that port has no global pooling (1x1 convolutions per
position), although the GALA paper (Linsley et al., ICLR 2019) describes global feature attention; we
follow the port, the paper's form is unverified here. The port is 2D only; in 3D we use a saliency kernel
of ``(1, 5, 5)`` by default (our choice, no 3D reference), and 'same' zero padding throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from shared.backbones.layers import conv_nd


def _branch(dims: int, channels: int, hidden: int, out: int, kernel: int | Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in ((channels, hidden), (hidden, out)):
        conv = conv_nd(dims, c_in, c_out, kernel)
        nn.init.orthogonal_(conv.weight)
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()]
    return nn.Sequential(*layers)


class GALAAttention(nn.Module):
    """Global-and-local attention ``GALA(H) = A_s(H) . A_c(H)`` for a gain gate (same shape as H).

    Parameters
    ----------
    dims : 2 or 3 spatial dimensions.
    channels : K, input = output channels.
    saliency_kernel : odd kernel of the spatial branch (reference 5 in 2D).

    Examples
    --------
    >>> gala = GALAAttention(2, 4)
    >>> gala(torch.rand(1, 4, 8, 8)).shape
    torch.Size([1, 4, 8, 8])
    """

    def __init__(self, dims: int, channels: int, saliency_kernel: int | Sequence[int] = 5) -> None:
        super().__init__()
        hidden = max(channels // 2, 1)
        self.feature = _branch(dims, channels, hidden, channels, 1)
        self.spatial = _branch(dims, channels, hidden, 1, saliency_kernel)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(batch, K, *spatial) -> (batch, K, *spatial), non-negative."""
        return self.spatial(h) * self.feature(h)
