"""Human responses on the tracking tasks: the file format, its validation, and model-vs-human comparisons.

The human data of the PathTracker and FeatureTracker papers is not public (see
``/work/shared/reference/tracking.md``, "Not found"), so this module fixes a format a lab can fill in and
compares a model with it; the tests use a synthetic file.

File format
-----------
A CSV (``.csv``) or parquet (``.parquet``) table with **one row per trial shown to one subject**:

============  =======  ===================================================================================
column        type     meaning
============  =======  ===================================================================================
subject       string   subject identifier (non-empty)
condition     string   test condition: a name of the datamodule's ``condition_names``, e.g.
                       ``"distractors=25"`` (PathTracker) or ``"oodshapes_idcolors"`` (FeatureTracker)
trial         integer  index (>= 0) of the video inside that condition's test set, i.e. the order in
                       which :class:`~shared.tracking.datamodule.TrackingDataModule` serves it
label         0 or 1   the video's ground truth (1: the dot leaving the start marker ends in the goal)
response      0 or 1   the subject's answer (1: "ends in the goal")
============  =======  ===================================================================================

Other columns (e.g. a reaction time) are kept and ignored. A subject may see any subset of trials, each
(subject, condition, trial) at most once. Every violation is reported as one line naming the file, the
column and the first offending row (:class:`HumanFormatError`, a ``ValueError``).

Comparisons
-----------
* :func:`accuracy_by_condition`: per-condition accuracy of each observer (mean and s.d. over subjects).
* :func:`compare_with_humans`: per condition, Cohen's kappa over trial correctness (error consistency,
  Geirhos et al. 2020) between the model and each subject on the trials that subject saw, against the
  accuracy-matched null of :func:`shared.alignment.behaviour.accuracy_matched_null`; overall, the Brain-Score
  aggregation of :func:`shared.alignment.behaviour.error_consistency_by_condition` (kappa per subject and
  condition, mean over conditions, then over subjects).

Examples
--------
>>> import pandas as pd
>>> humans = pd.DataFrame({"subject": ["s1"] * 4, "condition": ["distractors=0"] * 4, "trial": [0, 1, 2, 3],
...                        "label": [1, 0, 1, 0], "response": [1, 0, 0, 0]})
>>> accuracy_by_condition(validate_responses(humans))["accuracy"].tolist()
[0.75]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from shared.alignment.behaviour import accuracy_matched_null, error_consistency_by_condition

HUMAN_COLUMNS = ("subject", "condition", "trial", "label", "response")
"""The required columns of a human response file, in the documented order."""
TRIAL_KEY = ["condition", "trial"]


class HumanFormatError(ValueError):
    """A human response file that does not follow the documented format (one-line message)."""


def _first_bad_row(df: pd.DataFrame, bad: pd.Series) -> str:
    """``row <i> (<column values>)`` of the first row where ``bad`` is true (1-based data rows)."""
    i = int(np.flatnonzero(bad.to_numpy())[0])
    values = ", ".join(f"{c}={df.iloc[i][c]!r}" for c in HUMAN_COLUMNS if c in df.columns)
    return f"row {i + 1} ({values})"


def validate_responses(df: pd.DataFrame, *, source: str = "responses") -> pd.DataFrame:
    """Check a response table against the format of the module docstring; return it with clean dtypes.

    Parameters
    ----------
    df : one row per (subject, trial), with at least :data:`HUMAN_COLUMNS`.
    source : name used in error messages (the file path).

    Returns
    -------
    DataFrame with ``subject`` and ``condition`` as str, ``trial``, ``label`` and ``response`` as int64.

    Raises
    ------
    HumanFormatError : missing columns, empty table, missing values, a non-integer or negative trial, a label
        or response other than 0/1, a repeated (subject, condition, trial), or one video given two labels.
    """
    missing = [c for c in HUMAN_COLUMNS if c not in df.columns]
    if missing:
        raise HumanFormatError(
            f"{source}: missing column(s) {', '.join(missing)}; a human response file needs "
            f"{', '.join(HUMAN_COLUMNS)} (found {', '.join(map(str, df.columns)) or 'none'})"
        )
    if df.empty:
        raise HumanFormatError(f"{source}: no rows")
    for column in HUMAN_COLUMNS:
        blank = df[column].isna() | (df[column].astype(str).str.strip() == "")
        if blank.any():
            raise HumanFormatError(f"{source}: empty {column} at {_first_bad_row(df, blank)}")
    out = df.copy()
    out["subject"] = out["subject"].astype(str).str.strip()
    out["condition"] = out["condition"].astype(str).str.strip()
    for column, allowed in (("trial", None), ("label", (0, 1)), ("response", (0, 1))):
        numbers = pd.to_numeric(out[column], errors="coerce")
        integral = numbers.notna() & (numbers == numbers.round())
        ok = integral & (numbers >= 0) if allowed is None else integral & numbers.isin(allowed)
        if not ok.all():
            want = "an integer >= 0" if allowed is None else "0 or 1"
            raise HumanFormatError(f"{source}: {column} must be {want}; bad value at {_first_bad_row(df, ~ok)}")
        out[column] = numbers.astype(np.int64)
    repeated = out.duplicated(["subject", *TRIAL_KEY], keep="first")
    if repeated.any():
        raise HumanFormatError(
            f"{source}: the same subject, condition and trial appear twice; second at {_first_bad_row(df, repeated)}"
        )
    labels = out.groupby(TRIAL_KEY)["label"].transform("nunique")
    if (labels > 1).any():
        raise HumanFormatError(
            f"{source}: one video has two labels (label differs between subjects for the same "
            f"condition and trial) at {_first_bad_row(df, labels > 1)}"
        )
    return out


def read_human_responses(path: str | Path) -> pd.DataFrame:
    """Read and validate a human response file (``.csv`` or ``.parquet``; format in the module docstring)."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise HumanFormatError(f"{path}: a human response file must be .csv or .parquet, got {path.suffix or 'none'}")
    if not path.is_file():
        raise HumanFormatError(f"{path}: no such file")
    try:
        df = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as err:
        raise HumanFormatError(
            f"{path}: not a readable {path.suffix[1:]} table ({' '.join(str(err).split())})"
        ) from err
    return validate_responses(df, source=str(path))


@torch.no_grad()
def model_responses(
    model: torch.nn.Module, loader: Any, condition_names: Sequence[str], *, subject: str = "model"
) -> pd.DataFrame:
    """Run a tracking model over a test loader and return its answers in the human format.

    Parameters
    ----------
    model : maps a video batch (B, 3, T, H, W) to logits (B,) or (B, 1)
        (e.g. :class:`~shared.tracking.module.TrackingClassifier`).
    loader : iterable of batches ``{"video", "label", "condition"}`` in the datamodule's (unshuffled) test
        order; ``trial`` counts the videos of each condition in that order.
    condition_names : condition index -> name (``datamodule.condition_names``).
    subject : value of the ``subject`` column.

    Returns
    -------
    DataFrame with :data:`HUMAN_COLUMNS` plus ``probability`` (P(label 1), float).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows: list[pd.DataFrame] = []
    seen: dict[int, int] = {}
    for batch in loader:
        logits = model(batch["video"].to(device)).reshape(-1).float().cpu()
        conditions = batch["condition"].cpu().numpy()
        trials = np.empty(len(conditions), dtype=np.int64)
        for i, c in enumerate(conditions):
            trials[i] = seen.get(int(c), 0)
            seen[int(c)] = trials[i] + 1
        rows.append(
            pd.DataFrame(
                {
                    "subject": subject,
                    "condition": [condition_names[int(c)] for c in conditions],
                    "trial": trials,
                    "label": batch["label"].cpu().numpy().astype(np.int64),
                    "response": (logits > 0).numpy().astype(np.int64),
                    "probability": torch.sigmoid(logits).numpy(),
                }
            )
        )
    model.train(was_training)
    return pd.concat(rows, ignore_index=True)


def accuracy_by_condition(responses: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per condition: mean and s.d. over subjects of each subject's accuracy, and trial counts.

    Parameters
    ----------
    responses : a validated table (:func:`validate_responses`), one or more subjects.

    Returns
    -------
    DataFrame indexed 0..n-1 with ``condition``, ``subjects``, ``trials`` (rows), ``accuracy`` (mean of the
    subjects' accuracies) and ``accuracy_sd`` (s.d. over subjects, ddof 1; 0 for one subject).
    """
    correct = responses.assign(correct=(responses["response"] == responses["label"]).astype(float))
    per_subject = correct.groupby(["condition", "subject"])["correct"].mean().reset_index()
    summary = per_subject.groupby("condition")["correct"].agg(accuracy="mean", accuracy_sd="std").fillna(0.0)
    counts = correct.groupby("condition").agg(subjects=("subject", "nunique"), trials=("trial", "size"))
    return counts.join(summary).reset_index()


def _aligned(model: pd.DataFrame, humans: pd.DataFrame) -> pd.DataFrame:
    """Human rows joined with the model's answer to the same video; checks that conditions and labels agree."""
    known = set(model["condition"])
    unknown = sorted(set(humans["condition"]) - known)
    if unknown:
        raise HumanFormatError(f"human conditions {unknown} are not among the model's test conditions {sorted(known)}")
    merged = humans.merge(
        model[[*TRIAL_KEY, "label", "response"]],
        on=TRIAL_KEY,
        how="left",
        suffixes=("", "_model"),
        validate="many_to_one",
    )
    absent = merged["response_model"].isna()
    if absent.any():
        raise HumanFormatError(
            f"human trials without a model answer (trial beyond the test set?) at {_first_bad_row(humans, absent)}"
        )
    mismatch = merged["label"] != merged["label_model"]
    if mismatch.any():
        raise HumanFormatError(
            f"human labels disagree with the stimuli (file not aligned with this test set) at "
            f"{_first_bad_row(humans, mismatch)}"
        )
    merged["human_correct"] = merged["response"] == merged["label"]
    merged["model_correct"] = merged["response_model"].astype(np.int64) == merged["label"]
    return merged


@dataclass
class HumanComparison:
    """A model against human observers.

    Attributes
    ----------
    per_condition : one row per condition: ``condition``, ``subjects``, ``trials``, ``human_accuracy`` (mean
        over subjects), ``model_accuracy`` (on the trials humans saw), ``kappa`` (mean over subjects),
        ``null_mean`` and ``null_sd`` (means over subjects of the accuracy-matched null), ``kappa_min`` and
        ``kappa_max`` (means of the attainable range), ``significant_subjects`` (subjects with one-sided
        p < 0.05 against their null).
    error_consistency : the Brain-Score aggregate (kappa per subject and condition, mean over conditions, then
        subjects; absolute value unless ``absolute=False``).
    """

    per_condition: pd.DataFrame
    error_consistency: float


def compare_with_humans(
    model: pd.DataFrame, humans: pd.DataFrame, *, n_permutations: int = 1000, seed: int = 0, absolute: bool = True
) -> HumanComparison:
    """Per-condition accuracy and error consistency of a model against human subjects.

    Parameters
    ----------
    model : the model's answers in the human format (:func:`model_responses`), one row per test video.
    humans : validated human responses (:func:`read_human_responses`).
    n_permutations, seed : the accuracy-matched null of each (subject, condition).
    absolute : the Brain-Score abs() of the aggregate.

    Each subject is compared with the model on the trials that subject saw; kappa is 1.0 when both are
    perfect on a condition (:func:`shared.alignment.behaviour.error_consistency`).
    """
    model = validate_responses(model, source="model responses")
    merged = _aligned(model, humans)
    rows, per_subject = [], []
    for condition, group in merged.groupby("condition", sort=True):
        stats = []
        for _, trials in group.groupby("subject"):
            stats.append(
                accuracy_matched_null(
                    trials["model_correct"].to_numpy(),
                    trials["human_correct"].to_numpy(),
                    n_permutations=n_permutations,
                    seed=seed,
                )
            )
        rows.append(
            {
                "condition": condition,
                "subjects": group["subject"].nunique(),
                "trials": len(group),
                "human_accuracy": float(group.groupby("subject")["human_correct"].mean().mean()),
                "model_accuracy": float(group["model_correct"].mean()),
                "kappa": float(np.mean([s.kappa for s in stats])),
                "null_mean": float(np.mean([s.null_mean for s in stats])),
                "null_sd": float(np.mean([s.null_sd for s in stats])),
                "kappa_min": float(np.mean([s.kappa_min for s in stats])),
                "kappa_max": float(np.mean([s.kappa_max for s in stats])),
                "significant_subjects": int(sum(s.p_value < 0.05 for s in stats)),
            }
        )
    for _, trials in merged.groupby("subject"):
        per_subject.append(
            error_consistency_by_condition(
                trials["model_correct"].to_numpy(),
                trials["human_correct"].to_numpy()[None],
                trials["condition"].to_numpy(),
                absolute=False,
            )
        )
    overall = float(np.mean(per_subject))
    return HumanComparison(pd.DataFrame(rows), abs(overall) if absolute else overall)
