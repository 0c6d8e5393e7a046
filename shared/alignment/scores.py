"""Human-feature alignment scores: per-image Spearman, the ceiling-normalised alignment score, Dice, IoU.

Published recipe (serre-lab/Harmonization ``evaluation/clickme.py`` and ``metrics.py``):

1. the model map is the saliency |d logit_y / d x| max over channels
   (:func:`shared.alignment.saliency.input_gradients`), computed on pre-softmax logits, **not blurred**;
2. the human map is processed by :func:`shared.alignment.processing.process_clickme_maps`;
3. per image, Spearman rho over all pixels with average ranks for ties (``scipy.stats.spearmanr``);
4. alignment score = mean rho over images / human ceiling (0.6575315343478081 on ClickMe val); the score
   is not clipped. Published code does not filter NaN rho (constant maps); ``nan_policy`` says what we do;
5. Dice and IoU after binarising each map at its own 90th percentile with a **strict** ``>`` (so a binary
   human map covering more than 10% of the image binarises to nothing: published behaviour, kept), with
   1e-9 added to denominators.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

from shared.validation import check_choice, check_finite, check_ndim, check_shape_equal

CLICKME_HUMAN_CEILING = 0.6575315343478081
EPSILON = 1e-9


def _pair(a, b, names=("saliency", "human_maps")) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    check_ndim(a, 3, name=names[0], axes="(n_images, rows, columns)")
    check_shape_equal(a, b, names=names)
    check_finite(a, name=names[0])
    check_finite(b, name=names[1])
    return a.reshape(len(a), -1), b.reshape(len(b), -1)


def spearman_per_image(maps_a, maps_b) -> np.ndarray:
    """Spearman correlation between paired maps, one value per image.

    Parameters
    ----------
    maps_a, maps_b : arrays of shape (n_images, rows, columns).

    Returns
    -------
    rho : ndarray of shape (n_images,), float64; NaN where a map is constant.

    Notes
    -----
    Ties get average ranks, then rho is the Pearson correlation of the ranks, exactly as
    ``scipy.stats.spearmanr`` does, vectorised over images.

    Examples
    --------
    >>> a = np.arange(8.0).reshape(2, 2, 2)
    >>> spearman_per_image(a, a ** 2)
    array([1., 1.])
    """
    a, b = _pair(maps_a, maps_b, names=("maps_a", "maps_b"))
    return _pearson_rows(rankdata(a, axis=1), rankdata(b, axis=1))


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / denom
    return np.where(denom > 0, np.clip(r, -1.0, 1.0), np.nan)


def top_fraction_mask(maps, *, fraction: float = 0.1) -> np.ndarray:
    """Binarise each map at its own ``100 * (1 - fraction)`` percentile, strictly above (published).

    Parameters
    ----------
    maps : array of shape (n_images, rows, columns).
    fraction : the top fraction kept (0.1 = top 10%).

    Returns
    -------
    masks : bool ndarray of shape (n_images, rows, columns).
    """
    m = np.asarray(maps, dtype=np.float64)
    check_ndim(m, 3, name="maps", axes="(n_images, rows, columns)")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    thresholds = np.percentile(m.reshape(len(m), -1), 100 * (1 - fraction), axis=1)
    return m > thresholds[:, None, None]


def dice_top_fraction(maps_a, maps_b, *, fraction: float = 0.1) -> np.ndarray:
    """Sorensen-Dice of the two maps' top-``fraction`` masks, per image: 2|A and B| / (|A| + |B| + 1e-9)."""
    a, b = _pair(maps_a, maps_b, names=("maps_a", "maps_b"))
    ma = top_fraction_mask(np.asarray(maps_a, np.float64), fraction=fraction).reshape(len(a), -1)
    mb = top_fraction_mask(np.asarray(maps_b, np.float64), fraction=fraction).reshape(len(b), -1)
    inter = (ma & mb).sum(axis=1, dtype=np.float64)
    return 2.0 * inter / (ma.sum(axis=1, dtype=np.float64) + mb.sum(axis=1, dtype=np.float64) + EPSILON)


def iou_top_fraction(maps_a, maps_b, *, fraction: float = 0.1) -> np.ndarray:
    """IoU of the two maps' top-``fraction`` masks, per image (1e-9 added to the denominator)."""
    a, b = _pair(maps_a, maps_b, names=("maps_a", "maps_b"))
    ma = top_fraction_mask(np.asarray(maps_a, np.float64), fraction=fraction).reshape(len(a), -1)
    mb = top_fraction_mask(np.asarray(maps_b, np.float64), fraction=fraction).reshape(len(b), -1)
    return (ma & mb).sum(axis=1, dtype=np.float64) / ((ma | mb).sum(axis=1, dtype=np.float64) + EPSILON)


@dataclass
class AlignmentScores:
    """Result of :func:`alignment_score`.

    Attributes
    ----------
    score : mean Spearman / ceiling (the published "alignment score"; not clipped).
    mean_spearman : mean per-image Spearman rho (after ``nan_policy``).
    ceiling : the human ceiling used.
    dice, iou : means of the per-image top-10% Dice and IoU.
    spearman, dice_per_image, iou_per_image : ndarrays of shape (n_images,).
    n_images, n_nan : images scored and images whose rho was NaN (a constant map).
    """

    score: float
    mean_spearman: float
    ceiling: float
    dice: float
    iou: float
    spearman: np.ndarray
    dice_per_image: np.ndarray
    iou_per_image: np.ndarray
    n_images: int
    n_nan: int

    def summary(self) -> dict[str, float | int]:
        """Scalars only (JSON-ready)."""
        return {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}


def alignment_score(
    saliency, human_maps, *, ceiling: float = CLICKME_HUMAN_CEILING, fraction: float = 0.1, nan_policy: str = "omit"
) -> AlignmentScores:
    """The ClickMe alignment score of model saliency maps against human maps.

    Parameters
    ----------
    saliency : array of shape (n_images, rows, columns), the model maps (not blurred).
    human_maps : array of the same shape, the processed human maps.
    ceiling : the human Spearman ceiling (default: ClickMe val, 0.6575315343478081). Use 1.0 to get the raw
        mean rho, or :func:`shared.alignment.human_maps.map_split_half_ceiling` for your own data.
    fraction : top fraction for Dice and IoU.
    nan_policy : ``"omit"`` drops images whose rho is NaN (a constant map) from the mean, ``"propagate"``
        keeps them (published behaviour: the mean is then NaN), ``"raise"`` raises ``ValueError``.

    Returns
    -------
    scores : :class:`AlignmentScores`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> human = rng.random((3, 8, 8))
    >>> round(alignment_score(human, human, ceiling=1.0).score, 6)
    1.0
    """
    check_choice(nan_policy, ("omit", "propagate", "raise"), name="nan_policy")
    if not ceiling > 0:
        raise ValueError(f"ceiling must be > 0, got {ceiling}")
    rho = spearman_per_image(saliency, human_maps)
    nan = np.isnan(rho)
    if nan.any() and nan_policy == "raise":
        raise ValueError(
            f"{int(nan.sum())} image(s) have a constant saliency or human map (rho is NaN), "
            f"first at index {int(np.flatnonzero(nan)[0])}"
        )
    kept = rho[~nan] if nan_policy == "omit" else rho
    mean_rho = float(kept.mean()) if kept.size else float("nan")
    dice = dice_top_fraction(saliency, human_maps, fraction=fraction)
    iou = iou_top_fraction(saliency, human_maps, fraction=fraction)
    return AlignmentScores(
        score=mean_rho / ceiling,
        mean_spearman=mean_rho,
        ceiling=float(ceiling),
        dice=float(dice.mean()),
        iou=float(iou.mean()),
        spearman=rho,
        dice_per_image=dice,
        iou_per_image=iou,
        n_images=int(len(rho)),
        n_nan=int(nan.sum()),
    )
