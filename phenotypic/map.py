"""Mean average precision for profile retrieval, with the field's (copairs') definition.

For each query profile, candidates are the profiles forming a *positive* pair with it (same values in
``pos_sameby``, different values in every ``pos_diffby`` column) or a *negative* pair (same in
``neg_sameby``, different in every ``neg_diffby`` column). Candidates are ranked by cosine similarity
(ties: positives first, as copairs' stable sort does) and

    AP = (1 / M) * sum_k rel_k * precision@k,      mAP = mean AP over a group's queries,

with M positives among L candidates. Significance uses random rankings with the same (M, L):
p = (#{null mAP >= mAP} + 1) / (null_size + 1), then Benjamini-Hochberg. Values equal copairs' (tested);
the computation is a dense blocked similarity matrix instead of pair lists, which is faster for the
few-thousand-profile tables of one screen (``benchmarks/phenotypic_map_vs_copairs.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

__all__ = [
    "average_precision",
    "mean_average_precision",
    "expected_average_precision",
    "phenotypic_activity",
    "phenotypic_consistency",
]


def _codes(meta: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        raise KeyError(f"metadata has no column(s) {missing}")
    return np.stack([pd.factorize(meta[c])[0] for c in columns], 1) if columns else np.zeros((len(meta), 0), int)


def _rule(codes_same: np.ndarray, codes_diff: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(len(rows), n) boolean: same in every ``same`` column and different in every ``diff`` column."""
    n = len(codes_same)
    mask = np.ones((len(rows), n), bool)
    for j in range(codes_same.shape[1]):
        mask &= codes_same[rows, j][:, None] == codes_same[:, j][None]
    for j in range(codes_diff.shape[1]):
        mask &= codes_diff[rows, j][:, None] != codes_diff[:, j][None]
    mask[np.arange(len(rows)), rows] = False
    return mask


def _ap_rows(sim: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP of each row given similarities and candidate masks, all (rows, n)."""
    cand = pos | neg
    key = np.where(cand, -sim, np.inf)
    order = np.lexsort((~pos, key), axis=1)  # by similarity (desc), positives first on ties
    rel = np.take_along_axis(pos, order, 1)
    n_pos = pos.sum(1)
    n_tot = cand.sum(1)
    prec = np.cumsum(rel, 1) / np.arange(1, sim.shape[1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (prec * rel).sum(1) / n_pos
    return ap, n_pos, n_tot


def _unit_rows(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (n_profiles, n_features), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("a profile has zero norm; cosine similarity is undefined")
    return x / norm


def average_precision(
    features: np.ndarray,
    meta: pd.DataFrame,
    *,
    pos_sameby: Sequence[str],
    pos_diffby: Sequence[str] = (),
    neg_sameby: Sequence[str] = (),
    neg_diffby: Sequence[str] = (),
    block_size: int = 1024,
) -> pd.DataFrame:
    """Average precision of every profile as a query (copairs' ``average_precision`` semantics).

    Parameters
    ----------
    features : ndarray of shape (n_profiles, n_features).
    meta : DataFrame of length n_profiles with the rule columns.
    pos_sameby, pos_diffby, neg_sameby, neg_diffby : pair rules (lists of column names, "all" semantics).
    block_size : queries per similarity block (memory ~ block_size * n_profiles).

    Returns
    -------
    result : ``meta`` plus ``average_precision`` (NaN without positives), ``n_pos_pairs``, ``n_total_pairs``.

    Examples
    --------
    >>> x = np.array([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    >>> m = pd.DataFrame({"c": ["a", "a", "b", "b"]})
    >>> average_precision(x, m, pos_sameby=["c"], neg_diffby=["c"])["average_precision"].tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    if len(meta) != len(features):
        raise ValueError(f"features has {len(features)} rows but meta has {len(meta)}")
    if not (pos_sameby or pos_diffby) or not (neg_sameby or neg_diffby):
        raise ValueError("give at least one positive rule (pos_sameby/pos_diffby) and one negative rule")
    x = _unit_rows(features)
    ps, pd_, ns, nd = (_codes(meta, c) for c in (pos_sameby, pos_diffby, neg_sameby, neg_diffby))
    aps, npos, ntot = [], [], []
    for start in range(0, len(x), block_size):
        rows = np.arange(start, min(start + block_size, len(x)))
        pos, neg = _rule(ps, pd_, rows), _rule(ns, nd, rows)
        if np.any(pos & neg):
            raise ValueError("some pairs are both positive and negative; make the rules exclusive")
        ap, p, t = _ap_rows(x[rows] @ x.T, pos, neg)
        aps.append(ap), npos.append(p), ntot.append(t)
    out = meta.reset_index(drop=True).copy()
    out["average_precision"] = np.concatenate(aps) if aps else np.zeros(0)
    out["n_pos_pairs"] = np.concatenate(npos) if npos else np.zeros(0, int)
    out["n_total_pairs"] = np.concatenate(ntot) if ntot else np.zeros(0, int)
    return out


def expected_average_precision(n_pos: np.ndarray, n_total: np.ndarray) -> np.ndarray:
    """Expected AP of a random ranking with M positives among L candidates:
    E[AP] = (1/L) [ (M-1)/(L-1) (L - H_L) + H_L ], H_L the L-th harmonic number."""
    m, n = np.asarray(n_pos, float), np.asarray(n_total, float)
    h = np.array([np.sum(1.0 / np.arange(1, int(v) + 1)) for v in n.ravel()]).reshape(n.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, ((m - 1) / (n - 1) * (n - h) + h) / n, 1.0)


def _null_ap(n_pos: int, n_total: int, size: int, rng: np.random.Generator) -> np.ndarray:
    ranks = np.sort(rng.random((size, n_total)).argsort(1)[:, :n_pos], 1) + 1  # 1-based ranks of positives
    return (np.arange(1, n_pos + 1) / ranks).mean(1)


def mean_average_precision(
    ap: pd.DataFrame, *, sameby: Sequence[str], null_size: int = 10000, threshold: float = 0.05, seed: int = 0
) -> pd.DataFrame:
    """mAP per group with permutation p-values and Benjamini-Hochberg correction.

    Parameters
    ----------
    ap : output of :func:`average_precision` (rows without positives are ignored).
    sameby : columns defining a group (e.g. the compound).

    Returns
    -------
    result : one row per group: ``mean_average_precision``, ``p_value``, ``corrected_p_value``,
        ``below_corrected_p`` (the "retrieved" flag) and ``expected_map`` (chance level).
    """
    valid = ap[ap["n_pos_pairs"] > 0]
    if valid.empty:
        raise ValueError("no query has positive pairs")
    rng = np.random.default_rng(seed)
    cache: dict[tuple[int, int], np.ndarray] = {}
    rows = []
    for key, grp in valid.groupby(list(sameby), sort=True):
        configs = list(zip(grp["n_pos_pairs"].astype(int), grp["n_total_pairs"].astype(int), strict=True))
        null = np.zeros(null_size)
        for c in configs:
            if c not in cache:
                cache[c] = _null_ap(c[0], c[1], null_size, rng)
            null += cache[c]
        null /= len(configs)
        observed = grp["average_precision"].mean()
        p = (np.sum(null >= observed) + 1) / (null_size + 1)
        exp = expected_average_precision(grp["n_pos_pairs"].to_numpy(), grp["n_total_pairs"].to_numpy()).mean()
        rows.append(
            dict(zip(sameby, key if isinstance(key, tuple) else (key,), strict=True))
            | {"mean_average_precision": observed, "p_value": p, "expected_map": exp}
        )
    out = pd.DataFrame(rows)
    out["corrected_p_value"] = false_discovery_control(out["p_value"].to_numpy(), method="bh")
    out["below_corrected_p"] = out["corrected_p_value"] < threshold
    return out


def phenotypic_activity(
    features: np.ndarray,
    meta: pd.DataFrame,
    *,
    perturbation: str = "Metadata_JCP2022",
    control: str = "Metadata_pert_type",
    control_value: str = "negcon",
    sameby_plate: bool = False,
    null_size: int = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """Phenotypic activity: can a compound's replicate wells be retrieved against negative-control wells?

    Positives are replicate wells of the same perturbation; negatives are control wells (optionally on the
    same plate). Controls themselves are not queries. Returns :func:`mean_average_precision` per
    perturbation.
    """
    is_ctrl = (meta[control] == control_value).to_numpy()
    if not is_ctrl.any():
        raise ValueError(f"no control wells ({control} == {control_value!r}) to compare against")
    m = meta.reset_index(drop=True).assign(_ctrl=is_ctrl)
    # copairs' reference-index trick: controls get unique ids so they never pair with each other
    m["_ref"] = np.where(is_ctrl, np.arange(len(m)), -1)
    ap = average_precision(
        features,
        m,
        pos_sameby=[perturbation, "_ref"],
        neg_sameby=["Metadata_Plate"] if sameby_plate else [],
        neg_diffby=[perturbation, "_ref"],
    )
    ap = ap[~is_ctrl]
    return mean_average_precision(ap, sameby=[perturbation], null_size=null_size, seed=seed)


def phenotypic_consistency(
    features: np.ndarray,
    meta: pd.DataFrame,
    *,
    label: str = "Metadata_moa",
    perturbation: str = "Metadata_JCP2022",
    multilabel: bool = False,
    null_size: int = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """Phenotypic consistency: do compounds sharing an annotation retrieve each other?

    Wells are first aggregated into consensus profiles (median per perturbation); positives share the label
    (for ``multilabel``, ``|``-separated labels, positives share at least one), negatives share none.
    Returns mAP per label value (single-label) or per perturbation (multi-label).
    """
    keep = (meta[label] != "").to_numpy()
    frame = pd.DataFrame(np.asarray(features)[keep]).assign(_p=meta[perturbation].to_numpy()[keep])
    consensus = frame.groupby("_p", sort=True).median()
    labels = meta.loc[keep].drop_duplicates(perturbation).set_index(perturbation).loc[consensus.index, label]
    m = pd.DataFrame({perturbation: consensus.index, label: labels.to_numpy()})
    if not multilabel:
        ap = average_precision(consensus.to_numpy(), m, pos_sameby=[label], neg_diffby=[label])
        return mean_average_precision(ap, sameby=[label], null_size=null_size, seed=seed)
    sets = [set(s.split("|")) for s in m[label]]
    x = _unit_rows(consensus.to_numpy())
    share = np.array([[bool(a & b) for b in sets] for a in sets])
    np.fill_diagonal(share, False)
    neg = ~share
    np.fill_diagonal(neg, False)
    ap, n_pos, n_tot = _ap_rows(x @ x.T, share, neg)
    res = m.assign(average_precision=ap, n_pos_pairs=n_pos, n_total_pairs=n_tot)
    return mean_average_precision(res, sameby=[perturbation], null_size=null_size, seed=seed)
