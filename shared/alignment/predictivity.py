"""Neural predictivity, Brain-Score style, offline on your own arrays.

Recipe (brain-score/vision ``regression_correlation`` and ``ceiling``):

* regression: ``PLSRegression(n_components=25, scale=False)`` (or ``RidgeCV`` over alphas);
* cross-validation: 10 ``StratifiedShuffleSplit`` splits, train 0.9, stratified on a stimulus category,
  ``random_state=1`` (``ShuffleSplit`` when no categories are given);
* per split: Pearson r per neuron on the test stimuli, **median over neurons**; score: **mean over
  splits** (with the standard error over splits);
* ceiling: split-half over repetitions (10 random halves): Pearson per neuron between the two half-means,
  Spearman-Brown corrected ``2r / (1 + r)``, median over neurons, mean over splits.

**Ceiled score reported**: ``r**2 / ceiling`` (``convention="r2_over_ceiling"``, current Brain-Score): the
fraction of the reliable variance explained. 1.x Brain-Score and its README use ``(r / ceiling)**2``
(``"squared_ratio"``); ``"ratio"`` gives ``r / ceiling``. All three are in :class:`PredictivityResult`
via :func:`ceiled_score`, and the raw r is always reported, so no one has to guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.validation import check_choice, check_finite, check_ndim

CONVENTIONS = ("r2_over_ceiling", "squared_ratio", "ratio")


def pearson_per_column(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of (n_samples, n_columns) arrays (NaN for constant columns)."""
    a = np.asarray(a, np.float64) - np.mean(a, axis=0)
    b = np.asarray(b, np.float64) - np.mean(b, axis=0)
    denom = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(0) / denom
    return np.where(denom > 0, r, np.nan)


def spearman_brown(r, n: float = 2.0):
    """Spearman-Brown prophecy ``n r / (1 + (n - 1) r)`` (n = 2 corrects a split-half correlation)."""
    r = np.asarray(r, np.float64)
    return n * r / (1 + (n - 1) * r)


def ceiled_score(raw: float, ceiling: float, *, convention: str = "r2_over_ceiling") -> float:
    """Normalise a raw predictivity r by a reliability ceiling (see the module docstring)."""
    check_choice(convention, CONVENTIONS, name="convention")
    if convention == "r2_over_ceiling":
        return raw**2 / ceiling
    if convention == "squared_ratio":
        return (raw / ceiling) ** 2
    return raw / ceiling


def split_half_ceiling(repetitions, *, n_splits: int = 10, seed: int = 0) -> tuple[float, np.ndarray]:
    """Split-half, Spearman-Brown corrected reliability of repetition-averaged responses.

    Parameters
    ----------
    repetitions : array of shape (n_repetitions, n_stimuli, n_neurons), n_repetitions >= 2.
    n_splits : random halvings of the repetitions.
    seed : random seed.

    Returns
    -------
    ceiling : float, mean over splits of the median over neurons of ``2r / (1 + r)``.
    per_split : ndarray of shape (n_splits,).
    """
    reps = np.asarray(repetitions, np.float64)
    check_ndim(reps, 3, name="repetitions", axes="(n_repetitions, n_stimuli, n_neurons)")
    check_finite(reps, name="repetitions")
    if reps.shape[0] < 2:
        raise ValueError(f"need at least 2 repetitions for a split-half ceiling, got {reps.shape[0]}")
    rng = np.random.default_rng(seed)
    out = np.empty(n_splits)
    k = reps.shape[0]
    for i in range(n_splits):
        perm = rng.permutation(k)
        r = pearson_per_column(reps[perm[: k // 2]].mean(0), reps[perm[k // 2 :]].mean(0))
        out[i] = np.nanmedian(spearman_brown(r))
    return float(out.mean()), out


@dataclass
class PredictivityResult:
    """Result of :func:`neural_predictivity`.

    Attributes
    ----------
    raw : mean over splits of the median over neurons of the test Pearson r.
    sem : standard error of ``raw`` over splits.
    per_split : ndarray of shape (n_splits,).
    per_neuron : ndarray of shape (n_neurons,), mean over splits of each neuron's r.
    ceiling : the split-half ceiling (NaN when no repetitions were given).
    ceiled : ``ceiled_score(raw, ceiling, convention)``.
    convention : the ceiling convention of ``ceiled``.
    """

    raw: float
    sem: float
    per_split: np.ndarray
    per_neuron: np.ndarray
    ceiling: float
    ceiled: float
    convention: str


def _regressor(regression: str, n_components: int, alphas: Sequence[float]):
    if regression == "pls":
        from sklearn.cross_decomposition import PLSRegression

        return PLSRegression(n_components=n_components, scale=False)
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=np.asarray(alphas, np.float64))


def neural_predictivity(
    features,
    responses,
    *,
    categories=None,
    repetitions=None,
    regression: str = "pls",
    n_components: int = 25,
    alphas: Sequence[float] = tuple(10.0 ** np.arange(-3, 6)),
    n_splits: int = 10,
    train_size: float = 0.9,
    random_state: int = 1,
    convention: str = "r2_over_ceiling",
) -> PredictivityResult:
    """Cross-validated linear predictivity of neural responses from model features.

    Parameters
    ----------
    features : array of shape (n_stimuli, n_features).
    responses : array of shape (n_stimuli, n_neurons), repetition-averaged.
    categories : optional array of shape (n_stimuli,) to stratify the splits on (e.g. object name).
    repetitions : optional array of shape (n_repetitions, n_stimuli, n_neurons) for the ceiling.
    regression : ``"pls"`` (25 components, Brain-Score default) or ``"ridge"`` (RidgeCV over ``alphas``).
    n_components : PLS components (capped at the feature count and training-set size).
    n_splits, train_size, random_state : the shuffle-split cross-validation (10, 0.9, 1).
    convention : how ``ceiled`` is computed (module docstring).

    Returns
    -------
    result : :class:`PredictivityResult`.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    check_choice(regression, ("pls", "ridge"), name="regression")
    check_choice(convention, CONVENTIONS, name="convention")
    x = np.asarray(features, np.float64)
    y = np.asarray(responses, np.float64)
    check_ndim(x, 2, name="features", axes="(n_stimuli, n_features)")
    check_ndim(y, 2, name="responses", axes="(n_stimuli, n_neurons)")
    if len(x) != len(y):
        raise ValueError(f"features and responses disagree on n_stimuli: {len(x)} vs {len(y)}")
    check_finite(x, name="features")
    check_finite(y, name="responses")
    if categories is None:
        splitter = ShuffleSplit(n_splits=n_splits, train_size=train_size, random_state=random_state)
        split_iter = splitter.split(x)
    else:
        cats = np.asarray(categories)
        if cats.shape != (len(x),):
            raise ValueError(f"categories must have shape ({len(x)},), got {cats.shape}")
        splitter = StratifiedShuffleSplit(n_splits=n_splits, train_size=train_size, random_state=random_state)
        split_iter = splitter.split(x, cats)
    per_split, per_neuron = [], []
    for train, test in split_iter:
        n_comp = max(1, min(n_components, x.shape[1], len(train) - 1))
        reg = _regressor(regression, n_comp, alphas).fit(x[train], y[train])
        r = pearson_per_column(reg.predict(x[test]), y[test])
        per_neuron.append(r)
        per_split.append(np.nanmedian(r))
    per_split_arr = np.asarray(per_split)
    raw = float(per_split_arr.mean())
    sem = float(per_split_arr.std(ddof=1) / np.sqrt(len(per_split_arr))) if len(per_split_arr) > 1 else 0.0
    ceiling = split_half_ceiling(repetitions)[0] if repetitions is not None else float("nan")
    return PredictivityResult(
        raw,
        sem,
        per_split_arr,
        np.nanmean(np.stack(per_neuron), 0),
        ceiling,
        ceiled_score(raw, ceiling, convention=convention),
        convention,
    )


def layer_sweep(
    model,
    images,
    responses,
    layers: Sequence[str],
    *,
    pooling: str = "avg",
    batch_size: int = 64,
    progress: bool = True,
    **options,
) -> pd.DataFrame:
    """Neural predictivity of each layer, with a tqdm bar over layers.

    Brain-Score commits one layer per region on held-out data; picking the best layer of this table on
    the same data is optimistically biased, so report it as such.

    Parameters
    ----------
    model : any nn.Module; images : (n_stimuli, channels, rows, columns); responses : (n_stimuli, n_neurons).
    layers : module names; pooling, batch_size : see :func:`shared.alignment.features.extract_features`.
    options : passed to :func:`neural_predictivity` (categories, repetitions, regression, ...).

    Returns
    -------
    table : DataFrame with columns layer, raw, sem, ceiling, ceiled, convention, n_features.
    """
    from tqdm.auto import tqdm

    from shared.alignment.features import extract_features

    repetitions = options.pop("repetitions", None)
    convention = options.pop("convention", "r2_over_ceiling")
    ceiling = split_half_ceiling(repetitions)[0] if repetitions is not None else float("nan")
    rows = []
    for layer in tqdm(list(layers), desc="layers", unit="layer", disable=not progress):
        feats = extract_features(model, images, [layer], pooling=pooling, batch_size=batch_size)[layer]
        res = neural_predictivity(feats, responses, convention=convention, **options)
        rows.append(
            {
                "layer": layer,
                "raw": res.raw,
                "sem": res.sem,
                "ceiling": ceiling,
                "ceiled": ceiled_score(res.raw, ceiling, convention=convention),
                "convention": convention,
                "n_features": feats.shape[1],
            }
        )
    return pd.DataFrame(rows)
