"""GPU science in one command: Pathfinder-14 (hGRU vs a ResNet-18-size CNN), STAR (gamma-Net vs U-Net) and
tracking (InT vs a 3D ResNet on PathTracker; CV-RNN vs InT vs a real-valued control on FeatureTracker).

Run through ``scripts/gpu_science.sh`` (same options). Three experiments, every arm time-boxed, one table:

1. **Pathfinder-14 at 150x150 px** (the published stimulus resized, 14-paddle contours): generate the data
   (all CPU cores), train the hGRU (25 channels, 15x15 horizontal kernels, T 8, the demo's front end and
   readout; target: test accuracy >= 0.85 with <= 0.5M parameters) and a ResNet-18-size CNN (stem 64,
   widths 64/128/256/512, 2 blocks per stage, ~11M parameters) for the same wall-clock budget each;
   score both on the test split.
2. **STAR** (``connectomics.star`` protocol, ``configs/connectomics/star_gpu.yaml`` models): simulate the
   three training sources, an in-source and a held-out (retina) test volume once, then train gamma-Net 3D
   and U-Net 3D for the same wall-clock budget with ``--seeds`` training seeds each (the volumes stay
   fixed); pick the agglomeration threshold on the in-source volume and report the held-out adapted Rand
   error (ARAND, lower is better) as mean and s.d. over seeds.
3. **Tracking** (issue 17, ``shared.tracking``): PathTracker at the published size (32x32 px, 64 frames, 14
   distractors): InT (32 channels, 7x7 kernels, as published) and a 3D ResNet with matched parameters, tested
   on 14 and 25 distractors and 128 frames; FeatureTracker (32 frames, 10 distractors) trained on
   ``idshapes_idcolors``: CV-RNN, InT and the CV-RNN's real-valued control, tested in and out of distribution.
   Metric: test balanced accuracy per condition (one row per model and condition). Runs last, so the guard
   skips it first when the earlier arms ran long.

The device is chosen automatically: CUDA with bfloat16 mixed precision when the GPU supports it
(``16-mixed`` otherwise), else the CPU in float32. Budgets (seconds per arm) are arguments; the defaults
fit about 12 minutes on one H100/H200 (9 without tracking: ``--skip tracking``). ``--max-minutes`` is a
hard guard: an arm that would start after it is skipped and reported as skipped. ``--toy`` shrinks everything
to a CPU-sized smoke run (~2-3 min on 2 cores): tiny data, the CPU-scale models, a few seconds per arm.

    scripts/gpu_science.sh                                   # GPU, ~12 min
    scripts/gpu_science.sh --toy --out /tmp/gpu_science_toy  # CPU smoke run

Writes ``results.json`` and ``results.md`` under ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

PF_TARGET_ACC, PF_MAX_PARAMS = 0.85, 500_000
RESNET18_CONFIG = {"stem_channels": 64, "widths": [64, 128, 256, 512], "blocks_per_stage": 2}
# tracking models at the published InT width (32 channels, 7x7 kernels) and a 3D ResNet of about its size;
# the toy preset shrinks the widths. The real-valued control is the CV-RNN with every phase at 0.
TRACKING_MODELS: dict[str, dict[str, Any]] = {
    "InT": {"backbone": "int", "backbone_config": {"channels": 32, "kernel_size": 7}},
    "R3D (matched)": {
        "backbone": "r3d_small",
        "backbone_config": {"stem_channels": 16, "widths": [24, 48], "blocks_per_stage": 1},
    },
    "CV-RNN": {"backbone": "cvrnn", "backbone_config": {"channels": 32, "kernel_size": 7}},
    "real-valued control": {
        "backbone": "cvrnn",
        "backbone_config": {"channels": 32, "kernel_size": 7, "complex_valued": False},
        "synchrony_weight": 0.0,
    },
}
# the toy preset uses the CPU-scale widths of benchmarks/tracking_evidence.py (InT 3.8k, R3D 4.3k parameters)
TRACKING_TOY_WIDTHS = {
    "InT": {"channels": 8, "kernel_size": 5},
    "CV-RNN": {"channels": 4, "kernel_size": 3},
    "real-valued control": {"channels": 4, "kernel_size": 3},
    "R3D (matched)": {"stem_channels": 4, "widths": [4, 6]},
}
# GPU scale and the CPU smoke scale; any option given on the command line wins
PRESETS: dict[str, dict[str, Any]] = {
    "gpu": {
        "pf_image_size": 150,
        "pf_contour_length": 14,
        "pf_geometry_scale": None,
        "pf_padding": 22.0,
        "pf_distractor_paddles": 30,
        "pf_n_train": 20000,
        "pf_n_test": 2000,
        "pf_batch_size": 64,
        "pf_seconds": 150.0,
        "pf_hgru_channels": 25,
        "pf_hgru_kernel": 15,
        "pf_hgru_timesteps": 8,
        "pf_resnet": RESNET18_CONFIG,
        "pf_resnet_name": "ResNet-18-size CNN",
        "star_config": "configs/connectomics/star_gpu.yaml",
        "star_volume": [24, 192, 192],
        "star_seconds": 35.0,
        "tr_frames": {"pathtracker": 64, "featuretracker": 32},
        "tr_distractors": {"pathtracker": 14, "featuretracker": 10},
        "tr_tests": {
            "pathtracker": ["distractors=14", "distractors=25", "length=128"],
            "featuretracker": ["idshapes_idcolors", "idshapes_oodcolors", "oodshapes_idcolors", "oodshapes_oodcolors"],
        },
        "tr_n_train": 10000,
        "tr_n_test": 500,
        "tr_batch_size": 64,
        "tr_seconds": 35.0,
        "tr_toy_widths": False,
        "max_minutes": 12.5,
    },
    "toy": {
        "pf_image_size": 32,
        "pf_contour_length": 6,
        "pf_geometry_scale": 0.3,
        "pf_padding": 6.0,
        "pf_distractor_paddles": 15,
        "pf_n_train": 200,
        "pf_n_test": 100,
        "pf_batch_size": 16,
        "pf_seconds": 5.0,
        "pf_hgru_channels": 4,
        "pf_hgru_kernel": 5,
        "pf_hgru_timesteps": 3,
        "pf_resnet": {"stem_channels": 8, "widths": [8, 16], "blocks_per_stage": 1},
        "pf_resnet_name": "ResNet (toy size)",
        "star_config": "configs/connectomics/star.yaml",
        "star_volume": [12, 64, 64],
        "star_crop": [8, 32, 32],
        "star_seconds": 4.0,
        "tr_frames": {"pathtracker": 8, "featuretracker": 8},
        "tr_distractors": {"pathtracker": 2, "featuretracker": 2},
        "tr_tests": {
            "pathtracker": ["distractors=2", "distractors=5"],
            "featuretracker": ["idshapes_idcolors", "oodshapes_oodcolors"],
        },
        "tr_n_train": 16,
        "tr_n_test": 8,
        "tr_batch_size": 8,
        "tr_seconds": 3.0,
        "tr_toy_widths": True,
        "max_minutes": 15.0,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--toy", action="store_true", help="CPU-sized smoke run (tiny data and models)")
    p.add_argument("--out", type=Path, default=Path("runs/gpu_science"), help="output folder")
    p.add_argument("--seeds", type=int, default=3, help="STAR training seeds per model")
    p.add_argument("--pf-seconds", type=float, default=None, help="training budget per Pathfinder arm")
    p.add_argument("--star-seconds", type=float, default=None, help="training budget per STAR arm")
    p.add_argument("--tr-seconds", type=float, default=None, help="training budget per tracking arm")
    p.add_argument("--pf-n-train", type=int, default=None, help="Pathfinder training images")
    p.add_argument(
        "--max-minutes", type=float, default=None, help="skip any arm that would start after this many minutes"
    )
    p.add_argument(
        "--skip", nargs="+", default=[], choices=["pathfinder", "star", "tracking"], help="experiments to skip"
    )
    p.add_argument("--workers", type=int, default=None, help="CPU processes for data (default: all cores)")
    args = p.parse_args(argv)
    preset = dict(PRESETS["toy" if args.toy else "gpu"])
    for name in ("pf_seconds", "star_seconds", "tr_seconds", "pf_n_train", "max_minutes"):
        if getattr(args, name) is not None:
            preset[name] = getattr(args, name)
    args.preset = preset
    if (
        args.seeds < 1
        or preset["pf_seconds"] <= 0
        or preset["star_seconds"] <= 0
        or preset["tr_seconds"] <= 0
        or preset["pf_n_train"] < 2
    ):
        p.error("--seeds must be >= 1, --pf-seconds, --star-seconds and --tr-seconds > 0, --pf-n-train >= 2")
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out {args.out} is a file, not a folder")
    if args.out.exists() and any(args.out.iterdir()):
        p.error(f"--out {args.out} is not empty; give a new folder (runs are not resumed)")
    args.workers = args.workers or max(1, (os.cpu_count() or 2) - 1)
    return args


def pick_precision() -> tuple[str, str]:
    """``(device description, Lightning precision)``: bf16/16-mixed AMP on CUDA, float32 on the CPU."""
    if torch.cuda.is_available():
        precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return torch.cuda.get_device_name(0), precision
    return f"CPU ({torch.get_num_threads()} threads)", "32-true"


class Clock:
    """The run's wall clock and its guard: arms that would start after ``limit_s`` are skipped."""

    def __init__(self, limit_s: float) -> None:
        self.start, self.limit_s = time.perf_counter(), limit_s

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, budget_s: float) -> bool:
        return self.elapsed + budget_s <= self.limit_s


def fit_timeboxed(
    model: Any, datamodule: Any, *, seconds: float, precision: str, root: Path, max_steps: int = -1
) -> dict[str, Any]:
    """Fit a LightningModule for at most ``seconds`` of training (Lightning ``max_time``), no validation."""
    from shared.stdio import quiet_lightning_fit

    trainer = L.Trainer(
        max_time={"seconds": max(seconds, 1.0)},
        max_steps=max_steps,
        max_epochs=-1,
        accelerator="auto",
        devices=1,
        precision=precision,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
    )
    start = time.perf_counter()
    with quiet_lightning_fit():  # no validation on purpose: the test set is scored after training
        trainer.fit(model, datamodule=datamodule)
    return {"steps": int(trainer.global_step), "train_seconds": round(time.perf_counter() - start, 1)}


def pathfinder_specs(preset: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """hGRU (the demo's front end and readout at the published sizes) and the ResNet-18-size CNN."""
    from shared.pathfinder.demo import DEMO_MODEL

    hgru = json.loads(json.dumps(DEMO_MODEL))
    # a time box has no known step count for a one-cycle schedule: constant lr, the published Adam 1e-3
    hgru.update(name="hGRU (1 layer)", lr=1e-3, lr_schedule="constant")
    hgru["backbone_config"].update(
        hidden_channels=preset["pf_hgru_channels"],
        kernel_size=preset["pf_hgru_kernel"],
        timesteps=preset["pf_hgru_timesteps"],
        frontend_kernel=7,
        norm_scale=0.1,
    )  # published sizes, published norm init (the demo's 0.5 is CPU-scale)
    resnet = {
        "name": preset["pf_resnet_name"],
        "backbone": "resnet_small",
        "backbone_config": preset["pf_resnet"],
        "readout": "pool_mlp",
        "lr": 1e-3,
    }
    return {"hGRU": hgru, "CNN": resnet}


def run_pathfinder(args: argparse.Namespace, precision: str, clock: Clock) -> list[dict[str, Any]]:
    """Pathfinder arm: generate data, train hGRU and CNN for the same budget, test both."""
    from shared.pathfinder.datamodule import PathfinderDataModule
    from shared.pathfinder.experiment import build_model
    from shared.pathfinder.module import count_parameters

    pre = args.preset
    dm = PathfinderDataModule(
        root=str(args.out / "pathfinder_data"),
        image_size=pre["pf_image_size"],
        contour_length=pre["pf_contour_length"],
        geometry_scale=pre["pf_geometry_scale"],
        padding=pre["pf_padding"],
        distractor_paddles=pre["pf_distractor_paddles"],
        n_train=pre["pf_n_train"],
        n_val=2,
        n_test=pre["pf_n_test"],
        batch_size=pre["pf_batch_size"],
        num_workers=min(args.workers, 8),
        generation_workers=args.workers,
    )
    start = time.perf_counter()
    dm.prepare_data()
    generation_s = time.perf_counter() - start
    print(
        f"[{clock.elapsed:6.0f} s] Pathfinder-{pre['pf_contour_length']} {pre['pf_image_size']} px: "
        f"{pre['pf_n_train']} + {pre['pf_n_test']} images generated in {generation_s:.0f} s",
        flush=True,
    )
    rows = []
    for name, spec in pathfinder_specs(pre).items():
        row = {
            "experiment": f"Pathfinder-{pre['pf_contour_length']} {pre['pf_image_size']} px",
            "model": spec["name"],
            "budget_s": pre["pf_seconds"],
            "metric": "test accuracy",
        }
        if not clock.allows(pre["pf_seconds"] * 1.3):
            rows.append({**row, "status": "skipped (time)"})
            continue
        L.seed_everything(0, workers=True, verbose=False)
        model = build_model(spec)
        row["parameters"] = count_parameters(model)
        row.update(
            fit_timeboxed(model, dm, seconds=pre["pf_seconds"], precision=precision, root=args.out / f"pf_{name}")
        )
        tester = L.Trainer(
            accelerator="auto",
            devices=1,
            precision=precision,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        acc = float(tester.test(model, datamodule=dm, verbose=False)[0]["test/acc"])
        row.update(values=[acc], mean=acc, sd=0.0, status="done")
        if name == "hGRU":
            met = acc >= PF_TARGET_ACC and row["parameters"] <= PF_MAX_PARAMS
            row["target"] = (
                f">= {PF_TARGET_ACC} with <= {PF_MAX_PARAMS / 1e6:.1f}M params: {'met' if met else 'not met'}"
            )
        rows.append(row)
        print(
            f"[{clock.elapsed:6.0f} s] {spec['name']}: {row['parameters']:,} params, {row['steps']} steps, "
            f"test acc {acc:.3f}",
            flush=True,
        )
    return rows


def run_star_seeds(args: argparse.Namespace, precision: str, clock: Clock) -> list[dict[str, Any]]:
    """STAR arm: fixed simulated volumes, gamma-Net and U-Net x seeds, each time-boxed; held-out ARAND."""
    from connectomics.io import open_volume
    from connectomics.star import score_volume, simulate_star_volumes
    from connectomics.train import AffinityDataModule, AffinityModel
    from shared.devices import default_device

    pre = args.preset
    cfg = yaml.safe_load((ROOT / pre["star_config"]).read_text())
    crop = pre.get("star_crop", cfg["crop_shape"])
    start = time.perf_counter()
    volumes = simulate_star_volumes(
        args.out / "star_data", cfg["train_sources"], cfg["held_out"], pre["star_volume"], pre["star_volume"], seed=0
    )
    print(
        f"[{clock.elapsed:6.0f} s] STAR volumes {pre['star_volume']} simulated in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    device = default_device()
    voxel = {k: open_volume(f"{volumes[k]}/raw").voxel_size for k in ("in_source", "held_out")}
    rows = []
    for name, spec in cfg["models"].items():
        label = {"gammanet": "gamma-Net 3D", "unet": "U-Net 3D"}.get(name, name)
        row = {
            "experiment": f"STAR held-out {cfg['held_out']}",
            "model": label,
            "budget_s": pre["star_seconds"],
            "metric": "held-out ARAND (lower is better)",
            "values": [],
            "steps_per_seed": [],
            "thresholds": [],
        }
        for seed in range(args.seeds):
            if not clock.allows(pre["star_seconds"] * 1.5):
                row["status"] = f"skipped (time) after {len(row['values'])} seed(s)"
                break
            L.seed_everything(seed, workers=True, verbose=False)
            model = AffinityModel(spec["backbone"], spec.get("backbone_config"), lr=cfg["lr"])
            row["parameters"] = model.num_parameters
            data = AffinityDataModule(
                train=volumes["train"],
                val=[volumes["in_source"]],
                crop_shape=crop,
                batch_size=cfg["batch_size"],
                samples_per_epoch=50 * cfg["batch_size"],
                val_samples=2,
                seed=seed,
                num_workers=min(args.workers, 6),
            )
            fit = fit_timeboxed(
                model, data, seconds=pre["star_seconds"], precision=precision, root=args.out / f"star_{name}_s{seed}"
            )
            model = model.to(device).eval()
            in_scores = score_volume(model, volumes["in_source"], device, cfg["thresholds"], voxel["in_source"])
            best = min(in_scores, key=lambda t: in_scores[t]["arand"])
            held = score_volume(model, volumes["held_out"], device, [best], voxel["held_out"])[best]
            row["values"].append(float(held["arand"]))
            row["steps_per_seed"].append(fit["steps"])
            row["thresholds"].append(best)
            print(
                f"[{clock.elapsed:6.0f} s] {label} seed {seed}: {fit['steps']} steps, threshold {best}, "
                f"held-out ARAND {held['arand']:.3f}",
                flush=True,
            )
        else:
            row["status"] = "done"
        if row["values"]:
            row["mean"] = float(np.mean(row["values"]))
            row["sd"] = float(np.std(row["values"], ddof=1)) if len(row["values"]) > 1 else 0.0
            row["steps"] = int(np.mean(row["steps_per_seed"]))
        rows.append(row)
    return rows


def run_tracking(args: argparse.Namespace, precision: str, clock: Clock) -> list[dict[str, Any]]:
    """Tracking arm: PathTracker (InT vs matched R3D) and FeatureTracker (CV-RNN, InT, real-valued control),
    each model time-boxed and tested on every test condition (one row per model and condition)."""
    from shared.tracking.datamodule import TrackingDataModule
    from shared.tracking.module import TrackingClassifier
    from shared.training import count_parameters

    pre = args.preset
    claims = {
        "pathtracker": ("PathTracker", ["InT", "R3D (matched)"]),
        "featuretracker": ("FeatureTracker", ["CV-RNN", "InT", "real-valued control"]),
    }
    rows = []
    for task, (title, names) in claims.items():
        dm = TrackingDataModule(
            task=task,
            root=str(args.out / f"tracking_{task}"),
            frames=pre["tr_frames"][task],
            num_distractors=pre["tr_distractors"][task],
            n_train=pre["tr_n_train"],
            n_val=2,
            n_test=pre["tr_n_test"],
            batch_size=pre["tr_batch_size"],
            num_workers=min(args.workers, 8),
            generation_workers=args.workers,
            test_conditions=pre["tr_tests"][task],
        )
        start = time.perf_counter()
        dm.prepare_data()
        print(
            f"[{clock.elapsed:6.0f} s] {title}: {pre['tr_n_train']} + {pre['tr_n_test']} x "
            f"{len(pre['tr_tests'][task])} videos generated in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        for name in names:
            spec = TRACKING_MODELS[name]
            base = {"model": name, "budget_s": pre["tr_seconds"], "metric": "test balanced accuracy"}
            if not clock.allows(pre["tr_seconds"] * 1.5):
                rows.append({**base, "experiment": f"{title} (all conditions)", "status": "skipped (time)"})
                continue
            config = {**spec["backbone_config"], **(TRACKING_TOY_WIDTHS[name] if pre["tr_toy_widths"] else {})}
            L.seed_everything(0, workers=True, verbose=False)
            model = TrackingClassifier(spec["backbone"], config, synchrony_weight=spec.get("synchrony_weight", 1.0))
            fit = fit_timeboxed(
                model,
                dm,
                seconds=pre["tr_seconds"],
                precision=precision,
                root=args.out / f"tracking_{task}_{name.split()[0]}",
            )
            tester = L.Trainer(
                accelerator="auto",
                devices=1,
                precision=precision,
                logger=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            tested = tester.test(model, datamodule=dm, verbose=False)[0]
            for condition in dm.condition_names:
                key = f"test/balanced_acc/{condition}"
                if key in tested:
                    acc = float(tested[key])
                    rows.append(
                        {
                            **base,
                            **fit,
                            "experiment": f"{title} {condition}",
                            "parameters": count_parameters(model),
                            "values": [acc],
                            "mean": acc,
                            "sd": 0.0,
                            "status": "done",
                        }
                    )
            print(
                f"[{clock.elapsed:6.0f} s] {title} {name}: {fit['steps']} steps, "
                + ", ".join(
                    f"{r['experiment'].split(' ', 1)[1]} {r['mean']:.3f}"
                    for r in rows
                    if r["model"] == name and r["experiment"].startswith(title) and r.get("values")
                ),
                flush=True,
            )
    return rows


def table(rows: list[dict[str, Any]], header: str) -> str:
    """The results as one markdown table."""
    lines = [
        header,
        "",
        "| experiment | model | parameters | budget s/arm | steps | metric | mean ± s.d. (n) | target / status |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        value = f"{r['mean']:.3f} ± {r['sd']:.3f} ({len(r['values'])})" if r.get("values") else "-"
        note = "; ".join(x for x in (r.get("target"), None if r.get("status") == "done" else r.get("status")) if x)
        lines.append(
            f"| {r['experiment']} | {r['model']} | {r.get('parameters', 0):,} | {r['budget_s']:g} | "
            f"{r.get('steps', '-')} | {r['metric']} | {value} | {note} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    device, precision = pick_precision()
    args.out.mkdir(parents=True, exist_ok=True)
    clock = Clock(60.0 * args.preset["max_minutes"])
    print(
        f"gpu_science: {device}, precision {precision}, preset {'toy' if args.toy else 'gpu'}, "
        f"guard {args.preset['max_minutes']:g} min",
        flush=True,
    )
    rows = []
    if "pathfinder" not in args.skip:
        rows += run_pathfinder(args, precision, clock)
    if "star" not in args.skip:
        rows += run_star_seeds(args, precision, clock)
    if "tracking" not in args.skip:
        rows += run_tracking(args, precision, clock)
    header = (
        f"GPU science: {device}, precision {precision}, {clock.elapsed / 60:.1f} min wall "
        f"({'toy CPU preset' if args.toy else 'GPU preset'})"
    )
    text = table(rows, header)
    (args.out / "results.md").write_text(text)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "device": device,
                "precision": precision,
                "preset": args.preset,
                "seeds": args.seeds,
                "wall_seconds": round(clock.elapsed, 1),
                "rows": rows,
            },
            indent=2,
            default=str,
        )
    )
    print("\n" + text)
    print(f"wrote {args.out / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
