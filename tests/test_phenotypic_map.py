"""mAP against copairs on the same profiles, hand-computed AP, and the scaling-law fits."""

import numpy as np
import pandas as pd
import pytest

from phenotypic.map import (
    average_precision,
    expected_average_precision,
    mean_average_precision,
    phenotypic_activity,
    phenotypic_consistency,
)
from phenotypic.scaling import fit_bnsl, fit_log_linear, fit_power_law, fit_scaling_laws, frontier, huber


def _profiles(seed=0, n_comp=12, reps=4, n_ctrl=16, dim=20):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_comp, dim))
    x = np.concatenate(
        [np.repeat(centers, reps, 0) + rng.normal(size=(n_comp * reps, dim)) * 0.7, rng.normal(size=(n_ctrl, dim))]
    )
    meta = pd.DataFrame(
        {
            "Metadata_JCP2022": [f"c{i}" for i in range(n_comp) for _ in range(reps)] + ["dmso"] * n_ctrl,
            "Metadata_pert_type": ["trt"] * n_comp * reps + ["negcon"] * n_ctrl,
            "Metadata_Plate": rng.choice(["P1", "P2"], n_comp * reps + n_ctrl),
            "Metadata_moa": [f"m{i % 4}" for i in range(n_comp) for _ in range(reps)] + [""] * n_ctrl,
        }
    )
    return x, meta


def test_hand_computed_ap():
    # query 0: ranking by similarity -> [pos(1), neg(2), pos(3)]: AP = (1/1 + 2/3) / 2
    x = np.array([[1.0, 0.0], [0.99, 0.1], [0.9, 0.4], [0.5, 0.8]])
    m = pd.DataFrame({"c": ["a", "a", "b", "a"], "t": ["x", "x", "y", "x"]})
    ap = average_precision(x, m, pos_sameby=["c"], neg_diffby=["c"])
    assert ap["average_precision"].iloc[0] == pytest.approx((1 + 2 / 3) / 2)
    assert ap["n_pos_pairs"].iloc[0] == 2 and ap["n_total_pairs"].iloc[0] == 3
    assert expected_average_precision(np.array([1]), np.array([1]))[0] == 1.0
    with pytest.raises(ValueError, match="positive rule"):
        average_precision(x, m, pos_sameby=["c"])


@pytest.mark.parametrize(
    "rules",
    [
        dict(
            pos_sameby=["Metadata_JCP2022", "ref"], pos_diffby=[], neg_sameby=[], neg_diffby=["Metadata_JCP2022", "ref"]
        ),
        dict(
            pos_sameby=["Metadata_JCP2022"],
            pos_diffby=["Metadata_Plate"],
            neg_sameby=["Metadata_Plate"],
            neg_diffby=["Metadata_JCP2022"],
        ),
    ],
)
def test_average_precision_equals_copairs(rules):
    from copairs.map import average_precision as copairs_ap

    x, meta = _profiles()
    meta = meta.assign(ref=np.where(meta["Metadata_pert_type"] == "negcon", np.arange(len(meta)), -1))
    ours = average_precision(x, meta, **rules, block_size=7)
    theirs = copairs_ap(meta, x, progress_bar=False, **rules)
    ok = ours["n_pos_pairs"].to_numpy() > 0
    np.testing.assert_allclose(
        ours["average_precision"].to_numpy()[ok], theirs["average_precision"].to_numpy()[ok], atol=1e-6
    )
    np.testing.assert_array_equal(ours["n_total_pairs"].to_numpy()[ok], theirs["n_total_pairs"].to_numpy()[ok])


def test_activity_and_consistency_maps_equal_copairs_and_detect_signal():
    from copairs.map import average_precision as copairs_ap
    from copairs.map import mean_average_precision as copairs_map

    x, meta = _profiles()
    act = phenotypic_activity(x, meta, null_size=2000)
    m = meta.assign(ref=np.where(meta["Metadata_pert_type"] == "negcon", np.arange(len(meta)), -1))
    ap = copairs_ap(
        m,
        x,
        pos_sameby=["Metadata_JCP2022", "ref"],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["Metadata_JCP2022", "ref"],
        progress_bar=False,
    )
    ap = ap[m["Metadata_pert_type"] == "trt"]
    ref = copairs_map(ap, ["Metadata_JCP2022"], null_size=2000, threshold=0.05, seed=0, progress_bar=False)
    merged = act.merge(ref, on="Metadata_JCP2022")
    np.testing.assert_allclose(merged["mean_average_precision_x"], merged["mean_average_precision_y"], atol=1e-6)
    assert act["below_corrected_p"].mean() > 0.8  # replicates share a centre: active
    assert (act["mean_average_precision"] > act["expected_map"]).all()
    con = phenotypic_consistency(x, meta, null_size=500)
    assert set(con["Metadata_moa"]) == {"m0", "m1", "m2", "m3"}
    multi = phenotypic_consistency(
        x, meta.assign(Metadata_moa=meta["Metadata_moa"].str.replace("m0", "m0|m1")), multilabel=True, null_size=200
    )
    assert len(multi) == 12
    null = mean_average_precision(
        average_precision(
            np.random.default_rng(1).normal(size=x.shape),
            m,
            pos_sameby=["Metadata_JCP2022", "ref"],
            neg_diffby=["Metadata_JCP2022", "ref"],
        )[lambda d: d.ref < 0],
        sameby=["Metadata_JCP2022"],
        null_size=500,
    )
    assert null["below_corrected_p"].mean() < 0.3  # no signal: few retrieved


def test_scaling_fits_recover_known_laws():
    x = np.array([100, 200, 400, 800, 1600, 3200, 6400.0])
    y = 1 - (0.2 + 2.0 * x**-0.5)
    p = fit_power_law(x, y).params
    assert p["E"] == pytest.approx(0.2, abs=0.01) and p["alpha"] == pytest.approx(0.5, abs=0.03)
    line = fit_log_linear(x, 0.1 + 0.15 * np.log10(x))
    assert line.params["slope_per_decade"] == pytest.approx(0.15, abs=1e-3)
    assert np.abs(fit_bnsl(x, y).predict(x) - y).max() < 0.01
    res = fit_scaling_laws(x, y + np.random.default_rng(0).normal(0, 0.003, len(x)), n_boot=6, target_accuracy=0.74)
    pl = res["power law + offset"]
    assert pl["ci"]["alpha"][0] <= 0.5 <= pl["ci"]["alpha"][1] + 0.1
    assert pl["extrapolation_error"] < 0.02 and res["log-linear"]["extrapolation_error"] > pl["extrapolation_error"]
    assert np.isfinite(pl["wells_for_target"]["point"])
    assert not res["warnings"]
    short = fit_scaling_laws(x[:3], y[:3], n_boot=0, laws=["log-linear"])
    assert "decades" in short["warnings"][0]
    assert huber(np.array([0.5]), 1.0)[0] == 0.125 and huber(np.array([3.0]), 1.0)[0] == 2.5
    table = pd.DataFrame({"n": [1, 1, 2, 2], "acc": [0.1, 0.3, 0.2, 0.5]})
    assert frontier(table, x="n", y="acc")["acc"].tolist() == [0.3, 0.5]
    with pytest.raises(ValueError, match=">= 3 points"):
        fit_power_law([1, 2], [0.1, 0.2])
