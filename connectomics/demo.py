"""The connectomics part of ``make demo``: simulate, train briefly, predict, segment and score a held-out source.

Within about 90 s on 2 CPU cores: two small simulated sources (train on ``sstem``, test on ``retina``), a
small 3D U-Net trained for a few dozen steps, blockwise prediction (:mod:`connectomics.predict`), blockwise
segmentation (:mod:`connectomics.segment`) and the metrics table (:mod:`connectomics.metrics`), plus slices
of raw, predicted boundaries, segmentation and ground truth.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from shared.report import Report

SHAPE = (8, 96, 96)
STEPS = 40


def run_demo(out_dir: Path, report: Report) -> None:
    """Run the demo in ``out_dir`` and add a section with the metrics table and figures to ``report``."""
    import lightning as L
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from connectomics.io import open_volume
    from connectomics.metrics import evaluate_segmentation
    from connectomics.predict import predict_blockwise
    from connectomics.segment import segment_blockwise, threshold_name
    from connectomics.simulate import SOURCES, simulate_to_zarr
    from connectomics.train import AffinityDataModule, AffinityModel

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    train_path, test_path = out_dir / "train_sstem.zarr", out_dir / "test_retina.zarr"
    for path, source, seed in ((train_path, "sstem", 0), (test_path, "retina", 1)):
        if not path.exists():
            simulate_to_zarr(path, source, SHAPE, seed=seed, chunks=SHAPE, progress=False)
    timings["simulate"] = time.perf_counter() - start

    start = time.perf_counter()
    L.seed_everything(0, verbose=False)
    model = AffinityModel(
        "unet3d", {"features": [8, 16], "downsample": [[1, 2, 2]], "kernel_size": [1, 3, 3]}, lr=0.005
    )
    data = AffinityDataModule(
        train=[str(train_path)],
        val=[str(train_path)],
        crop_shape=[4, 48, 48],
        batch_size=2,
        samples_per_epoch=2 * STEPS,
        val_samples=1,
    )
    trainer = L.Trainer(
        max_steps=STEPS,
        default_root_dir=out_dir / "run",
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        accelerator="auto",
        devices=1,
    )
    trainer.fit(model, datamodule=data)
    ckpt = out_dir / "model.ckpt"
    trainer.save_checkpoint(ckpt, weights_only=False)  # full checkpoint; loading is always weights-only
    timings["train"] = time.perf_counter() - start

    start = time.perf_counter()
    pred = f"{out_dir}/pred.zarr/affs"
    block = [SHAPE[0], SHAPE[1] // 2, SHAPE[2] // 2]
    if not Path(pred).exists():
        predict_blockwise(ckpt, f"{test_path}/raw", pred, block_shape=block, context=[0, 8, 8], progress=False)
    timings["predict"] = time.perf_counter() - start
    start = time.perf_counter()
    thresholds = [0.3, 0.5, 0.7]
    if not (out_dir / "seg.zarr").exists():
        segment_blockwise(
            pred, f"{out_dir}/seg.zarr", thresholds=thresholds, block_shape=block, context=[0, 8, 8], progress=False
        )
    timings["segment"] = time.perf_counter() - start

    gt = open_volume(f"{test_path}/labels").data.compute()
    rows, segs = [], {}
    for t in thresholds:
        segs[t] = open_volume(f"{out_dir}/seg.zarr/{threshold_name(t)}").data.compute()
        metrics = evaluate_segmentation(segs[t], gt)
        rows.append(
            {
                "threshold": t,
                **{
                    k: metrics[k]
                    for k in ("arand", "precision", "recall", "voi_split", "voi_merge", "cremi_score", "n_segments")
                },
                "gt_objects": metrics["n_gt"],
            }
        )
    table = pd.DataFrame(rows)
    best = float(table.sort_values("arand").iloc[0]["threshold"])

    raw = open_volume(f"{test_path}/raw").data.compute()
    affs = open_volume(pred).data.compute()
    train_raw = open_volume(f"{train_path}/raw").data.compute()
    z = SHAPE[0] // 2
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.4))
    panels = [
        (train_raw[z], "gray", "training source (sstem)"),
        (raw[z], "gray", "held-out source (retina)"),
        (1 - affs[:3, z].mean(0), "magma", "predicted boundaries"),
        (np.ma.masked_equal(segs[best][z] % 20, 0), "tab20", f"segmentation (threshold {best})"),
        (np.ma.masked_equal(gt[z] % 20, 0), "tab20", "ground truth"),
    ]
    for ax, (image, cmap, title) in zip(axes, panels):
        if cmap == "tab20":
            ax.imshow(raw[z], cmap="gray")
            ax.imshow(image, cmap=cmap, alpha=0.5, interpolation="nearest")
        else:
            ax.imshow(image, cmap=cmap)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    png = out_dir / "connectomics_slices.png"
    fig.savefig(png, dpi=80)
    plt.close(fig)

    section = report.section(
        "Connectomics: STAR neuron segmentation",
        f"A {model.num_parameters:,}-parameter 3D U-Net trained for {STEPS} steps on one simulated EM source "
        f"(sstem, {SOURCES['sstem'].voxel_size} nm voxels) segments a held-out source (retina, "
        f"{SOURCES['retina'].voxel_size} nm) of {SHAPE} voxels. The simulated tissue has thin axons with "
        f"boutons, spiny dendrites, glia and extracellular space (connectomics/morphology.py), so many "
        f"objects are only a few voxels across. Blockwise prediction, seeded watershed + "
        f"mean-affinity agglomeration stitched across blocks, then SNEMI3D adapted Rand error, VOI (bits) and "
        f"CREMI score against the ground truth (lower is better). This is a smoke-scale run of the pipeline; "
        f"the gamma-Net vs U-Net STAR comparison is `connectomics star` (BENCHMARKS.md)."
        f"\n\nStage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()),
    )
    section.add_table("Held-out source, one row per agglomeration threshold", table)
    section.add_figure(
        "Slices: training source, held-out raw, predicted boundaries, segmentation and ground truth overlays", png
    )
