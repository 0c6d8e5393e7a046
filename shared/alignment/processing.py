"""The published ClickMe map processing, step by step (serre-lab/Harmonization ``clickme_dataset.py``).

Human maps (ClickMe ``heatmap``, 256 x 256 JPEG) are processed before scoring as follows; each step is one
function here and :func:`process_clickme_maps` chains them:

1. cast to float (values stay in [0, 255]);
2. bilinear resize to 64 x 64 (:func:`resize_maps`);
3. Gaussian blur with the published 10 x 10 kernel, sigma 10 (:func:`clickme_blur_kernel`,
   :func:`blur_maps`); the kernel is built on offsets -5..4 (columns) and 4..-5 (rows), so it sits half a
   pixel off centre and is nearly flat; it is copied exactly, and applied as TensorFlow's
   ``conv2d(padding="SAME")`` does (zero padding 4 before and 5 after on each axis, cross-correlation);
4. bilinear resize to the model's input size (224 x 224 in the paper).

The model map is **not** blurred (published behaviour). Images are resized bilinearly to 224 and stay in
[0, 255]; the model's own normalisation is applied by the user.

Reconstructed (not checked against TensorFlow here, no TensorFlow is installed): ``tf.image.resize``
bilinear without antialiasing is taken to equal ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False, antialias=False)`` (both use half-pixel centres).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shared.validation import check_ndim

CLICKME_BLUR_SIZE = 10
CLICKME_BLUR_SIGMA = 10.0
CLICKME_BLUR_RESOLUTION = 64


def clickme_blur_kernel(size: int = CLICKME_BLUR_SIZE, sigma: float = CLICKME_BLUR_SIGMA) -> np.ndarray:
    """The published Gaussian kernel, quirks included.

    Column offsets run ``-(size - 1) // 2 ... (size - 1) // 2`` and row offsets the same range reversed
    (Python floor division: -5..4 for size 10), normalised to sum 1.

    Returns
    -------
    kernel : ndarray of shape (size, size), float64.

    Examples
    --------
    >>> k = clickme_blur_kernel()
    >>> k.shape, round(float(k.sum()), 6), round(float(k[-1, 0] / k.max()), 2)
    ((10, 10), 1.0, 0.78)
    """
    if size < 1 or sigma <= 0:
        raise ValueError(f"size must be >= 1 and sigma > 0, got {size}, {sigma}")
    cols = np.arange(-(size - 1) // 2, (size - 1) // 2 + 1, dtype=np.float64)
    rows = np.arange((size - 1) // 2, -(size - 1) // 2 - 1, -1, dtype=np.float64)
    xs, ys = np.meshgrid(cols, rows)
    kernel = np.exp(-(xs**2 + ys**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d_same(maps: torch.Tensor, kernel: torch.Tensor, *, stride: int = 1) -> torch.Tensor:
    """Cross-correlate (n, 1, rows, columns) maps with one 2D kernel using TensorFlow's SAME zero padding."""
    kr, kc = kernel.shape
    top, bottom = _same_padding(maps.shape[-2], kr, stride)
    left, right = _same_padding(maps.shape[-1], kc, stride)
    padded = F.pad(maps, (left, right, top, bottom))
    return F.conv2d(padded, kernel.to(maps)[None, None], stride=stride)


def _as_maps(maps) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(maps, dtype=np.float64) if not isinstance(maps, torch.Tensor) else maps)
    check_ndim(t, 3, name="maps", axes="(n_images, rows, columns)")
    return t.double()


def resize_maps(maps, size: tuple[int, int] | int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, no antialiasing) of maps (n_images, rows, columns)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    t = _as_maps(maps)
    out = F.interpolate(t[:, None], size=size, mode="bilinear", align_corners=False, antialias=False)
    return out[:, 0].numpy()


def blur_maps(maps, kernel: np.ndarray | None = None) -> np.ndarray:
    """Blur maps (n_images, rows, columns) with ``kernel`` (default the published ClickMe kernel)."""
    k = torch.as_tensor(clickme_blur_kernel() if kernel is None else np.asarray(kernel, np.float64))
    return conv2d_same(_as_maps(maps)[:, None], k)[:, 0].numpy()


def process_clickme_maps(
    maps, *, output_size: tuple[int, int] | int = 224, blur_resolution: int = CLICKME_BLUR_RESOLUTION
) -> np.ndarray:
    """Apply the published ClickMe human-map processing (module docstring, steps 1-4).

    Parameters
    ----------
    maps : array of shape (n_images, rows, columns) (any real dtype; e.g. decoded 256 x 256 JPEGs).
    output_size : final (rows, columns), the model's input size.
    blur_resolution : the size the maps are blurred at (64 published).

    Returns
    -------
    processed : ndarray of shape (n_images, *output_size), float64.

    Examples
    --------
    >>> process_clickme_maps(np.random.rand(2, 256, 256), output_size=224).shape
    (2, 224, 224)
    """
    small = resize_maps(maps, blur_resolution)
    return resize_maps(blur_maps(small), output_size)
