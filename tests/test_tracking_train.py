"""Tracking training (issue 17): the LightningCLI run end to end, per-condition metrics, the CV-RNN synchrony
loss inside the training loss, and the human response format and comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from shared.tracking.human import (
    HUMAN_COLUMNS,
    HumanFormatError,
    accuracy_by_condition,
    compare_with_humans,
    read_human_responses,
    validate_responses,
)

REPO = Path(__file__).resolve().parents[1]
# the smallest data the configs' settings allow: 8 frames of 32x32, a few videos per split
TINY_DATA = [
    "--data.frames",
    "8",
    "--data.num_distractors",
    "2",
    "--data.n_train",
    "8",
    "--data.n_val",
    "4",
    "--data.n_test",
    "4",
    "--data.batch_size",
    "4",
    "--data.generation_workers",
    "1",
]
TINY_TRAINER = [
    "--trainer.max_steps",
    "2",
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.logger",
    "false",
    "--trainer.enable_checkpointing",
    "false",
    "--trainer.accelerator",
    "cpu",
]


def tiny_cli(config: str, tmp_path: Path, *extra: str):
    """Fit the config's model for 2 steps on tiny data through LightningCLI; return the CLI object."""
    from shared.cli import lightning_cli
    from shared.tracking.datamodule import TrackingDataModule
    from shared.tracking.module import TrackingClassifier

    args = [
        "fit",
        "--config",
        str(REPO / "configs" / "tracking" / config),
        "--data.root",
        str(tmp_path / "data"),
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
        *TINY_DATA,
        *TINY_TRAINER,
        *extra,
    ]
    return lightning_cli(TrackingClassifier, TrackingDataModule, args=args)


def test_cli_fits_int_and_tests_per_condition(tmp_path):
    cli = tiny_cli(
        "int.yaml",
        tmp_path,
        "--data.test_conditions",
        "[distractors=0, distractors=5]",
        "--model.backbone_config",
        '{"channels": 4}',
    )
    assert cli.trainer.global_step == 2
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    names = cli.datamodule.condition_names
    assert len(names) >= 2
    tested = [n for n in names if f"test/acc/{n}" in metrics]
    assert {"distractors=0", "distractors=5"} <= set(tested)
    for name in tested:
        assert 0.0 <= metrics[f"test/acc/{name}"] <= 1.0
        assert 0.0 <= metrics[f"test/balanced_acc/{name}"] <= 1.0
    assert "test/balanced_acc" in metrics and np.isfinite(metrics["test/loss"])
    assert any(k.startswith("test/recurrence/") for k in metrics)  # InT reports its recurrence stats


def test_cli_bad_backbone_is_one_line_exit_2(tmp_path, capsys):
    from shared.tracking.__main__ import main

    code = main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "tracking" / "int.yaml"),
            "--model.backbone",
            "nope",
            "--data.root",
            str(tmp_path / "data"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nope" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "config",
    [
        "cvrnn.yaml",
        "r3d.yaml",
        "convgru.yaml",
        "transformer.yaml",
        "featuretracker_cvrnn.yaml",
        "featuretracker_int.yaml",
        "featuretracker_control.yaml",
    ],
)
def test_every_config_builds(config, tmp_path):
    from shared.cli import lightning_cli
    from shared.tracking.datamodule import TrackingDataModule
    from shared.tracking.module import TrackingClassifier

    cli = lightning_cli(
        TrackingClassifier,
        TrackingDataModule,
        run=False,
        args=["--config", str(REPO / "configs" / "tracking" / config), "--data.root", str(tmp_path / "data")],
    )
    video = torch.rand(2, 3, 8, 32, 32)
    assert cli.model(video).shape == (2,)


def tiny_batch(frames: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two FeatureTracker videos with their object masks from the data generator."""
    from shared.data.featuretracker import FeatureTrackerConfig, generate_featuretracker

    data = generate_featuretracker(2, config=FeatureTrackerConfig(frames=frames, num_distractors=2), seed=seed)
    video = torch.from_numpy(data.videos).permute(0, 4, 1, 2, 3).float() / 255
    return {
        "video": video,
        "label": torch.from_numpy(data.labels),
        "mask": torch.from_numpy(data.masks),
        "condition": torch.zeros(2, dtype=torch.int64),
    }


def test_synchrony_loss_reaches_the_cvrnn_loss():
    from shared.backbones.tracking.synchrony import synchrony_loss
    from shared.tracking.module import TrackingClassifier

    batch = tiny_batch()
    losses, parts = {}, {}
    for weight in (0.0, 2.0):
        torch.manual_seed(0)
        model = TrackingClassifier("cvrnn", {"channels": 4}, synchrony_weight=weight)
        torch.manual_seed(1)  # the CV-RNN draws its initial phases: same draw for both weights
        losses[weight] = model._step(batch, "train")
        torch.manual_seed(1)
        _, out = model.forward_with_steps(batch["video"])
        # the default groups are the authors': background, all distractors together, the target
        parts[weight] = synchrony_loss(
            out.aux["phase"], batch["mask"].long(), merge_distractors=True, include_background=True
        )
    assert float(parts[2.0]) > 0
    assert float(losses[2.0] - losses[0.0]) == pytest.approx(2.0 * float(parts[2.0]), rel=1e-4, abs=1e-5)
    # the synchrony term alone has a gradient on the circuit's weights
    model.zero_grad()
    synchrony_loss(model.forward_with_steps(batch["video"])[1].aux["phase"], batch["mask"].long()).backward()
    grads = [p.grad.abs().sum() for p in model.backbone.parameters() if p.grad is not None]
    assert grads and float(sum(grads)) > 0
    objects = TrackingClassifier("cvrnn", {"channels": 4}, synchrony_groups="objects")
    torch.manual_seed(1)
    out = objects.forward_with_steps(batch["video"])[1]
    torch.testing.assert_close(
        objects.synchrony(out, batch["mask"]), synchrony_loss(out.aux["phase"], batch["mask"].long())
    )
    with pytest.raises(ValueError, match="synchrony_groups"):
        TrackingClassifier("cvrnn", {"channels": 4}, synchrony_groups="pixels")


def test_non_video_backbone_is_refused():
    from shared.tracking.module import TrackingClassifier

    with pytest.raises(ValueError, match="video"):
        TrackingClassifier("hgru")
    with pytest.raises(ValueError, match="unknown backbone"):
        TrackingClassifier("no_such_model")


# ------------------------------------------------------------------------------------------ human responses
def synthetic_humans() -> pd.DataFrame:
    """Two subjects, two conditions of 4 trials: chosen so every kappa is easy to compute by hand."""
    labels = [1, 0, 1, 0]
    rows = []
    answers = {
        ("s1", "a"): [1, 0, 0, 0],
        ("s1", "b"): [1, 1, 1, 0],
        ("s2", "a"): [0, 1, 1, 0],
        ("s2", "b"): [1, 0, 1, 0],
    }
    for (subject, condition), responses in answers.items():
        rows += [
            {"subject": subject, "condition": condition, "trial": t, "label": y, "response": r}
            for t, (y, r) in enumerate(zip(labels, responses))
        ]
    return pd.DataFrame(rows)


def synthetic_model() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": "model",
            "condition": ["a"] * 4 + ["b"] * 4,
            "trial": [0, 1, 2, 3] * 2,
            "label": [1, 0, 1, 0] * 2,
            "response": [1, 0, 0, 1, 0, 1, 1, 0],
        }
    )


def kappa(x, y) -> float:
    """Cohen's kappa of two 0/1 lists written out (p_obs, p_exp), independent of the library code."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    p_obs = np.mean(x == y)
    p_exp = x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean())
    return 1.0 if p_exp == 1 else (p_obs - p_exp) / (1 - p_exp)


def test_error_consistency_matches_hand_computation(tmp_path):
    path = tmp_path / "humans.csv"
    synthetic_humans().to_csv(path, index=False)
    humans = read_human_responses(path)
    result = compare_with_humans(synthetic_model(), humans, n_permutations=200)
    # correctness per trial (response == label): model a [1,1,0,0], b [0,0,1,1]
    model = {"a": [1, 1, 0, 0], "b": [0, 0, 1, 1]}
    human = {("s1", "a"): [1, 1, 0, 1], ("s1", "b"): [1, 0, 1, 1], ("s2", "a"): [0, 0, 1, 1], ("s2", "b"): [1, 1, 1, 1]}
    by_hand = {k: kappa(model[k[1]], v) for k, v in human.items()}
    assert by_hand[("s2", "a")] == pytest.approx(-1.0) and by_hand[("s2", "b")] == pytest.approx(0.0)
    table = result.per_condition.set_index("condition")
    for condition in ("a", "b"):
        expected = np.mean([by_hand[("s1", condition)], by_hand[("s2", condition)]])
        assert table.loc[condition, "kappa"] == pytest.approx(expected)
    per_subject = [np.mean([by_hand[(s, "a")], by_hand[(s, "b")]]) for s in ("s1", "s2")]
    assert result.error_consistency == pytest.approx(abs(np.mean(per_subject)))
    assert table.loc["a", "human_accuracy"] == pytest.approx(0.625)
    assert table.loc["b", "human_accuracy"] == pytest.approx(0.875)
    assert table.loc["a", "model_accuracy"] == pytest.approx(0.5)
    acc = accuracy_by_condition(humans).set_index("condition")
    assert acc.loc["b", "accuracy_sd"] == pytest.approx(np.std([0.75, 1.0], ddof=1))


def test_parquet_reads_like_csv(tmp_path):
    synthetic_humans().to_parquet(tmp_path / "h.parquet")
    synthetic_humans().to_csv(tmp_path / "h.csv", index=False)
    pd.testing.assert_frame_equal(
        read_human_responses(tmp_path / "h.parquet"), read_human_responses(tmp_path / "h.csv")
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.drop(columns="response"), "missing column"),
        (lambda d: d.assign(response=d["response"].replace(1, 2)), "response must be 0 or 1"),
        (lambda d: d.assign(label=d["label"].astype(str).replace("1", "yes")), "label must be 0 or 1"),
        (lambda d: d.assign(trial=d["trial"] - 1), "trial must be an integer >= 0"),
        (lambda d: d.assign(trial=d["trial"] + 0.5), "trial must be an integer"),
        (lambda d: d.assign(subject=d["subject"].where(d.index != 3, "")), "empty subject"),
        (lambda d: pd.concat([d, d.iloc[[0]]]), "appear twice"),
        (lambda d: d.assign(label=d["label"].where(d.index != 12, 1 - d["label"])), "two labels"),
        (lambda d: d.iloc[0:0], "no rows"),
    ],
)
def test_bad_human_files_give_one_line_errors(tmp_path, change, message):
    path = tmp_path / "bad.csv"
    change(synthetic_humans()).to_csv(path, index=False)
    with pytest.raises(HumanFormatError, match=message) as err:
        read_human_responses(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_humans_must_match_the_model_trials():
    humans = validate_responses(synthetic_humans())
    with pytest.raises(HumanFormatError, match="not among the model's test conditions"):
        compare_with_humans(synthetic_model().replace({"condition": {"a": "c"}}), humans)
    with pytest.raises(HumanFormatError, match="disagree with the stimuli"):
        compare_with_humans(synthetic_model().assign(label=1 - synthetic_model()["label"]), humans)
    with pytest.raises(HumanFormatError, match="without a model answer"):
        compare_with_humans(synthetic_model().query("trial < 3"), humans)


def test_bad_path_is_refused(tmp_path):
    with pytest.raises(HumanFormatError, match=".csv or .parquet"):
        read_human_responses(tmp_path / "h.xlsx")
    with pytest.raises(HumanFormatError, match="no such file"):
        read_human_responses(tmp_path / "h.csv")
    assert HUMAN_COLUMNS == ("subject", "condition", "trial", "label", "response")


def test_demo_part_writes_its_section(tmp_path):
    from shared.report import Report
    from shared.tracking.demo import run_demo

    report = Report("t")
    result = run_demo(
        tmp_path,
        report,
        data={"frames": 6, "n_train": 8, "n_val": 2, "n_test": 4, "batch_size": 4},
        model={"backbone_config": {"channels": 2, "kernel_size": 3}},
        steps=2,
    )
    assert [r["condition"] for r in result["rows"]][1:] == ["distractors=0", "distractors=5"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in result["rows"])
    for key in ("examples_png", "accuracy_png", "attention_png"):
        assert Path(result[key]).stat().st_size > 1000
    assert report.sections[-1].title.startswith("Tracking") and len(report.sections[-1].figures) == 3
