"""The STAR protocol: train on some EM sources, segment a held-out source, compare gamma-Net with U-Net.

STAR (source- and tissue-agnostic reconstruction, arXiv 1811.11356) asks whether a model trained on some
volumes segments a volume from another source or tissue. Here, on simulated sources
(:data:`connectomics.simulate.SOURCES`):

1. simulate one training volume per training source, one *in-source* test volume (first training source,
   new seed; it also selects the agglomeration threshold) and one *held-out* test volume;
2. for each model (gamma-Net 3D and U-Net 3D at a matched parameter budget) and each data fraction (100 %
   and 10 % of every training volume), train an :class:`~connectomics.train.AffinityModel` with Lightning;
3. predict affinities on the test volumes, segment them (:func:`connectomics.segment.segment_in_memory`:
   waterz-style watershed + mean-affinity agglomeration), choose the threshold with the best in-source adapted
   Rand error, and score both test volumes at that threshold (ARAND, VOI, CREMI score);
4. write ``results.csv``, ``results.json`` and ``results.md`` (one row per model x fraction), and
   ``results.png`` (held-out scores per model against the data fraction, in-source ARAND for reference).

Each run lives in ``out_dir/<model>_f<fraction>/``. The same command again skips the finished runs (a
done-marker in ``out_dir/.job/``) and resumes an unfinished training from its ``checkpoints/last.ckpt``
(rewritten at every training-epoch end), so an interrupted protocol continues where it stopped and, on the CPU,
ends with the results of an uninterrupted one. Other settings in the same ``out_dir`` are refused, naming each
one that differs (``--overwrite`` starts over there); a second run into it refuses naming the first (``--wait``
waits for it).

``connectomics star --config configs/connectomics/star.yaml [--steps 200] [--out_dir ...]``
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from connectomics.affinities import DEFAULT_OFFSETS
from connectomics.io import normalize_raw, open_volume
from connectomics.metrics import evaluate_segmentation
from connectomics.train import AffinityModel

if TYPE_CHECKING:
    from shared.jobs import Job

JOB_COMMAND = "connectomics star"

DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "gammanet": {
        "backbone": "gammanet3d",
        "backbone_config": {
            "features": [12, 20],
            "downsample": [[1, 2, 2]],
            "kernel_sizes": [[1, 5, 5], [3, 3, 3]],
            "timesteps": 4,
            "norm": "instance",
        },
    },
    "unet": {
        "backbone": "unet3d",
        "backbone_config": {
            "features": [8, 16, 32],
            "downsample": [[1, 2, 2], [1, 2, 2]],
            "kernel_size": [1, 3, 3],
            "norm": "group",
        },
    },
}


def simulate_star_volumes(
    data_dir: Path, train_sources: list[str], held_out: str, shape: list[int], test_shape: list[int], seed: int
) -> dict[str, Any]:
    """Simulate (if missing) the training, in-source test and held-out test volumes; return their paths."""
    from connectomics.simulate import simulate_to_zarr

    data_dir.mkdir(parents=True, exist_ok=True)
    if held_out in train_sources:
        raise ValueError(f"held-out source {held_out!r} is also a training source {train_sources}")

    def make(name: str, source: str, vol_shape: list[int], vol_seed: int) -> str:
        path = data_dir / f"{name}.zarr"
        # resumes an interrupted simulation; a finished one is found done and kept
        simulate_to_zarr(path, source, vol_shape, seed=vol_seed, chunks=vol_shape, progress=False)
        return str(path)

    train = [make(f"train_{s}_{seed + i}", s, shape, seed + i) for i, s in enumerate(train_sources)]
    in_source = make(f"test_{train_sources[0]}_{seed + 100}", train_sources[0], test_shape, seed + 100)
    held = make(f"test_{held_out}_{seed + 200}", held_out, test_shape, seed + 200)
    return {"train": train, "in_source": in_source, "held_out": held}


@torch.no_grad()
def predict_volume(model: torch.nn.Module, raw: np.ndarray, device: torch.device) -> np.ndarray:
    """Affinity probabilities (channel, plane, row, column) of a whole (small) raw volume, in float32.

    float32 on purpose: a recurrent state can overflow float16, and the comparison should not depend on it.
    """
    x = torch.from_numpy(normalize_raw(raw))[None, None].to(device)
    probabilities = torch.sigmoid(model(x).float())[0].cpu().numpy()
    if not np.isfinite(probabilities).all():
        raise ValueError("the model predicts NaN/inf affinities (diverged training?)")
    return probabilities


def score_volume(
    model: torch.nn.Module, container: str, device: torch.device, thresholds: list[float], voxel_size: tuple[float, ...]
) -> dict[float, dict[str, float]]:
    """Predict, segment at every threshold, and evaluate against the container's labels."""
    from connectomics.segment import segment_in_memory

    raw = open_volume(f"{container}/raw").data.compute()
    gt = open_volume(f"{container}/labels").data.compute()
    affs = predict_volume(model, raw, device)
    segs = segment_in_memory(
        affs, model.offsets, thresholds=thresholds, sampling=tuple(v / min(voxel_size) for v in voxel_size)
    )
    return {t: evaluate_segmentation(seg, gt) for t, seg in segs.items()}


def train_one(
    name: str,
    spec: dict[str, Any],
    fraction: float,
    volumes: dict[str, Any],
    run_dir: Path,
    *,
    steps: int,
    crop_shape: list[int],
    batch_size: int,
    lr: float,
    seed: int,
    num_workers: int = 0,
    precision: str | None = None,
) -> Path:
    """Train one model on the training volumes; return the path of its final checkpoint, ``last.ckpt``.

    ``run_dir/checkpoints/last.ckpt`` is rewritten at the end of every training epoch (``steps / 4`` steps),
    with the global RNG states (:class:`shared.rng_checkpoint.RNGStateCallback`); a training that finds one
    resumes from it, so a killed protocol loses at most one epoch and, on the CPU, ends with the weights an
    uninterrupted run gets (on a GPU up to the nondeterminism of its kernels).
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from connectomics.train import AffinityDataModule
    from shared.devices import lightning_precision
    from shared.rng_checkpoint import RNGStateCallback

    L.seed_everything(seed, workers=True)
    model = AffinityModel(spec["backbone"], spec.get("backbone_config"), offsets=DEFAULT_OFFSETS, lr=lr)
    data = AffinityDataModule(
        train=volumes["train"],
        val=[volumes["in_source"]],
        crop_shape=crop_shape,
        batch_size=batch_size,
        samples_per_epoch=max(steps // 4, 1) * batch_size,
        val_samples=2,
        data_fraction=fraction,
        seed=seed,
        num_workers=num_workers,
    )
    ckpt_dir = run_dir / "checkpoints"
    # the latest state under one name at each epoch end (an epoch boundary resumes exactly; Lightning's
    # save_last with save_top_k=0 would write last.ckpt only when training ends)
    latest = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="last",
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="auto",
        devices=1,
        precision=precision or lightning_precision(),
        default_root_dir=run_dir,
        logger=CSVLogger(run_dir, name="logs"),
        callbacks=[latest, RNGStateCallback()],
        log_every_n_steps=5,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_progress_bar=sys.stderr.isatty(),
    )
    last = ckpt_dir / "last.ckpt"
    with warnings.catch_warnings():
        if last.exists():  # a resume continues this run's own checkpoints folder on purpose
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        trainer.fit(model, datamodule=data, ckpt_path=str(last) if last.exists() else None, weights_only=True)
    return last


def run_star(
    out_dir: str = "runs/connectomics/star",
    data_dir: str = "data/connectomics/star",
    train_sources: list[str] | None = None,
    held_out: str = "retina",
    volume_shape: list[int] | None = None,
    test_shape: list[int] | None = None,
    models: dict[str, dict[str, Any]] | None = None,
    fractions: list[float] | None = None,
    steps: int = 60,
    crop_shape: list[int] | None = None,
    batch_size: int = 2,
    lr: float = 3e-3,
    thresholds: list[float] | None = None,
    max_param_ratio: float = 1.5,
    seed: int = 0,
    num_workers: int = 0,
    precision: str | None = None,
    overwrite: bool = False,
    wait: bool = False,
) -> pd.DataFrame:
    """Run (or resume) the STAR protocol and write the results table.

    The protocol is a :mod:`shared.jobs` job in ``out_dir`` (bookkeeping in ``out_dir/.job``) whose settings
    are every parameter below except ``out_dir``, ``max_param_ratio``, ``overwrite`` and ``wait``; its units
    are the trainings, one per model x fraction (key ``<model>_f<fraction>_s<seed>``), each done once its
    ``result.json`` is written.

    Parameters
    ----------
    out_dir : where runs and the results table go.
    data_dir : where the simulated volumes go (reused when present).
    train_sources, held_out : simulator sources to train on and the one held out.
    volume_shape, test_shape : training and test volume shapes (plane, row, column).
    models : name -> ``{"backbone": ..., "backbone_config": {...}}``; default gamma-Net vs U-Net.
    fractions : training-data fractions (1.0 and 0.1: the sample-efficiency comparison).
    steps, crop_shape, batch_size, lr : training budget per run (identical for every model).
    thresholds : agglomeration thresholds tried; the best on the in-source test volume is used.
    max_param_ratio : refuse to compare models whose parameter counts differ by more than this factor.
    seed : seeds the volumes and the training.
    num_workers : data-loader worker processes (crops are cut and augmented on the CPU).
    precision : Lightning precision; default ``shared.devices.lightning_precision()`` (16-mixed on CUDA).
    overwrite : ``out_dir`` holds a protocol run with other settings (or files it did not write): start over
        there, discarding its finished units and training checkpoints.
    wait : another run holds ``out_dir``: wait for it instead of refusing.

    Returns
    -------
    DataFrame with one row per model x fraction (also written as CSV, JSON and markdown).

    Raises
    ------
    shared.jobs.JobConfigError : ``out_dir`` holds a run with other settings (each is named) and not ``overwrite``.
    shared.jobs.JobLockedError : another live run holds ``out_dir`` and not ``wait``.
    shared.jobs.JobIncompleteError : some trainings failed (recorded in ``out_dir/.job/failed``; the results of
        the others are written first).
    """
    from connectomics.predict import load_affinity_model
    from shared.devices import default_device
    from shared.jobs import check_output_folder, open_job

    train_sources = train_sources or ["sstem", "sbem", "fib"]
    models = models or DEFAULT_MODELS
    fractions = fractions or [1.0, 0.1]
    thresholds = thresholds or [0.3, 0.5, 0.7, 0.9]
    crop_shape = crop_shape or [8, 48, 48]
    volume_shape, test_shape = volume_shape or [24, 160, 160], test_shape or [24, 160, 160]
    out, data_root = check_output_folder(out_dir, name="out_dir"), Path(data_dir)
    counts = {}
    for name, spec in models.items():
        counts[name] = AffinityModel(spec["backbone"], spec.get("backbone_config")).num_parameters
    ratio = max(counts.values()) / max(min(counts.values()), 1)
    if ratio > max_param_ratio:
        raise ValueError(
            f"parameter budgets differ by {ratio:.2f}x ({counts}); adjust the model configs or raise max_param_ratio"
        )
    settings = {
        "data_dir": str(data_root),
        "train_sources": train_sources,
        "held_out": held_out,
        "volume_shape": volume_shape,
        "test_shape": test_shape,
        "models": models,
        "fractions": fractions,
        "steps": steps,
        "crop_shape": crop_shape,
        "batch_size": batch_size,
        "lr": lr,
        "thresholds": thresholds,
        "seed": seed,
        "num_workers": num_workers,
        "precision": precision,
    }
    units = {f"{name}_f{fraction:g}_s{seed}": (name, fraction) for fraction in fractions for name in models}
    with open_job(out, JOB_COMMAND, settings, overwrite=overwrite, wait=wait) as job:
        volumes = simulate_star_volumes(data_root, train_sources, held_out, volume_shape, test_shape, seed)
        device = default_device()

        def run_unit(key: str) -> None:
            name, fraction = units[key]
            spec = models[name]
            run_dir = job.claim(run_folder(name, fraction))
            started = time.perf_counter()
            ckpt = train_one(
                name,
                spec,
                fraction,
                volumes,
                _training_folder(job, run_dir),
                steps=steps,
                crop_shape=crop_shape,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                num_workers=num_workers,
                precision=precision,
            )
            train_s = time.perf_counter() - started
            model = load_affinity_model(ckpt).to(device)
            voxel = open_volume(f"{volumes['held_out']}/raw").voxel_size
            in_voxel = open_volume(f"{volumes['in_source']}/raw").voxel_size
            in_scores = score_volume(model, volumes["in_source"], device, thresholds, in_voxel)
            best = min(in_scores, key=lambda t: in_scores[t]["arand"])
            held_scores = score_volume(model, volumes["held_out"], device, thresholds, voxel)
            row = {
                "model": name,
                "backbone": spec["backbone"],
                "parameters": counts[name],
                "data_fraction": fraction,
                "threshold": best,
                "steps": steps,
                "in_source_arand": in_scores[best]["arand"],
                "in_source_voi": in_scores[best]["voi"],
                "held_out_arand": held_scores[best]["arand"],
                "held_out_voi_split": held_scores[best]["voi_split"],
                "held_out_voi_merge": held_scores[best]["voi_merge"],
                "held_out_cremi": held_scores[best]["cremi_score"],
                "held_out_best_arand_any_threshold": min(s["arand"] for s in held_scores.values()),
                "train_seconds": round(train_s, 1),
                "device": device.type,
            }
            job.write_json(run_dir / "result.json", row)

        report = job.run_units(list(units), run_unit)
        done = job.done_units()
        table = pd.DataFrame()
        rows = [json.loads((out / run_folder(*units[key]) / "result.json").read_text()) for key in units if key in done]
        if rows:
            job.claim(*(out / f"results.{ext}" for ext in ("csv", "json", "md", "png")))
            table = write_results(out, rows, held_out=held_out, train_sources=train_sources, volumes=volumes)
        report.raise_if_incomplete()
    return table


_FINGERPRINT_FILE = "job_fingerprint"


def run_folder(model: str, fraction: float) -> str:
    """The folder of one training inside ``out_dir``: ``<model>_f<fraction>`` (e.g. ``unet_f0.1``).

    Examples
    --------
    >>> run_folder("unet", 0.1), run_folder("gammanet", 1.0)
    ('unet_f0.1', 'gammanet_f1')
    """
    return f"{model}_f{fraction:g}"


def _training_folder(job: Job, run_dir: Path) -> Path:
    """Prepare ``run_dir`` for :func:`train_one`: its ``checkpoints/last.ckpt`` is resumed only if it was
    written under this job's settings (``run_dir/job_fingerprint`` records them before training starts);
    a checkpoint of other settings (a run restarted with ``--overwrite``) is deleted, so it is never reused."""
    stamp = run_dir / _FINGERPRINT_FILE
    if not stamp.is_file() or stamp.read_text() != job.fingerprint:
        for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
            ckpt.unlink()
        job.write_text(stamp, job.fingerprint)
    return run_dir


def write_results(
    out: Path, rows: list[dict[str, Any]], *, held_out: str, train_sources: list[str], volumes: dict[str, Any]
) -> pd.DataFrame:
    """Write the protocol's ``results.csv``, ``results.json``, ``results.md`` and ``results.png`` into ``out``
    (each atomically; the caller decides whether they may be replaced); return the table (one row per
    model x fraction)."""
    from shared.jobs import atomic_write_json, atomic_write_table, atomic_write_text

    table = pd.DataFrame(rows)
    atomic_write_table(out / "results.csv", table)
    atomic_write_json(
        out / "results.json",
        {"held_out": held_out, "train_sources": train_sources, "volumes": volumes, "rows": rows},
        indent=2,
    )
    atomic_write_text(out / "results.md", results_markdown(table, held_out, train_sources))
    plot_star(table, out / "results.png", held_out=held_out)
    return table


def plot_star(table: pd.DataFrame, path: str | Path, *, held_out: str = "held-out") -> Path:
    """Held-out ARAND, VOI (split + merge) and CREMI score per model against the training-data fraction.

    Parameters
    ----------
    table : one row per model x fraction (the columns of ``results.csv``: ``model``, ``data_fraction``,
        ``held_out_arand``, ``held_out_voi_split``, ``held_out_voi_merge``, ``held_out_cremi``,
        ``in_source_arand``).
    path : the PNG written (atomically).
    held_out : name of the held-out source, for the title.

    Examples
    --------
    >>> import tempfile
    >>> rows = [{"model": m, "data_fraction": f, "in_source_arand": 0.2, "held_out_arand": 0.3 + f / 10,
    ...          "held_out_voi_split": 1.0, "held_out_voi_merge": 0.5, "held_out_cremi": 0.6}
    ...         for m in ("gammanet", "unet") for f in (0.1, 1.0)]
    >>> plot_star(pd.DataFrame(rows), Path(tempfile.mkdtemp()) / "results.png").suffix
    '.png'
    """
    from shared.figures import pyplot, save_figure

    table = table.sort_values("data_fraction")
    fig, axes = pyplot().subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    panels = [
        ("held_out_arand", "adapted Rand error"),
        (None, "VOI split + merge (bits)"),
        ("held_out_cremi", "CREMI score"),
    ]
    for i, (name, rows) in enumerate(table.groupby("model", sort=False)):
        color = f"C{i}"
        x = rows["data_fraction"]
        for ax, (column, label) in zip(axes, panels, strict=True):
            y = rows["held_out_voi_split"] + rows["held_out_voi_merge"] if column is None else rows[column]
            ax.plot(x, y, "o-", color=color, label=f"{name}, held out")
            ax.set(xlabel="training-data fraction", ylabel=label, xscale="log")
        axes[0].plot(x, rows["in_source_arand"], "s--", color=color, alpha=0.6, label=f"{name}, in source")
    fractions = sorted(table["data_fraction"].unique())
    for ax in axes:
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.minorticks_off()
    axes[0].legend(fontsize=7)
    fig.suptitle(f"STAR: scores on the held-out source ({held_out}); lower is better", fontsize=10)
    return save_figure(fig, path, software="connectomics star")


def results_markdown(table: pd.DataFrame, held_out: str, train_sources: list[str]) -> str:
    """The results as a markdown table with a one-line protocol summary."""
    cols = [
        "model",
        "parameters",
        "data_fraction",
        "threshold",
        "in_source_arand",
        "held_out_arand",
        "held_out_voi_split",
        "held_out_voi_merge",
        "held_out_cremi",
        "train_seconds",
    ]
    lines = [
        f"STAR: trained on {', '.join(train_sources)}; held out: {held_out}. Lower is better.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for _, r in table.iterrows():
        cells = [
            f"{r[c]:.4f}"
            if isinstance(r[c], float)
            and not math.isnan(r[c])
            and c not in ("data_fraction", "threshold", "train_seconds")
            else str(r[c])
            for c in cols
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cli(argv: list[str]) -> int:
    """``connectomics star --config configs/connectomics/star.yaml``."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from shared.cli import VERBOSE_FLAG, add_output_arguments
    from shared.figures import figure_line

    parser = ArgumentParser(prog="connectomics star", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with any of the options below")
    parser.add_function_arguments(run_star, skip={"overwrite", "wait"})
    add_output_arguments(parser)
    parser.add_argument(VERBOSE_FLAG, action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    kwargs = {k: v for k, v in vars(args).items() if k not in ("config", VERBOSE_FLAG.lstrip("-"))}
    table = run_star(**kwargs)  # user errors become one line and exit code 2 in shared.cli.run_guarded
    print(results_markdown(table, kwargs["held_out"], kwargs["train_sources"] or ["sstem", "sbem", "fib"]))
    print(f"wrote {Path(kwargs['out_dir']) / 'results.csv'}, results.json, results.md")
    print(figure_line(Path(kwargs["out_dir"]) / "results.png", "held-out scores per model and data fraction"))
    return 0
