"""rldiag.diagnose, rldiag.taxonomy, rldiag.sweep, rldiag.normalization and the rldiag CLI."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from rldiag.cli import main
from rldiag.diagnose import (
    Cell,
    DiagnoseConfig,
    bc_curve_scores,
    bootstrap_challenges,
    challenge_scores,
    config_from_preset,
    normalized_auc,
    plan_cells,
    rl_curve,
)
from rldiag.envs import GAMES
from rldiag.normalization import RETURN_RANGES, SOURCE, normalize_return, return_range
from rldiag.sweep import run_diagnosis
from rldiag.taxonomy import axis_label, build_taxonomy, cluster_games, place_labels, write_taxonomy


def test_normalisation_table_covers_all_games_with_its_source():
    assert set(RETURN_RANGES) == set(GAMES)
    assert return_range("starpilot", "hard") == (1.5, 35.0)
    assert return_range("fruitbot", "easy") == (-1.5, 32.4)
    assert "train-procgen" in SOURCE
    np.testing.assert_allclose(normalize_return([2.5, 33.25, 100.0], "starpilot"), [0.0, 0.5, 1.0])
    assert normalize_return([100.0], "starpilot", clip=False)[0] > 1
    with pytest.raises(ValueError, match="must be one of 'easy', 'hard'"):
        return_range("coinrun", "memory")


def test_normalized_auc_by_hand():
    assert normalized_auc([0, 50, 100], [0.0, 1.0, 1.0], 100) == pytest.approx(0.75)
    assert normalized_auc([50], [0.4], 100) == pytest.approx(0.4)  # held flat both ways
    assert normalized_auc([25, 75], [0.0, 1.0], 100) == pytest.approx(0.5)
    assert math.isnan(normalized_auc([], [], 100))
    with pytest.raises(ValueError, match="increasing"):
        normalized_auc([60, 50], [0.0, 1.0], 100)


def test_rl_curve_bins_episodes_by_iteration():
    episodes = [(30, 5.0, 10), (60, 10.0, 10), (100, 7.5, 10)]
    xs, ys = rl_curve(episodes, iteration_steps=64, budget=128, game="coinrun", distribution_mode="easy")
    assert xs == [64, 128] and ys == pytest.approx([0.5, 0.5])


def test_challenge_scores_and_bc_chance_correction():
    s = challenge_scores(0.2, 0.6, 0.7)
    assert s == pytest.approx({"RLC": 0.4, "PLC_gap": 0.4, "PLC_bc": 0.3, "PLC": 0.35})
    assert challenge_scores(0.8, 0.6, 0.7, plc="gap")["PLC"] == 0.0  # pixels easier: no gap
    assert bc_curve_scores([0.5, 0.75, 1.0], 0.5) == pytest.approx([0.0, 0.5, 1.0])
    assert math.isnan(bc_curve_scores([0.3], 1.0)[0])  # a constant expert says nothing about perception
    with pytest.raises(ValueError, match="plc must be one of"):
        challenge_scores(0, 0, 0, plc="max")


def test_bootstrap_intervals_over_seeds():
    aucs = {
        "pix": np.array([0.1, 0.2, 0.3]),
        "simp": np.array([0.5, 0.6, 0.7]),
        "bc": np.array([0.4, 0.5, 0.6]),
    }
    out = bootstrap_challenges(aucs, n_boot=500, seed=1)
    assert out["estimate"]["RLC"] == pytest.approx(0.4)
    for k in ("PLC", "RLC"):
        assert out["low"][k] <= out["estimate"][k] <= out["high"][k]
        assert out["high"][k] - out["low"][k] > 0.05
    assert out["samples"].shape == (500, 2)
    same = bootstrap_challenges({k: np.full(3, 0.5) for k in aucs}, n_boot=100)
    assert same["low"]["RLC"] == same["high"]["RLC"] == 0.5
    gap_only = bootstrap_challenges({**aucs, "bc": np.array([np.nan])}, n_boot=100)
    assert gap_only["estimate"]["PLC"] == gap_only["estimate"]["PLC_gap"] == pytest.approx(0.4)
    assert math.isnan(gap_only["low"]["PLC_bc"])
    with pytest.raises(ValueError, match="condition"):
        bootstrap_challenges({**aucs, "bc": np.array([np.nan])}, plc="bc")
    with pytest.raises(ValueError, match="condition"):
        bootstrap_challenges({**aucs, "simp": np.array([])})


def _write_cell(out, game, cond, seed, auc, fingerprint="f"):
    path = out / "cells" / f"{game}__{cond}__s{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "game": game,
                "condition": cond,
                "seed": seed,
                "auc": auc,
                "x": [1],
                "y": [auc],
                "fingerprint": fingerprint,
            }
        )
    )


def test_taxonomy_labels_quadrants_and_clusters(tmp_path):
    # solved-ish coinrun, RL-limited heist, perception-limited maze (pix and bc much worse than simp)
    spec = {"coinrun": (0.9, 0.95, 0.9), "heist": (0.1, 0.12, 0.9), "maze": (0.1, 0.9, 0.05)}
    for game, (pix, simp, bc) in spec.items():
        for seed, jitter in enumerate((-0.02, 0.0, 0.02)):
            for cond, v in zip(("pix", "simp", "bc"), (pix, simp, bc)):
                _write_cell(tmp_path, game, cond, seed, v + jitter)
    table = build_taxonomy(tmp_path, n_boot=300).set_index("game")
    assert table.loc["coinrun", "quadrant"] == "solved"
    assert table.loc["heist", "quadrant"] == "RL-limited"
    assert table.loc["maze", "quadrant"] == "perception-limited"
    assert (table["stability"] > 0.9).all()
    assert table["cluster"].nunique() == 3
    assert axis_label(0.4, 0.6, 0.5) == "uncertain" and axis_label(0.6, 0.7, 0.5) == "high"
    assert cluster_games(np.array([[0.1, 0.1], [0.12, 0.1], [0.9, 0.9]]), 2).tolist() in (
        [1, 1, 2],
        [2, 2, 1],
    )
    median = build_taxonomy(tmp_path, threshold="median", n_boot=100)
    assert median.attrs["rlc_threshold"] == pytest.approx(float(median["RLC"].median()))


def test_taxonomy_says_insufficient_data_instead_of_a_quadrant(tmp_path, capsys):
    # coinrun: the README smoke run's situation, one seed with a finished episode and bc uninformative;
    # starpilot: three seeds but bc NaN everywhere; heist: a clear RL-limited game; maze: simp never finished
    nan = float("nan")
    for seed in (0, 1, 2):
        for cond, auc in (("pix", 0.1), ("simp", 0.12), ("bc", 0.9)):
            _write_cell(tmp_path, "heist", cond, seed, auc + 0.01 * seed)
        for cond, auc in (("pix", 0.2), ("simp", 0.6), ("bc", nan)):
            _write_cell(tmp_path, "starpilot", cond, seed, auc + 0.01 * seed)
    for seed, auc in ((0, 0.0), (1, nan)):
        for cond in ("pix", "simp"):
            _write_cell(tmp_path, "coinrun", cond, seed, auc)
        _write_cell(tmp_path, "coinrun", "bc", seed, nan)
    _write_cell(tmp_path, "maze", "pix", 0, 0.3)
    table = build_taxonomy(tmp_path, n_boot=200).set_index("game")
    assert table.loc["heist", "quadrant"] == "RL-limited" and table.loc["heist", "note"] == ""
    for game in ("coinrun", "starpilot", "maze"):
        assert table.loc[game, "quadrant"] == table.loc[game, "PLC_axis"] == "insufficient data"
        assert math.isnan(table.loc[game, "stability"]) and pd.isna(table.loc[game, "cluster"])
    assert "1 seed" in table.loc["coinrun", "note"] and math.isnan(table.loc["coinrun", "RLC_low"])
    assert "bc AUC NaN" in table.loc["starpilot", "note"] and "--plc gap" in table.loc["starpilot", "note"]
    assert "simp" in table.loc["maze", "note"]
    # with PLC from the pix/simp gap alone, three seeds suffice for starpilot; one still does not for coinrun
    gap = build_taxonomy(tmp_path, plc="gap", n_boot=200).set_index("game")
    assert gap.loc["starpilot", "quadrant"] != "insufficient data"
    assert gap.loc["coinrun", "quadrant"] == "insufficient data"
    assert main(["taxonomy", str(tmp_path), "--n-boot", "200"]) == 0
    printed = capsys.readouterr().out
    assert "coinrun: insufficient data (1 seed" in printed and "RL-limited" in printed
    saved = json.loads((tmp_path / "taxonomy.json").read_text())
    assert set(saved["insufficient data"]) == {"coinrun", "starpilot", "maze"}
    assert saved["incomplete_games"] == ["maze"]
    coinrun = next(g for g in saved["games"] if g["game"] == "coinrun")
    assert coinrun["quadrant"] == "insufficient data" and coinrun["cluster"] is None
    assert pd.read_csv(tmp_path / "taxonomy.csv").set_index("game").loc["coinrun", "quadrant"] == "insufficient data"


def test_taxonomy_labels_never_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    ax.set(xlim=(-0.05, 1.05), ylim=(-0.14, 1.14))
    rng = np.random.default_rng(0)
    points = np.vstack([0.3 + rng.normal(0, 0.005, (12, 2)), [[0.9, 0.9], [0.91, 0.9]]])
    labels = [f"game{i}" for i in range(len(points))]
    annotations = place_labels(ax, points, labels)
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ann in annotations:
        ann.update_positions(renderer)
        boxes.append(Text.get_window_extent(ann, renderer))
    overlaps = [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert overlaps == []
    plt.close(fig)


def test_config_presets_and_validation():
    cfg = config_from_preset(["coinrun"], "cpu-smoke", budget=4096)
    assert cfg.encoder == "nature" and cfg.profile == "cpu-smoke" and cfg.bc_frames == 1024
    assert [c.condition for c in plan_cells(DiagnoseConfig(games=["coinrun"], seeds=[0]))] == [
        "pix",
        "simp",
        "bc",
    ]
    with pytest.raises(ValueError, match="less than one PPO rollout"):
        config_from_preset(["coinrun"], "gpu-full", budget=1000)
    with pytest.raises(ValueError, match="game must be one of"):
        config_from_preset(["pong"], "cpu-smoke", budget=4096)
    with pytest.raises(ValueError, match=r"ppo overrides \['seed'\] are not allowed"):
        config_from_preset(["coinrun"], "cpu-smoke", budget=4096, ppo={"seed": 3})
    assert config_from_preset(["coinrun"], "cpu-smoke", budget=4096, ppo={"ent_coef": 0.02}).ppo == {"ent_coef": 0.02}


def test_diagnose_end_to_end_resumes_and_refuses_a_changed_config(tmp_path, capsys):
    cfg = config_from_preset(
        ["starpilot"],
        "cpu-smoke",
        budget=256,
        seeds=[0, 1],
        num_envs=4,
        num_steps=32,
        bc_frames=64,
        encoder_config={"hidden": 32},
    )
    results = run_diagnosis(cfg, tmp_path, workers=0, progress=False)
    assert len(results) == 6
    assert {(r["condition"], r["seed"]) for r in results} == {(c, s) for c in ("pix", "simp", "bc") for s in (0, 1)}
    for r in results:
        assert r["normalization_source"] == SOURCE
        informative = r["condition"] != "bc" or r["majority_rate"] < 1.0
        assert 0.0 <= r["auc"] <= 1.0 if informative else math.isnan(r["auc"])
    bc = next(r for r in results if r["condition"] == "bc")
    assert bc["expert"].endswith("starpilot__pix__s0/checkpoint.pt") or bc["expert"].endswith(
        "starpilot__pix__s1/checkpoint.pt"
    )
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.json")}
    (tmp_path / "cells" / f"{Cell('starpilot', 'simp', 1).key}.json").unlink()  # an "interrupted" sweep
    shutil.rmtree(tmp_path / "runs" / Cell("starpilot", "simp", 1).key)  # ... before its first checkpoint
    capsys.readouterr()
    run_diagnosis(cfg, tmp_path, workers=0, progress=True)
    bars = capsys.readouterr().err
    # the sweep's bar, and the re-run PPO cell's own bar (env steps, steps/s, recent return)
    assert "rldiag cells" in bars and "starpilot__simp__s1" in bars and "recent return" in bars
    for p, t in stamps.items():
        if "simp__s1" not in p.name:
            assert p.stat().st_mtime_ns == t  # finished cells are skipped
    assert (tmp_path / "cells" / "starpilot__simp__s1.json").exists()
    changed = config_from_preset(
        ["starpilot"],
        "cpu-smoke",
        budget=384,
        seeds=[0, 1],
        num_envs=4,
        num_steps=32,
        bc_frames=64,
        encoder_config={"hidden": 32},
    )
    with pytest.raises(ValueError, match=r"other settings \(budget: 256 -> 384"):
        run_diagnosis(changed, tmp_path, workers=0, progress=False)
    paths = write_taxonomy(tmp_path, n_boot=100)
    assert all(p.stat().st_size > 0 for p in paths.values())
    saved = json.loads(paths["json"].read_text())
    assert saved["games"][0]["game"] == "starpilot" and "not the published" in saved["note"]


def test_diagnose_on_a_dask_local_cluster(tmp_path, monkeypatch):
    import shared.worker_devices

    pinned = []  # the cluster comes from shared.scaleout.dask_client, which pins each worker to its own GPU
    pin = shared.worker_devices.pin_workers_to_gpus
    monkeypatch.setattr(shared.worker_devices, "pin_workers_to_gpus", lambda client: pinned.append(pin(client)))
    cfg = config_from_preset(
        ["coinrun"],
        "cpu-smoke",
        budget=128,
        seeds=[0],
        num_envs=2,
        num_steps=64,
        bc_frames=32,
        encoder_config={"hidden": 16},
    )
    results = run_diagnosis(cfg, tmp_path, workers=2, progress=False)
    assert sorted(r["condition"] for r in results) == ["bc", "pix", "simp"]
    assert len(pinned) == 1


def test_cli_help_games_and_errors(tmp_path, capsys):
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "diagnose" in capsys.readouterr().out
    assert main(["games"]) == 0
    assert "train-procgen" in capsys.readouterr().out
    assert main(["diagnose", "--games", "pong", "--budget", "4096", "--out", str(tmp_path)]) == 2
    assert "game must be one of" in capsys.readouterr().err
    out = tmp_path / "negative_workers"
    argv = ["diagnose", "--games", "coinrun", "--preset", "cpu-smoke", "--budget", "2048", "--workers", "-1"]
    assert main([*argv, "--out", str(out)]) == 2
    assert "--workers must be >= 0" in capsys.readouterr().err and not out.exists()
    assert main(["taxonomy", str(tmp_path / "missing")]) == 2
    with pytest.raises(SystemExit):
        main(["train", "--run-dir", str(tmp_path), "--encoder-config", "[1]"])


def test_cli_train_then_distill(tmp_path, capsys):
    run = tmp_path / "run"
    common = [
        "--game",
        "coinrun",
        "--encoder",
        "nature",
        "--encoder-config",
        '{"hidden": 32}',
        "--num-envs",
        "4",
        "--num-steps",
        "16",
        "--num-minibatches",
        "2",
        "--update-epochs",
        "1",
        "--no-tensorboard",
    ]
    assert main(["train", "--run-dir", str(run), "--total-timesteps", "64", *common]) == 0
    assert "64 steps" in capsys.readouterr().out
    # same command, larger budget: resumes from the checkpoint
    assert main(["train", "--run-dir", str(run), "--total-timesteps", "128", *common]) == 0
    with open(run / "progress.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["64", "128"]
    assert main(["train", "--run-dir", str(run), "--total-timesteps", "192", *common[:-1]]) == 2
    assert "tensorboard" in capsys.readouterr().err
    out = tmp_path / "bc.json"
    args = ["distill", str(run / "checkpoint.pt"), "--frames", "64", "--num-envs", "4", "--out", str(out)]
    assert main(args) == 0
    curve = json.loads(out.read_text())
    assert curve["samples"][0] == 0 and len(curve["agreement"]) == len(curve["samples"])
    assert main(["distill", str(tmp_path / "missing.pt")]) == 2
    assert main(args) == 2 and "bc.json exists" in capsys.readouterr().err  # never replaced silently
    assert main([*args, "--overwrite"]) == 0


def test_diagnose_checks_every_option_before_the_first_cell(tmp_path, capsys):
    """Issue 15: a bad seed, learning rate, encoder, encoder config or expert is one line, exit 2, and leaves
    no folder behind; --out that is a file is refused the same way."""
    base = [
        "diagnose",
        "--games",
        "coinrun",
        "--budget",
        "128",
        "--preset",
        "cpu-smoke",
        "--num-envs",
        "2",
        "--num-steps",
        "64",
        "--bc-frames",
        "32",
    ]
    out = tmp_path / "out"
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--seeds", "-1", "--out", str(out)], "seeds must be distinct, >= 0"),
        (["--ppo", '{"learning_rate": -0.1}', "--out", str(out)], "learning_rate must be a positive number"),
        (["--encoder", "resnet9000", "--out", str(out)], "unknown encoder 'resnet9000'"),
        (["--encoder-config", '{"widht": 3}', "--out", str(out)], "does not fit encoder 'nature'"),
        (["--expert-checkpoint", str(tmp_path / "{game}_{seed}.pt"), "--out", str(out)], "coinrun_0.pt"),
        (["--expert-checkpoint", str(tmp_path / "{level}.pt"), "--out", str(out)], "placeholders"),
        (["--out", str(tmp_path / "afile")], "is a file, not a folder"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not out.exists()


def _cell_curves(out) -> dict[str, tuple]:
    return {
        p.stem: (r["x"], r["y"], r["auc"])
        for p in sorted((out / "cells").glob("*.json"))
        for r in [json.loads(p.read_text())]
    }


def test_diagnose_killed_then_resumed_equals_uninterrupted_and_recomputes_a_truncated_cell(tmp_path, capsys):
    """kill -9 in the middle of a diagnosis, then the same command: the same curves as a run never stopped.
    A truncated cell file is named and that cell recomputed; a changed budget is one line, exit 2."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    args = [
        "diagnose",
        "--games",
        "coinrun",
        "--budget",
        "128",
        "--seeds",
        "0",
        "--preset",
        "cpu-smoke",
        "--num-envs",
        "2",
        "--num-steps",
        "64",
        "--bc-frames",
        "32",
        "--encoder-config",
        '{"hidden": 16}',
        "--no-taxonomy",
        "--quiet",
    ]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    expected = _cell_curves(tmp_path / "whole")
    assert len(expected) == 3
    killed = tmp_path / "killed"
    script = f"import sys; from rldiag.cli import main; sys.exit(main({[*args, '--out', str(killed)]!r}))"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((killed / ".job/done").glob("*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list((killed / ".job/done").glob("*")))
    assert 1 <= n_done < 3, "the kill should land between the first and the last cell"
    capsys.readouterr()
    assert main([*args, "--out", str(killed)]) == 0
    assert _cell_curves(killed) == expected
    truncated = killed / "cells/coinrun__simp__s0.json"
    truncated.write_text(truncated.read_text()[:40])
    assert main(["taxonomy", str(killed)]) == 2
    assert "coinrun__simp__s0.json is truncated" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="coinrun__simp__s0.json is missing or unreadable"):
        assert main([*args, "--out", str(killed)]) == 0
    assert _cell_curves(killed) == expected
    capsys.readouterr()
    assert main([*args[:4], "256", *args[5:], "--out", str(killed)]) == 2
    err = capsys.readouterr().err
    assert "other settings (budget: 128 -> 256" in err and len(err.strip().splitlines()) == 1
