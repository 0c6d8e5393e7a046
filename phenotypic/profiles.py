"""Profile processing: pycytominer's per-plate robust normalisation against DMSO and feature selection,
clipping, and PCA whitening (scikit-learn).

The order follows the JUMP compound recipe (per-plate MAD normalisation against negative controls, then
feature selection) and the IBP preprocessing of the reference code (clip to [-30, 30], PCA whitening
keeping 99.9% of the variance). The reference code's own per-plate normalisation lives in a private
repository; using pycytominer's ``mad_robustize`` here is our (documented) choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from phenotypic.data import ProfileError, split_columns

__all__ = ["normalize_per_plate", "select_features", "clip_features", "fit_whitening", "process_profiles"]


def normalize_per_plate(
    profiles: pd.DataFrame,
    *,
    method: str = "mad_robustize",
    samples: str = "Metadata_pert_type == 'negcon'",
    progress: bool = False,
) -> pd.DataFrame:
    """Normalise each plate against its negative-control wells with ``pycytominer.normalize``.

    Parameters
    ----------
    profiles : DataFrame of shape (n_wells, n_metadata + n_features) with ``Metadata_Plate``.
    method : pycytominer method (``mad_robustize``: (x - median) / MAD of the control wells).
    samples : pandas query selecting the wells the statistics are computed on.

    Returns
    -------
    normalised : DataFrame with the same columns and row order.
    """
    import pycytominer

    if "Metadata_Plate" not in profiles:
        raise ProfileError("profiles need a Metadata_Plate column for per-plate normalisation")
    meta, feats = split_columns(profiles)
    out = []
    for plate, frame in tqdm(profiles.groupby("Metadata_Plate", sort=False), desc="normalise", disable=not progress):
        if frame.query(samples).empty:
            raise ProfileError(f"plate {plate!r} has no wells matching {samples!r}; cannot normalise it")
        norm = pycytominer.normalize(profiles=frame, features=feats, meta_features=meta, samples=samples, method=method)
        out.append(norm)
    result = pd.concat(out).loc[profiles.index]
    return result[meta + feats]


def select_features(
    profiles: pd.DataFrame,
    *,
    operations: Sequence[str] = ("variance_threshold", "correlation_threshold"),
    corr_threshold: float = 0.9,
) -> pd.DataFrame:
    """Drop uninformative features with ``pycytominer.feature_select`` (metadata columns are kept).

    Parameters
    ----------
    profiles : DataFrame of shape (n_wells, n_metadata + n_features).
    operations : pycytominer operations, e.g. ``variance_threshold``, ``correlation_threshold``,
        ``drop_na_columns``, ``drop_outliers``.
    """
    import pycytominer

    meta, feats = split_columns(profiles)
    selected = pycytominer.feature_select(
        profiles, features=feats, operation=list(operations), corr_threshold=corr_threshold
    )
    kept = [c for c in feats if c in selected.columns]
    if not kept:
        raise ProfileError(f"feature selection ({list(operations)}) removed every feature")
    return profiles[meta + kept]


def clip_features(profiles: pd.DataFrame, *, limit: float = 30.0) -> pd.DataFrame:
    """Clip normalised features to ``[-limit, limit]`` (the reference code uses 30)."""
    meta, feats = split_columns(profiles)
    return pd.concat([profiles[meta], profiles[feats].clip(-limit, limit)], axis=1)


def fit_whitening(features: np.ndarray, *, variance: float = 0.999, seed: int = 0) -> PCA:
    """Fit a whitening PCA keeping ``variance`` of the variance (fit it on training wells only).

    Parameters
    ----------
    features : ndarray of shape (n_wells, n_features).

    Returns
    -------
    pca : fitted ``sklearn.decomposition.PCA`` with ``whiten=True``; ``pca.transform(x)`` gives
        (n_wells, n_components) with unit variance per component.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must have shape (n_wells >= 2, n_features), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf; clean them before whitening")
    if not 0 < variance <= 1:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    n = min(x.shape) if variance == 1 else variance
    return PCA(n_components=n, whiten=True, svd_solver="full", random_state=seed).fit(x)


def process_profiles(
    profiles: pd.DataFrame,
    *,
    normalize: bool = True,
    feature_selection: bool = True,
    clip: float = 30.0,
    progress: bool = False,
) -> pd.DataFrame:
    """The profile pipeline before whitening: per-plate MAD normalisation against DMSO, feature
    selection, clipping. Positive-control wells are kept; use ``Metadata_pert_type`` to filter later."""
    out = normalize_per_plate(profiles, progress=progress) if normalize else profiles
    if feature_selection:
        out = select_features(out)
    meta, feats = split_columns(out)
    bad = ~np.isfinite(out[feats].to_numpy())
    if bad.any():  # a feature constant in a plate's controls has MAD 0 -> inf; name them, do not hide them
        cols = [feats[j] for j in np.flatnonzero(bad.any(0))]
        raise ProfileError(
            f"normalisation produced non-finite values in {len(cols)} features, e.g. {cols[:5]}"
            " (constant in some plate's negative controls); drop them before processing"
        )
    return clip_features(out, limit=clip)
