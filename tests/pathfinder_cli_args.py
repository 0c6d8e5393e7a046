"""The tiny Pathfinder run the CLI tests share (one ResNet epoch on 16 images of 48 px)."""

from __future__ import annotations

from pathlib import Path


def tiny_fit_args(tmp_path: Path) -> list[str]:
    """LightningCLI overrides for a seconds-long ``fit``: run folder and data under ``tmp_path``."""
    return [
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger",
        "false",
        "--data.root",
        str(tmp_path / "data"),
        "--data.image_size",
        "48",
        "--data.geometry_scale",
        "0.3",
        "--data.n_train",
        "16",
        "--data.n_val",
        "8",
        "--data.n_test",
        "8",
        "--data.batch_size",
        "4",
        "--model.backbone_config",
        '{"widths": [8, 16], "stem_channels": 8}',
    ]
