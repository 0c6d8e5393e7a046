"""Training augmentations for EM crops (DeepEM-style), numpy in, numpy out.

Geometric augmentations (flips, transposes, misalignment) change raw **and** labels together and run
*before* affinities are computed, so targets stay exact. Intensity, blur and missing sections change only
the raw image. Arrays are (plane, row, column); raw is float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run and how strongly (probabilities are per crop unless noted).

    flips : random flips along every axis and a row/column transpose (when the crop is square in-plane).
    intensity : strength of contrast/brightness/gamma jitter (0 disables).
    p_missing : probability per section of being blanked (a missing section).
    p_misalign : probability of a step misalignment (all sections from a random one on shifted).
    max_misalign : largest misalignment shift in voxels (needs that much in-plane margin when reading).
    p_blur : probability per section of an extra Gaussian blur (sigma 1-2.5 voxels in-plane).
    """

    flips: bool = True
    intensity: float = 0.15
    p_missing: float = 0.03
    p_misalign: float = 0.2
    max_misalign: int = 4
    p_blur: float = 0.05

    @property
    def margin(self) -> int:
        """In-plane voxels to read around a crop so misalignment never pads."""
        return self.max_misalign if self.p_misalign > 0 else 0


def misalign(
    raw: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *, margin: int, probability: float
) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``margin`` voxels off each in-plane side, shifting sections from a random one on together.

    Parameters
    ----------
    raw, labels : arrays of shape (plane, row + 2 margin, column + 2 margin).

    Returns
    -------
    raw, labels of shape (plane, row, column).
    """
    z, h, w = raw.shape
    out_h, out_w = h - 2 * margin, w - 2 * margin
    offsets = np.full((z, 2), margin)
    if margin > 0 and z > 1 and rng.random() < probability:
        start = int(rng.integers(1, z))
        offsets[start:] += rng.integers(-margin, margin + 1, size=2)
    raw_out = np.stack([raw[i, oy : oy + out_h, ox : ox + out_w] for i, (oy, ox) in enumerate(offsets)])
    lab_out = np.stack([labels[i, oy : oy + out_h, ox : ox + out_w] for i, (oy, ox) in enumerate(offsets)])
    return raw_out, lab_out


def flip_transpose(raw: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random flips of each axis and a random row/column transpose, applied identically to both arrays."""
    for axis in range(3):
        if rng.random() < 0.5:
            raw, labels = np.flip(raw, axis), np.flip(labels, axis)
    if raw.shape[1] == raw.shape[2] and rng.random() < 0.5:
        raw, labels = raw.transpose(0, 2, 1), labels.transpose(0, 2, 1)
    return np.ascontiguousarray(raw), np.ascontiguousarray(labels)


def intensity(raw: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Contrast, brightness and gamma jitter of a [0, 1] image, clipped back to [0, 1]."""
    if strength <= 0:
        return raw
    contrast = 1.0 + rng.uniform(-strength, strength)
    brightness = rng.uniform(-strength, strength) * 0.5
    gamma = 2.0 ** rng.uniform(-strength, strength)
    out = np.clip((raw - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
    return (out**gamma).astype(np.float32)


def section_defects(raw: np.ndarray, rng: np.random.Generator, *, p_missing: float, p_blur: float) -> np.ndarray:
    """Blank (missing) and blurred sections, each drawn independently per section."""
    out = raw.copy()
    for i in range(raw.shape[0]):
        u = rng.random()
        if u < p_missing:
            out[i] = 0.0
        elif u < p_missing + p_blur:
            out[i] = ndimage.gaussian_filter(out[i], sigma=rng.uniform(1.0, 2.5))
    return out


def augment_crop(
    raw: np.ndarray, labels: np.ndarray, rng: np.random.Generator, config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """All augmentations in order: misalignment + crop, flips/transposes, then raw-only intensity and
    section defects. ``raw`` and ``labels`` carry ``config.margin`` extra voxels on each in-plane side."""
    raw, labels = misalign(raw, labels, rng, margin=config.margin, probability=config.p_misalign)
    if config.flips:
        raw, labels = flip_transpose(raw, labels, rng)
    raw = intensity(raw, rng, config.intensity)
    raw = section_defects(raw, rng, p_missing=config.p_missing, p_blur=config.p_blur)
    return raw.astype(np.float32), labels
