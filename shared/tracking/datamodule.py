"""The tracking LightningDataModule: generates PathTracker or FeatureTracker zarr splits once, then serves them.

Splits live in ``<root>/<task>/``: ``train.zarr`` and ``val.zarr`` (the training condition) and one
``test-<condition>.zarr`` per test condition. Batches are dicts::

    {"video": float32 (B, 3, T, H, W) in [0, 1],   # channels R (start marker), G (dots), B (goal marker)
     "label": int64 (B,), "mask": uint8 (B, T, H, W), "condition": int64 (B,)}

``condition_names[c]`` names condition index ``c``; index 0 is the training condition. The test loader
concatenates the test conditions; each of its batches holds one condition (their frame counts may differ).

Examples
--------
>>> import tempfile
>>> dm = TrackingDataModule("featuretracker", root=tempfile.mkdtemp(), n_train=4, n_val=2, n_test=2,
...                         frames=6, num_distractors=2, batch_size=2,
...                         test_conditions=["idshapes_idcolors", "oodshapes_oodcolors"])
>>> dm.prepare_data(); dm.setup("test")
>>> batch = next(iter(dm.test_dataloader()))
>>> batch["video"].shape, batch["video"].dtype, dm.condition_names
(torch.Size([2, 3, 6, 32, 32]), torch.float32, ['idshapes_idcolors', 'oodshapes_oodcolors'])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from shared.data.featuretracker import (
    FEATURETRACKER_CONDITIONS,
    FeatureTrackerConfig,
    load_featuretracker_zarr,
    write_featuretracker_zarr,
)
from shared.data.pathtracker import (
    PathTrackerConfig,
    config_for_condition,
    load_pathtracker_zarr,
    write_pathtracker_zarr,
)
from shared.data.tracking_video import TrackingSet

TASKS = ("pathtracker", "featuretracker")


class TrackingDataset(Dataset):
    """In-memory tracking split; item ``i`` is a dict of one video (see the module docstring for the keys).

    Parameters
    ----------
    data : a :class:`~shared.data.tracking_video.TrackingSet` (videos (n, T, H, W, 3) uint8).
    condition : the condition index given to every item.
    """

    def __init__(self, data: TrackingSet, condition: int = 0) -> None:
        self.videos = torch.from_numpy(np.ascontiguousarray(data.videos))  # uint8, converted per item
        self.labels = torch.from_numpy(np.asarray(data.labels, np.int64))
        self.masks = torch.from_numpy(np.ascontiguousarray(data.masks))
        self.condition = torch.tensor(int(condition), dtype=torch.int64)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        video = self.videos[i].permute(3, 0, 1, 2).to(torch.float32) / 255.0  # (T, H, W, 3) -> (3, T, H, W)
        return {"video": video, "label": self.labels[i], "mask": self.masks[i], "condition": self.condition}


class _PerDatasetBatches(Sampler[list[int]]):
    """Batches of a ConcatDataset that never mix two of its datasets (in order, no shuffling)."""

    def __init__(self, sizes: Sequence[int], batch_size: int) -> None:
        self.sizes, self.batch_size = list(sizes), batch_size

    def __iter__(self) -> Iterator[list[int]]:
        offset = 0
        for size in self.sizes:
            for lo in range(0, size, self.batch_size):
                yield list(range(offset + lo, offset + min(lo + self.batch_size, size)))
            offset += size

    def __len__(self) -> int:
        return sum(-(-size // self.batch_size) for size in self.sizes)


def validate_root(root: str | Path) -> Path:
    """Check a dataset root from a config: a directory or a path that can become one (not a file)."""
    text = str(root)
    if not text.strip() or "\x00" in text:
        raise ValueError(f"tracking data root must be a non-empty path, got {text!r}")
    path = Path(text).expanduser().resolve()
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise ValueError(f"tracking data root {path}: {part} is a file, not a directory")
            break
    return path


class TrackingDataModule(L.LightningDataModule):
    """PathTracker or FeatureTracker splits, generated once into zarr and served as dict batches.

    Parameters
    ----------
    task : ``"pathtracker"`` or ``"featuretracker"``.
    root : directory holding ``<task>/*.zarr``.
    n_train, n_val, n_test : videos per split (per test condition for ``n_test``; each split balanced).
    seed : split ``k`` uses seed ``(seed, k)`` (train 0, val 1, test condition ``j`` 2 + j).
    batch_size, num_workers : DataLoader settings.
    overwrite : regenerate splits whose stored configuration differs.
    generation_workers : processes generating the data in ``prepare_data``.
    frames, num_distractors : ``None`` = the task's published default (PathTracker 64 and 14, FeatureTracker
        32 and 10).
    speed : stride along the paths between frames.
    condition : FeatureTracker's training condition (ignored by PathTracker).
    image_size : frame side (32).
    test_conditions : FeatureTracker condition names, or PathTracker ``"axis=value"`` strings (e.g.
        ``"distractors=25"``, ``"length=128"``), each changing one setting of the training config; ``None`` =
        the training condition only.
    block_size : videos per resumable block of the zarr writer.
    """

    def __init__(
        self,
        task: str = "pathtracker",
        root: str = "data/tracking",
        n_train: int = 2000,
        n_val: int = 500,
        n_test: int = 500,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        overwrite: bool = False,
        generation_workers: int = 1,
        frames: int | None = None,
        num_distractors: int | None = None,
        speed: int = 1,
        condition: str = "idshapes_idcolors",
        image_size: int = 32,
        test_conditions: list[str] | None = None,
        block_size: int = 64,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            if n < 2:
                raise ValueError(f"{name} must be >= 2 (one video per label), got {n}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.task, self.root = task, validate_root(root) / task
        # None keeps the generator's published default
        settings = {
            "image_size": image_size,
            "speed": speed,
            **{k: v for k, v in (("frames", frames), ("num_distractors", num_distractors)) if v is not None},
        }
        if task == "pathtracker":
            self.config: Any = PathTrackerConfig(**settings)
            train_name = f"distractors={self.config.num_distractors},length={self.config.frames},speed={speed}"
            tests = [(c, config_for_condition(self.config, c)) for c in test_conditions or []]
        else:
            self.config = FeatureTrackerConfig(condition=condition, **settings)
            train_name = condition
            unknown = [c for c in test_conditions or [] if c not in FEATURETRACKER_CONDITIONS]
            if unknown:
                raise ValueError(
                    f"unknown FeatureTracker test condition(s) {unknown}; valid: {list(FEATURETRACKER_CONDITIONS)}"
                )
            tests = [(c, dataclasses.replace(self.config, condition=c)) for c in test_conditions or []]
        self.condition_names: list[str] = [train_name]
        # (split file stem, config, condition index); a test condition equal to the training one is index 0
        self.test_splits: list[tuple[str, Any, int]] = []
        for name, config in tests or [(train_name, self.config)]:
            if config == self.config:
                index = 0
            else:
                if name not in self.condition_names:
                    self.condition_names.append(name)
                index = self.condition_names.index(name)
            self.test_splits.append((f"test-{name}", config, index))
        self.datasets: dict[str, Dataset] = {}

    # ---- storage
    def split_path(self, stem: str) -> Path:
        return self.root / f"{stem.replace(',', '_')}.zarr"

    def _splits(self) -> list[tuple[str, Any, int, int]]:
        """(file stem, config, size, seed offset) of every split."""
        n = self.hparams
        return [
            ("train", self.config, n.n_train, 0),
            ("val", self.config, n.n_val, 1),
            *[(stem, config, n.n_test, 2 + j) for j, (stem, config, _) in enumerate(self.test_splits)],
        ]

    def _write(self, path: Path, n: int, config: Any, seed: tuple[int, int]) -> None:
        writer = write_pathtracker_zarr if self.task == "pathtracker" else write_featuretracker_zarr
        writer(
            path,
            n,
            config=config,
            seed=seed,
            block_size=self.hparams.block_size,
            overwrite=self.hparams.overwrite,
            num_workers=self.hparams.generation_workers,
        )

    def _load(self, path: Path, config: Any, n: int) -> TrackingSet:
        loader = load_pathtracker_zarr if self.task == "pathtracker" else load_featuretracker_zarr
        data = loader(path, expected_config=config)
        if len(data) != n:
            raise ValueError(f"{path} holds {len(data)} videos, the config asks {n}; pass overwrite=True to regenerate")
        return data

    def prepare_data(self) -> None:
        for stem, config, n, offset in self._splits():
            self._write(self.split_path(stem), n, config, (self.hparams.seed, offset))

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        splits = wanted.get(stage, ("train", "val", "test")) if stage else ("train", "val", "test")
        by_stem = {stem: (config, n) for stem, config, n, _ in self._splits()}
        for split in splits:
            if split in self.datasets:
                continue
            if split == "test":
                self.datasets["test"] = ConcatDataset(
                    [
                        TrackingDataset(self._load(self.split_path(stem), config, self.hparams.n_test), index)
                        for stem, config, index in self.test_splits
                    ]
                )
            else:
                config, n = by_stem[split]
                self.datasets[split] = TrackingDataset(self._load(self.split_path(split), config, n), 0)

    # ---- loaders
    def _loader(self, split: str, **kwargs: Any) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"the {split} split is not set up; call setup() first")
        workers = self.hparams.num_workers
        return DataLoader(
            self.datasets[split],
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", batch_size=self.hparams.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.datasets:
            raise RuntimeError("the test split is not set up; call setup() first")
        sizes = [len(d) for d in self.datasets["test"].datasets]
        return self._loader("test", batch_sampler=_PerDatasetBatches(sizes, self.hparams.batch_size))
