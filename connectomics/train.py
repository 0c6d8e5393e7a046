"""Affinity models (gamma-Net 3D, U-Net 3D) and their training data, for ``connectomics fit``.

* :class:`AffinityModel` (LightningModule): a registered 3D backbone whose readout has one channel per
  affinity offset; per-channel class-balanced BCE on affinities under a mask; logs loss, accuracy and the
  boundary F1 of the nearest-neighbour channels.
* :class:`AffinityDataModule` (LightningDataModule): random crops from one or many volumes (zarr/OME-Zarr,
  CREMI HDF5, ...), augmented (flips/transposes and misalignment on raw + labels *before* affinities are
  computed; intensity, blur and missing sections on raw), optionally simulated on first use.
* :func:`cli`: ``connectomics fit --config configs/connectomics/gammanet.yaml`` (LightningCLI); resume
  with ``--ckpt_path runs/connectomics/gammanet/checkpoints/last.ckpt``.

Tensors are (batch, channel, plane, row, column). Raw is float32 in [0, 1] (uint8 / 255, see
:func:`connectomics.io.normalize_raw`); the model returns affinity **logits** (apply a sigmoid for
probabilities), channel ``c`` for ``offsets[c]`` in the convention of :mod:`connectomics.affinities`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from connectomics.affinities import DEFAULT_OFFSETS, compute_affinities, validate_offsets
from connectomics.augment import AugmentConfig, augment_crop
from connectomics.io import Volume, check_role, check_same_geometry, has_dataset, normalize_raw, open_volume
from connectomics.model import affinity_backbone
from shared.backbones import model_info

_PENALTY_NAMES = ("penalty", "lipschitz_penalty")


def affinity_loss(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, balance: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked binary cross-entropy per affinity channel, optionally class-balanced per channel.

    Parameters
    ----------
    logits, target, mask : Tensors of shape (batch, channel, plane, row, column); target and mask in {0, 1}.
    balance : weight positives and negatives of each channel so each class contributes half of that
        channel's loss (frequencies from the batch, clamped to [0.05, 0.95]); boundaries are rare in the
        nearest-neighbour channels and common in the long-range ones, so one global weight cannot fit all.

    Returns
    -------
    loss : scalar, the mean of the per-channel losses.
    per_channel : Tensor of shape (channel,).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    dims = (0, 2, 3, 4)
    n = mask.sum(dims).clamp_min(1.0)
    if balance:
        frac = ((target * mask).sum(dims) / n).clamp(0.05, 0.95).view(1, -1, 1, 1, 1)
        weight = torch.where(target > 0.5, 0.5 / frac, 0.5 / (1.0 - frac))
    else:
        weight = torch.ones_like(bce)
    per_channel = (weight * mask * bce).sum(dims) / n
    return per_channel.mean(), per_channel


class AffinityModel(L.LightningModule):
    """Predict affinities from EM raw with a registered 3D backbone.

    Parameters
    ----------
    backbone : registry name of a 3D model, e.g. ``"gammanet3d"`` or ``"unet3d"``.
    backbone_config : keyword config for :func:`shared.backbones.create`; ``in_channels`` defaults to 1 and
        ``out_channels`` to ``len(offsets)``.
    offsets : affinity offsets (dz, dy, dx), non-positive; default
        :data:`connectomics.affinities.DEFAULT_OFFSETS` (12 channels).
    lr, weight_decay : AdamW settings.
    balance : class-balanced BCE per channel (see :func:`affinity_loss`).
    penalty_weight : weight of the C-RBP Lipschitz penalty when a recurrent backbone reports one.

    Examples
    --------
    >>> model = AffinityModel("unet3d", {"features": [4, 8], "downsample": [[1, 2, 2]]})
    >>> model(torch.rand(1, 1, 4, 16, 16)).shape
    torch.Size([1, 12, 4, 16, 16])
    """

    def __init__(
        self,
        backbone: str = "unet3d",
        backbone_config: dict[str, Any] | None = None,
        offsets: list[list[int]] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        balance: bool = True,
        penalty_weight: float = 1.0,
    ) -> None:
        super().__init__()
        # the network is built exactly as connectomics.model.AffinityNet builds it (same ``backbone.*``
        # state-dict keys), so inference can load these checkpoints without importing Lightning
        self.backbone, config, offsets = affinity_backbone(backbone, backbone_config, offsets)
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "backbone_config": config,
                "offsets": offsets,
                "lr": float(lr),
                "weight_decay": float(weight_decay),
                "balance": bool(balance),
                "penalty_weight": float(penalty_weight),
            }
        )
        self.offsets = offsets
        self.recurrent = bool(getattr(self.backbone, "recurrent", False) or model_info(backbone).recurrent)

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of the whole model."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Affinity logits of shape (batch, len(offsets), plane, row, column) from raw (batch, 1, ...)."""
        return self.backbone(raw)

    def _forward_with_penalty(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.recurrent:
            return self.backbone(raw), None
        out = self.backbone(raw, return_steps=True)
        stats = out.stats
        for name in _PENALTY_NAMES:
            value = getattr(stats, name, None) if stats is not None else None
            if isinstance(value, torch.Tensor) and value.requires_grad:
                return out.output, value
        return out.output, None

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits, penalty = self._forward_with_penalty(batch["raw"])
        loss, per_channel = affinity_loss(logits, batch["affinities"], batch["mask"], balance=self.hparams.balance)
        total = loss
        if penalty is not None and stage == "train":
            total = loss + self.hparams.penalty_weight * penalty
            self.log("train/lipschitz_penalty", penalty.detach(), on_step=False, on_epoch=True)
        on_step = stage == "train"
        batch_size = int(batch["raw"].shape[0])
        self.log(
            f"{stage}/loss",
            loss.detach(),
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
            sync_dist=True,
        )
        if stage != "train":
            with torch.no_grad():
                self._log_quality(logits, batch, per_channel, stage, batch_size)
        return total

    def _log_quality(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        per_channel: torch.Tensor,
        stage: str,
        batch_size: int,
    ) -> None:
        pred = logits > 0
        target = batch["affinities"] > 0.5
        mask = batch["mask"] > 0.5
        accuracy = ((pred == target) & mask).sum() / mask.sum().clamp_min(1)
        # boundary detection on the nearest-neighbour channels: boundary = affinity 0
        nn_mask = mask[:, :3]
        b_pred, b_true = ~pred[:, :3] & nn_mask, ~target[:, :3] & nn_mask
        tp = (b_pred & b_true).sum()
        f1 = 2 * tp / (b_pred.sum() + b_true.sum()).clamp_min(1)
        kw = {"on_step": False, "on_epoch": True, "batch_size": batch_size, "sync_dist": True}
        self.log(f"{stage}/accuracy", accuracy, prog_bar=True, **kw)
        self.log(f"{stage}/boundary_f1", f1, **kw)
        for name, value in zip(("z", "y", "x"), per_channel[:3]):
            self.log(f"{stage}/loss_nearest_{name}", value, **kw)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch["raw"]))

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        data_offsets = getattr(dm, "offsets", None)
        if data_offsets is not None and [list(o) for o in data_offsets] != self.offsets:
            raise ValueError(
                f"data.offsets {data_offsets} differ from model.offsets {self.offsets}; set both "
                f"to the same list (or leave data.offsets unset)"
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


# --------------------------------------------------------------------------------------------- data
def volume_addresses(entry: str, raw_dataset: str, labels_dataset: str) -> tuple[str, str]:
    """Raw and labels addresses of a container entry (``sim.zarr`` -> ``sim.zarr/raw``, ``sim.zarr/labels``;
    ``sample_A.hdf`` -> ``sample_A.hdf:volumes/raw``, ...)."""
    sep = ":" if Path(entry).suffix.lower() in (".h5", ".hdf", ".hdf5") else "/"
    return f"{entry}{sep}{raw_dataset}", f"{entry}{sep}{labels_dataset}"


class CropDataset(Dataset):
    """Random (or, for validation, seeded) crops with affinity targets from a list of volumes.

    Items are dicts: ``raw`` (1, plane, row, column) float32 in [0, 1], ``affinities`` and ``mask``
    (channel, plane, row, column) float32. A volume may come with a labels mask (1 = labelled): affinities
    touching an unlabelled voxel are then masked out of the loss.
    """

    def __init__(
        self,
        volumes: list[tuple[Volume, Volume, Volume | None, tuple[int, int, int]]],
        crop_shape: Sequence[int],
        offsets: list[list[int]],
        n_samples: int,
        augment: AugmentConfig | None,
        seed: int,
        fixed: bool,
    ) -> None:
        self.volumes, self.crop_shape, self.offsets = volumes, tuple(crop_shape), offsets
        self.n_samples, self.augment, self.seed, self.fixed = n_samples, augment, seed, fixed
        sizes = np.array([math.prod(region) for *_, region in volumes], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # validation crops are the same every epoch; training crops follow torch's (seeded) generator
        entropy = [self.seed, index] if self.fixed else [self.seed, int(torch.randint(0, 2**31 - 1, (1,)))]
        rng = np.random.default_rng(entropy)
        raw_vol, lab_vol, mask_vol, region = self.volumes[int(rng.choice(len(self.volumes), p=self.weights))]
        margin = self.augment.margin if self.augment else 0
        need = (self.crop_shape[0], self.crop_shape[1] + 2 * margin, self.crop_shape[2] + 2 * margin)
        start = [int(rng.integers(0, r - n + 1)) for r, n in zip(region, need)]
        sl = tuple(slice(s, s + n) for s, n in zip(start, need))
        raw = normalize_raw(raw_vol.data[sl].compute(scheduler="synchronous"))
        labels = np.asarray(lab_vol.data[sl].compute(scheduler="synchronous"))
        unlabelled = None
        if mask_vol is not None:
            # carry "unlabelled" through the geometric augmentations as a reserved id, then split it off
            unlabelled = np.iinfo(labels.dtype).max
            labels = np.where(np.asarray(mask_vol.data[sl].compute(scheduler="synchronous")) > 0, labels, unlabelled)
        if self.augment is not None:
            raw, labels = augment_crop(raw, labels, rng, self.augment)
        labels_mask = None
        if unlabelled is not None:
            labels_mask = labels != unlabelled
            labels = np.where(labels_mask, labels, 0).astype(labels.dtype)
        affs, mask = compute_affinities(labels, self.offsets, labels_mask=labels_mask)
        return {
            "raw": torch.from_numpy(np.ascontiguousarray(raw))[None],
            "affinities": torch.from_numpy(affs),
            "mask": torch.from_numpy(mask),
        }


class AffinityDataModule(L.LightningDataModule):
    """Training and validation crops from EM volumes.

    Parameters
    ----------
    train, val : containers holding raw and labels, e.g. ``["data/a.zarr", "sample_A.hdf"]``; ``val`` None
        takes fixed validation crops from the training volumes.
    raw_dataset, labels_dataset : dataset paths inside each container (``raw``/``labels`` for our
        simulator; ``volumes/raw``/``volumes/labels/neuron_ids`` for CREMI files).
    labels_mask_dataset : dataset (uint8, 1 = labelled) marking annotated voxels, used where a zarr
        container has it (our simulator writes ``labels_mask``); affinities touching unlabelled voxels are
        masked out of the loss. None: never used.
    simulate : create missing containers with the simulator on first use. Keys: ``sources`` (one per
        ``train`` + ``val`` entry, in order), ``shape`` (plane, row, column), ``seed`` (the i-th container
        gets ``seed + i``), ``chunks`` (optional).
    crop_shape : training crop (plane, row, column).
    batch_size, samples_per_epoch, val_samples : loader sizes (an epoch is ``samples_per_epoch`` crops).
    data_fraction : the fraction of each training volume's voxels that may be sampled: rows and columns
        are cut to ``sqrt(fraction)`` of their extent from the origin (all planes kept), the STAR
        sample-efficiency condition (0.1 = 10 % of the data).
    offsets : affinity offsets; None uses the model's default (:data:`DEFAULT_OFFSETS`); must equal the
        model's ``offsets``.
    augment : apply the augmentations; ``augment_config`` overrides :class:`AugmentConfig` fields.
    num_workers, seed : loader workers and the seed of validation crops.
    """

    def __init__(
        self,
        train: list[str] | None = None,
        val: list[str] | None = None,
        raw_dataset: str = "raw",
        labels_dataset: str = "labels",
        labels_mask_dataset: str | None = "labels_mask",
        simulate: dict[str, Any] | None = None,
        crop_shape: list[int] | None = None,
        batch_size: int = 2,
        samples_per_epoch: int = 64,
        val_samples: int = 8,
        data_fraction: float = 1.0,
        offsets: list[list[int]] | None = None,
        augment: bool = True,
        augment_config: dict[str, Any] | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not train:
            raise ValueError("data.train must list at least one container with raw and labels")
        if not 0.0 < data_fraction <= 1.0:
            raise ValueError(f"data_fraction must be in (0, 1], got {data_fraction}")
        self.train_entries, self.val_entries = list(train), list(val or [])
        self.raw_dataset, self.labels_dataset = raw_dataset, labels_dataset
        self.labels_mask_dataset = labels_mask_dataset
        self.simulate = dict(simulate) if simulate else None
        if self.simulate is not None:
            sources = self.simulate.get("sources", [])
            if len(sources) != len(self.train_entries) + len(self.val_entries):
                raise ValueError(
                    f"simulate.sources needs one source per train + val container "
                    f"({len(self.train_entries) + len(self.val_entries)}), got {sources}"
                )
            if "shape" not in self.simulate:
                raise ValueError("simulate needs a shape (plane, row, column)")
        self.crop_shape = tuple(crop_shape or (16, 64, 64))
        if len(self.crop_shape) != 3:
            raise ValueError(f"crop_shape needs 3 values (plane, row, column), got {self.crop_shape}")
        self.batch_size, self.samples_per_epoch, self.val_samples = batch_size, samples_per_epoch, val_samples
        self.data_fraction = float(data_fraction)
        self.offsets = validate_offsets(offsets) if offsets is not None else None
        self.augment = AugmentConfig(**(augment_config or {})) if augment else None
        self.num_workers, self.seed = num_workers, seed

    def prepare_data(self) -> None:
        """Simulate containers that do not exist yet (only when ``simulate`` is configured)."""
        if self.simulate is None:
            return
        from connectomics.simulate import simulate_to_zarr

        for i, (entry, source) in enumerate(zip(self.train_entries + self.val_entries, self.simulate["sources"])):
            if not Path(entry).exists():
                simulate_to_zarr(
                    entry,
                    source,
                    self.simulate["shape"],
                    seed=int(self.simulate.get("seed", 0)) + i,
                    chunks=self.simulate.get("chunks", self.simulate["shape"]),
                    progress=False,
                )

    def _open(self, entry: str, fraction: float) -> tuple[Volume, Volume, Volume | None, tuple[int, int, int]]:
        raw_path, labels_path = volume_addresses(entry, self.raw_dataset, self.labels_dataset)
        raw, labels = open_volume(raw_path), open_volume(labels_path)
        check_role(raw, "raw")
        check_role(labels, "labels")
        check_same_geometry(raw, labels)
        mask = None
        if self.labels_mask_dataset and has_dataset(entry, self.labels_mask_dataset):
            mask = open_volume(volume_addresses(entry, self.raw_dataset, self.labels_mask_dataset)[1])
            check_same_geometry(raw, mask)
        margin = self.augment.margin if self.augment else 0
        need = (self.crop_shape[0], self.crop_shape[1] + 2 * margin, self.crop_shape[2] + 2 * margin)
        side = math.sqrt(fraction)
        shape = raw.spatial_shape
        region = (shape[0], max(int(round(shape[1] * side)), need[1]), max(int(round(shape[2] * side)), need[2]))
        if any(n > s for n, s in zip(need, shape)):
            raise ValueError(
                f"volume {raw_path} of shape {shape} is smaller than the crop plus augmentation "
                f"margin {need}; use a smaller crop_shape"
            )
        return raw, labels, mask, tuple(min(r, s) for r, s in zip(region, shape))  # type: ignore[return-value]

    def setup(self, stage: str | None = None) -> None:
        offsets = self.offsets or DEFAULT_OFFSETS
        train = [self._open(e, self.data_fraction) for e in self.train_entries]
        self.train_set = CropDataset(
            train, self.crop_shape, offsets, self.samples_per_epoch, self.augment, self.seed, fixed=False
        )
        val = [self._open(e, 1.0) for e in self.val_entries] if self.val_entries else train
        self.val_set = CropDataset(val, self.crop_shape, offsets, self.val_samples, None, self.seed + 1, fixed=True)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)


def cli(argv: list[str]) -> int:
    """``connectomics fit --config CONFIG.yaml [--ckpt_path last.ckpt] [LightningCLI options]``."""
    from shared.cli import lightning_cli

    argv = list(argv)
    if argv and argv[0] in {"-h", "--help"}:
        print(__doc__)
    lightning_cli(AffinityModel, AffinityDataModule, args=["fit", *argv])
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
