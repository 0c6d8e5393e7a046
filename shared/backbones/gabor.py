"""An analytic Gabor filter bank: the hGRU's published front end, generated instead of loaded.

The hGRU Pathfinder models (serre-lab/hgru-pytorch, serre-lab/hgru_share, c-rbp ``hgrucleanSEG.py``)
initialise their 7x7 front end with 25 filters loaded from ``gabor_serre.npy``: orientation-tuned,
zero-mean, unit-norm Gabors plus one luminance filter, applied with a bias and squared (an energy model).
That file is not available here, so :func:`gabor_bank` builds an equivalent bank analytically with the
HMAX S1 parameters of Serre et al. (PAMI 2007) for a 7x7 receptive field (wavelength 3.5 px, sigma 2.8 px,
aspect ratio 0.3). Those parameters, the orientation count and the two phases are our choice: they are
**not verified** against the contents of ``gabor_serre.npy``.
"""

from __future__ import annotations

import math

import torch


def gabor_bank(
    n_filters: int = 25,
    kernel_size: int = 7,
    *,
    wavelength: float = 3.5,
    sigma: float = 2.8,
    aspect: float = 0.3,
    phases: tuple[float, ...] = (0.0, math.pi / 2),
    luminance: bool = True,
) -> torch.Tensor:
    """Zero-mean, unit-norm oriented Gabors plus one unit-norm Gaussian luminance filter.

    The ``n_filters - 1`` Gabors (all ``n_filters`` when ``luminance`` is False) tile orientation evenly
    over [0, pi): with two phases, orientation ``k`` carries an even (cosine, bar-detecting) and an odd
    (sine, edge-detecting) filter, i.e. a quadrature pair whose squared responses sum to local oriented
    energy. Filter ``i`` has orientation ``pi * (i // len(phases)) / n_orientations`` and phase
    ``phases[i % len(phases)]``; the luminance filter (an isotropic Gaussian of width ``sigma``, not
    zero-mean) comes last.

    Parameters
    ----------
    n_filters : filters in the bank (published 25: 24 Gabors + luminance).
    kernel_size : odd side length in pixels (published 7).
    wavelength : carrier wavelength in pixels.
    sigma : Gaussian envelope width in pixels (along the carrier).
    aspect : envelope aspect ratio (gamma in HMAX); < 1 elongates the envelope along the stripes, i.e.
        along the filter's preferred bar orientation.
    phases : carrier phases, in radians.
    luminance : include the luminance filter as the last channel.

    Returns
    -------
    weight : float32 tensor of shape (n_filters, 1, kernel_size, kernel_size), (filter, input channel,
        row, column); each filter has unit L2 norm and every Gabor sums to zero.

    Examples
    --------
    >>> w = gabor_bank(25, 7)
    >>> w.shape
    torch.Size([25, 1, 7, 7])
    >>> bool(w[:24].sum(dim=(1, 2, 3)).abs().max() < 1e-5), bool((w.flatten(1).norm(dim=1) - 1).abs().max() < 1e-5)
    (True, True)
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    n_gabors = n_filters - int(luminance)
    if n_gabors < 1 or not phases:
        raise ValueError(f"need at least one Gabor and one phase, got n_filters={n_filters}, phases={phases}")
    if min(wavelength, sigma, aspect) <= 0:
        raise ValueError("wavelength, sigma and aspect must be > 0")
    half = kernel_size // 2
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    row, col = torch.meshgrid(coords, coords, indexing="ij")
    n_orientations = math.ceil(n_gabors / len(phases))
    filters = []
    for i in range(n_gabors):
        theta = math.pi * (i // len(phases)) / n_orientations
        phase = phases[i % len(phases)]
        along = col * math.cos(theta) + row * math.sin(theta)
        across = -col * math.sin(theta) + row * math.cos(theta)
        envelope = torch.exp(-(along**2 + (aspect * across) ** 2) / (2 * sigma**2))
        g = envelope * torch.cos(2 * math.pi * along / wavelength + phase)
        filters.append(g - g.mean())  # zero mean: no response to uniform luminance
    if luminance:
        filters.append(torch.exp(-(row**2 + col**2) / (2 * sigma**2)))
    bank = torch.stack(filters)
    bank = bank / bank.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return bank.unsqueeze(1).float()
