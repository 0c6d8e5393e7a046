"""Behavioural consistency: error consistency (Geirhos et al. 2020) and accuracy-matched comparisons.

Cohen's kappa over trial correctness: with correctness vectors c_a, c_b and accuracies a, b,
``p_obs = mean(c_a == c_b)``, ``p_exp = a b + (1 - a)(1 - b)``, ``kappa = (p_obs - p_exp) / (1 - p_exp)``.
When ``p_exp == 1`` (both observers perfect, or both always wrong) kappa is undefined; we return 1.0, since
the two then agree on every trial (serre-lab/VPT's convention: kappa = 1 when p_obs = 1).

Kappa alone depends on the accuracies (its attainable range shrinks as they diverge), so comparisons
between models are "accuracy-matched": :func:`kappa_bounds` gives the attainable range for two accuracies,
and :func:`accuracy_matched_null` the distribution of kappa for an observer with the *same* accuracy but
independently placed errors (a permutation of its correctness), against which the observed kappa is judged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.validation import check_ndim, check_shape_equal


def _correctness(c, name: str) -> np.ndarray:
    arr = np.asarray(c)
    check_ndim(arr, 1, name=name, axes="(n_trials,)")
    if arr.dtype.kind == "f" and not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold 0/1 or booleans (trial correctness)")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr.astype(bool)


def error_consistency(correct_a, correct_b) -> float:
    """Cohen's kappa between two observers' trial correctness (module docstring).

    Parameters
    ----------
    correct_a, correct_b : bool or 0/1 arrays of shape (n_trials,).

    Returns
    -------
    kappa : float in [-1, 1]; 1.0 when p_exp = 1.

    Examples
    --------
    >>> error_consistency([1, 0, 1, 0], [1, 0, 1, 0])
    1.0
    >>> error_consistency([1, 1, 1], [1, 1, 1])
    1.0
    """
    a = _correctness(correct_a, "correct_a")
    b = _correctness(correct_b, "correct_b")
    check_shape_equal(a, b, names=("correct_a", "correct_b"))
    acc_a, acc_b = a.mean(dtype=np.float64), b.mean(dtype=np.float64)
    p_obs = float(np.mean(a == b, dtype=np.float64))
    p_exp = acc_a * acc_b + (1 - acc_a) * (1 - acc_b)
    if np.isclose(p_exp, 1.0):
        return 1.0
    return float((p_obs - p_exp) / (1 - p_exp))


def error_consistency_by_condition(correct_model, correct_subjects, conditions, *, absolute: bool = True) -> float:
    """Brain-Score aggregation: kappa per (subject, condition), mean over conditions, then subjects, then abs.

    Parameters
    ----------
    correct_model : array of shape (n_trials,).
    correct_subjects : array of shape (n_subjects, n_trials) (the same trials for every subject).
    conditions : array of shape (n_trials,), the condition of each trial.
    absolute : take abs() at the end (the Brain-Score deviation; False keeps the sign).
    """
    m = _correctness(correct_model, "correct_model")
    subj = np.asarray(correct_subjects).astype(bool)
    check_ndim(subj, 2, name="correct_subjects", axes="(n_subjects, n_trials)")
    cond = np.asarray(conditions)
    if subj.shape[1] != m.size or cond.shape != m.shape:
        raise ValueError(f"correct_subjects {subj.shape} and conditions {cond.shape} must match {m.size} trials")
    per_subject = [np.mean([error_consistency(m[cond == c], s[cond == c]) for c in np.unique(cond)]) for s in subj]
    value = float(np.mean(per_subject))
    return abs(value) if absolute else value


def kappa_bounds(accuracy_a: float, accuracy_b: float) -> tuple[float, float]:
    """The smallest and largest kappa attainable by observers with these accuracies.

    p_obs is at most ``1 - |a - b|`` (one observer's errors nested in the other's) and at least
    ``|a + b - 1|`` (errors, or successes, disjoint); kappa follows from p_obs.
    """
    a, b = accuracy_a, accuracy_b
    p_exp = a * b + (1 - a) * (1 - b)
    if np.isclose(p_exp, 1.0):
        return 1.0, 1.0
    hi = 1 - abs(a - b)
    lo = 1 - min(a + b, 2 - a - b)
    return float((lo - p_exp) / (1 - p_exp)), float((hi - p_exp) / (1 - p_exp))


@dataclass
class MatchedComparison:
    """Observed kappa vs an accuracy-matched null (permuted correctness of observer a).

    Attributes
    ----------
    kappa : the observed error consistency.
    null_mean, null_sd : mean and standard deviation of the null kappas.
    p_value : (1 + #null >= observed) / (1 + n_permutations), one-sided.
    kappa_min, kappa_max : :func:`kappa_bounds` for the two accuracies.
    accuracy_a, accuracy_b : the accuracies.
    """

    kappa: float
    null_mean: float
    null_sd: float
    p_value: float
    kappa_min: float
    kappa_max: float
    accuracy_a: float
    accuracy_b: float


def accuracy_matched_null(correct_a, correct_b, *, n_permutations: int = 1000, seed: int = 0) -> MatchedComparison:
    """Compare the observed kappa with observers of identical accuracy whose errors fall at random."""
    a = _correctness(correct_a, "correct_a")
    b = _correctness(correct_b, "correct_b")
    check_shape_equal(a, b, names=("correct_a", "correct_b"))
    rng = np.random.default_rng(seed)
    observed = error_consistency(a, b)
    null = np.array([error_consistency(rng.permutation(a), b) for _ in range(n_permutations)])
    lo, hi = kappa_bounds(float(a.mean()), float(b.mean()))
    p = (1 + int((null >= observed - 1e-12).sum())) / (1 + n_permutations)
    return MatchedComparison(
        observed, float(null.mean()), float(null.std()), p, lo, hi, float(a.mean()), float(b.mean())
    )
