"""The Pathfinder LightningDataModule: generates the zarr splits once, then serves them with random flips."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from shared.data.pathfinder import PathfinderConfig, load_pathfinder_zarr, write_pathfinder_zarr

SPLITS = ("train", "val", "test")


class PathfinderDataset(Dataset):
    """In-memory Pathfinder split returning ``(image (1, rows, columns) float32, label int64)`` pairs.

    Parameters
    ----------
    images : ndarray of shape (n, 1, rows, columns), float32.
    labels : ndarray of shape (n,), integer.
    augment : random horizontal and vertical flips (label-preserving), as in C-RBP's training.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, augment: bool = False) -> None:
        if images.ndim != 4 or images.shape[1] != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images must be (n, 1, rows, columns) matching labels (n,), got {images.shape} and {labels.shape}"
            )
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.augment = augment

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        if self.augment:
            flips = [axis for axis, flip in zip((1, 2), torch.rand(2) < 0.5) if flip]
            if flips:
                x = torch.flip(x, flips)
        return x, self.labels[i]


def validate_root(root: str | Path) -> Path:
    """Check a dataset root from a config: a directory or a path that can become one (not a file)."""
    text = str(root)
    if not text.strip() or "\x00" in text:
        raise ValueError(f"Pathfinder root must be a non-empty path, got {text!r}")
    path = Path(text).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"Pathfinder root must be a directory, but {path} is a file")
    parent = next((p for p in (path, *path.parents) if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise ValueError(f"Pathfinder root {path} has no existing parent directory")
    return path


class PathfinderDataModule(L.LightningDataModule):
    """Pathfinder train/val/test splits stored as zarr groups ``<root>/{train,val,test}.zarr``.

    ``prepare_data`` generates any missing split (resuming an interrupted one; a split generated with a
    different configuration is refused unless ``overwrite``); ``setup`` loads the splits into memory.

    Parameters
    ----------
    root : directory holding the zarr splits.
    image_size : square image side in pixels.
    contour_length : paddles per target snake (6, 9, 14 published).
    geometry_scale : pixels per published 300x300-canvas unit; ``None`` = image_size / 300 (the published
        stimulus resized). Small images need a larger scale to keep paddles visible.
    continuity : path smoothness (1.8 published).
    distractor_paddles : distractor paddles per published usable area (30 published).
    padding : empty border in published units (22); small fields of view fit their snakes more easily
        with a smaller one.
    n_train, n_val, n_test : images per split (each split exactly balanced).
    seed : split ``k`` uses seed ``(seed, k)``; the data do not depend on the trainer's seed.
    batch_size, num_workers : DataLoader settings.
    augment : random flips on the training split.
    overwrite : regenerate splits whose stored configuration differs.
    generation_workers : processes generating the data in ``prepare_data``.
    """

    def __init__(
        self,
        root: str = "data/pathfinder",
        image_size: int = 64,
        contour_length: int = 6,
        geometry_scale: float | None = None,
        continuity: float = 1.8,
        distractor_paddles: int = 30,
        padding: float = 22.0,
        n_train: int = 2000,
        n_val: int = 500,
        n_test: int = 500,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        augment: bool = True,
        overwrite: bool = False,
        generation_workers: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = validate_root(root)
        for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            if n < 2:
                raise ValueError(f"{name} must be >= 2 (one image per label), got {n}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.config = PathfinderConfig(
            image_size=(image_size, image_size),
            contour_length=contour_length,
            geometry_scale=geometry_scale,
            continuity=continuity,
            distractor_paddles=distractor_paddles,
            padding=padding,
        )
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.datasets: dict[str, PathfinderDataset] = {}

    def split_path(self, split: str) -> Path:
        return self.root / f"{split}.zarr"

    def prepare_data(self) -> None:
        for k, split in enumerate(SPLITS):
            write_pathfinder_zarr(
                self.split_path(split),
                self.sizes[split],
                config=self.config,
                seed=(self.hparams.seed, k),
                overwrite=self.hparams.overwrite,
                num_workers=self.hparams.generation_workers,
            )

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, SPLITS) if stage else SPLITS:
            if split in self.datasets:
                continue
            data = load_pathfinder_zarr(self.split_path(split), expected_config=self.config)
            if len(data) != self.sizes[split]:
                raise ValueError(
                    f"{self.split_path(split)} holds {len(data)} images, config asks "
                    f"{self.sizes[split]}; pass overwrite=True to regenerate"
                )
            self.datasets[split] = PathfinderDataset(
                data.images, data.labels, augment=self.hparams.augment and split == "train"
            )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"the {split} split is not set up; call setup() first")
        workers = self.hparams.num_workers
        return DataLoader(
            self.datasets[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
