"""Error consistency against sklearn's Cohen's kappa, on planted correctness patterns."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from shared.alignment.behaviour import (
    accuracy_matched_null,
    error_consistency,
    error_consistency_by_condition,
    kappa_bounds,
)
from shared.alignment.synthetic import planted_correctness


@pytest.mark.parametrize("kappa", [-0.3, 0.0, 0.4, 0.7])
def test_planted_kappa_recovered_and_matches_sklearn(kappa):
    a, b = planted_correctness(1000, 0.7, 0.8, kappa, seed=1)
    assert a.mean() == pytest.approx(0.7) and b.mean() == pytest.approx(0.8)
    assert error_consistency(a, b) == pytest.approx(kappa, abs=0.01)
    assert error_consistency(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_edge_cases_and_bounds():
    assert error_consistency(np.ones(5), np.ones(5)) == 1.0  # both perfect: p_exp = 1
    assert error_consistency([0, 0, 0], [0, 0, 0]) == 1.0
    lo, hi = kappa_bounds(0.7, 0.8)
    a, b = planted_correctness(1000, 0.7, 0.8, hi, seed=2)
    assert error_consistency(a, b) == pytest.approx(hi, abs=1e-9)
    with pytest.raises(ValueError, match="impossible"):
        planted_correctness(100, 0.7, 0.8, 1.0)
    assert lo < 0 < hi < 1
    with pytest.raises(ValueError, match="same shape"):
        error_consistency([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="0/1"):
        error_consistency([0.5, 1.0], [1, 0])


def test_accuracy_matched_null_and_conditions():
    a, b = planted_correctness(400, 0.75, 0.75, 0.5, seed=3)
    res = accuracy_matched_null(a, b, n_permutations=200)
    assert res.kappa == pytest.approx(0.5, abs=0.01)
    assert abs(res.null_mean) < 0.05 and res.p_value < 0.01
    ind_a, ind_b = planted_correctness(400, 0.75, 0.75, 0.0, seed=4)
    assert accuracy_matched_null(ind_a, ind_b, n_permutations=200).p_value > 0.05
    subjects = np.stack([b, b])
    conditions = np.arange(400) % 2
    expected = np.mean([cohen_kappa_score(a[conditions == c], b[conditions == c]) for c in (0, 1)])
    assert error_consistency_by_condition(a, subjects, conditions) == pytest.approx(abs(expected))
