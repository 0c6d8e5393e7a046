"""Glue used by the scaling grid, ``phenotypic evaluate``, the demo and the notebook: train a module on a
datamodule with a fixed step budget, and read well-level representations and predictions out of it."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from phenotypic.datamodule import PhenoDataModule
from phenotypic.ibp import IBPModule
from shared.devices import lightning_devices, lightning_precision

__all__ = ["train_module", "well_embeddings", "well_scores"]


def train_module(
    module: IBPModule,
    datamodule: PhenoDataModule,
    *,
    max_steps: int,
    seed: int = 0,
    progress: bool = False,
    root_dir: str | None = None,
) -> IBPModule:
    """Fit ``module`` for exactly ``max_steps`` optimiser steps (equal compute across compared models), on
    this process's device (inside a dask worker: the worker's own GPU, :func:`shared.devices.lightning_devices`)."""
    L.seed_everything(seed, workers=True, verbose=False)
    accelerator, devices = lightning_devices()
    trainer = L.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        accelerator=accelerator,
        devices=devices,
        precision=lightning_precision(),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=root_dir,
    )
    trainer.fit(module, datamodule)
    return module


def _per_well(module: IBPModule, datamodule: PhenoDataModule, fn) -> np.ndarray:
    dm = datamodule
    if dm.hparams.modality == "profiles":
        return fn(torch.as_tensor(dm.x)).numpy()
    ds = dm.dataset_for(np.arange(len(dm.dataset.meta)), train=False)  # centre crops of every site
    x = torch.stack([ds[i]["x"] for i in range(len(ds))])
    sites = fn(x).numpy()
    wells = dm.site_well[dm._sites(np.arange(len(dm.dataset.meta)))]
    out = np.zeros((len(dm.dataset.meta), sites.shape[1]), np.float32)
    np.add.at(out, wells, sites)
    counts = np.bincount(wells, minlength=len(out))[:, None]
    if np.any(counts == 0):
        raise ValueError(f"{int((counts == 0).sum())} wells have no imaged site")
    return out / counts


def well_embeddings(module: IBPModule, datamodule: PhenoDataModule) -> np.ndarray:
    """Frozen-encoder embedding of every well: (n_wells, embedding_dim); image sites are averaged."""
    return _per_well(module, datamodule, module.embed)


def well_scores(module: IBPModule, datamodule: PhenoDataModule) -> np.ndarray:
    """Class scores of the module's own head for every well: (n_wells, n_classes)."""

    def fn(x):
        emb = module.embed(x)
        with torch.no_grad():
            return module.net["head"](emb.to(module.device)).float().cpu()

    return _per_well(module, datamodule, fn)
