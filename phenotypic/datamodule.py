"""The data side of IBP pretraining and Pheno-CA probing: one processed dataset, its splits, and a
LightningDataModule that serves wells (profiles) or sites (5-channel image crops).

Splits (:func:`make_splits`) are made once per release and seed, and shared by pretraining and probing:

* ``compounds``: annotated compounds are divided into train / val / test *compounds* (optionally by Murcko
  scaffold); unannotated compounds are always train (IBP may use them, probes cannot). Test compounds are
  never seen in pretraining: Pheno-CA then measures generalisation to novel molecules.
* ``plates``: whole plates are held out for val and test; compounds are shared across parts.

``data_fraction`` keeps that fraction of each compound's training wells (the reference code's
``data_prop``), so the scaling grid varies data per compound, not the compound set.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from phenotypic.data import CHANNELS, load_jump_profiles, read_load_data, read_site_image, split_columns
from phenotypic.profiles import fit_whitening, process_profiles

__all__ = ["PhenoDataset", "load_dataset", "make_splits", "subsample_wells", "PhenoDataModule"]

LABELS = ("compound", "moa", "target")


@dataclass
class PhenoDataset:
    """Processed treatment wells of a release.

    meta : DataFrame of shape (n_wells, n_metadata); ``Metadata_moa`` / ``Metadata_target`` are ``""`` for
        unannotated compounds.
    features : ndarray of shape (n_wells, n_features), float32, normalised, selected and clipped.
    feature_names : list of str, length n_features.
    """

    meta: pd.DataFrame
    features: np.ndarray
    feature_names: list[str]
    images: dict = field(default_factory=dict)

    @property
    def annotated(self) -> np.ndarray:
        return (self.meta["Metadata_moa"] != "").to_numpy()


@functools.lru_cache(maxsize=4)
def load_dataset(release_root: str, *, include_controls: bool = True) -> PhenoDataset:
    """Load, validate and process a JUMP-style release into a :class:`PhenoDataset` (cached per process).

    Controls are used for normalisation and kept (phenotypic activity ranks wells against DMSO) unless
    ``include_controls`` is False; :func:`make_splits` never puts them in train/val/test.
    """
    profiles = process_profiles(load_jump_profiles(release_root, progress=False))
    if "Metadata_moa" not in profiles:
        profiles = profiles.assign(Metadata_moa="", Metadata_target="")
    if not include_controls:
        profiles = profiles[profiles["Metadata_pert_type"] == "trt"].reset_index(drop=True)
    meta, feats = split_columns(profiles)
    return PhenoDataset(profiles[meta].reset_index(drop=True), profiles[feats].to_numpy(np.float32), feats)


def make_splits(
    meta: pd.DataFrame,
    *,
    kind: str = "compounds",
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    scaffold: bool = False,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Split wells into ``train`` / ``val`` / ``test`` row indices.

    Parameters
    ----------
    meta : DataFrame of shape (n_wells, n_metadata) with ``Metadata_JCP2022``, ``Metadata_Plate``,
        ``Metadata_moa``, ``Metadata_SMILES``.
    kind : ``compounds`` (held-out annotated compounds) or ``plates`` (held-out plates).
    scaffold : for ``compounds``, split by Murcko scaffold so test molecules have unseen scaffolds.

    Returns
    -------
    splits : dict of int ndarrays (rows of ``meta``); control wells are in none of them.
    """
    if kind not in ("compounds", "plates"):
        raise ValueError(f"kind must be 'compounds' or 'plates', got {kind!r}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"need 0 < val_fraction, test_fraction and their sum < 1, got {val_fraction}, {test_fraction}")
    rng = np.random.default_rng(seed)
    if kind == "plates":
        plates = np.array(sorted(meta["Metadata_Plate"].unique()))
        if len(plates) < 3:
            raise ValueError(f"a plate split needs >= 3 plates, the release has {len(plates)}")
        plates = rng.permutation(plates)
        n_test = max(1, round(test_fraction * len(plates)))
        n_val = max(1, round(val_fraction * len(plates)))
        part = {p: "test" for p in plates[:n_test]} | {p: "val" for p in plates[n_test : n_test + n_val]}
        labels = meta["Metadata_Plate"].map(part).fillna("train").to_numpy()
    else:
        ann = meta.loc[meta["Metadata_moa"] != "", ["Metadata_JCP2022", "Metadata_SMILES"]].drop_duplicates(
            "Metadata_JCP2022"
        )
        ids = ann["Metadata_JCP2022"].to_numpy()
        if len(ids) < 3:
            raise ValueError(f"a compound split needs >= 3 annotated compounds, found {len(ids)}")
        if scaffold:
            from phenotypic.chemistry import scaffold_split

            tr, va, te = scaffold_split(
                ann["Metadata_SMILES"].tolist(),
                seed=seed,
                fractions=(1 - val_fraction - test_fraction, val_fraction, test_fraction),
            )
            part = {ids[i]: "val" for i in va} | {ids[i]: "test" for i in te}
        else:
            ids = rng.permutation(ids)
            n_test, n_val = max(1, round(test_fraction * len(ids))), max(1, round(val_fraction * len(ids)))
            part = {c: "test" for c in ids[:n_test]} | {c: "val" for c in ids[n_test : n_test + n_val]}
        labels = meta["Metadata_JCP2022"].map(part).fillna("train").to_numpy()
    labels = np.where(meta["Metadata_pert_type"].to_numpy() == "trt", labels, "control")
    return {k: np.flatnonzero(labels == k) for k in ("train", "val", "test")}


def subsample_wells(meta: pd.DataFrame, index: np.ndarray, *, fraction: float, seed: int = 0) -> np.ndarray:
    """Keep ``ceil(fraction * n)`` of each compound's ``n`` wells among ``index`` (at least one)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"data fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.sort(index)
    rng = np.random.default_rng(seed)
    comp = meta["Metadata_JCP2022"].to_numpy()[index]
    keep = []
    for c in np.unique(comp):
        rows = rng.permutation(index[comp == c])
        keep.append(rows[: max(1, int(np.ceil(fraction * len(rows))))])
    return np.sort(np.concatenate(keep))


def _multi_hot(targets: pd.Series, vocab: list[str]) -> np.ndarray:
    pos = {t: i for i, t in enumerate(vocab)}
    out = np.zeros((len(targets), len(vocab)), np.float32)
    for r, text in enumerate(targets):
        for t in filter(None, text.split("|")):
            if t in pos:
                out[r, pos[t]] = 1
    return out


class _Wells(Dataset):
    def __init__(self, x, y, batch, fp=None, *, crop: int | None = None, train: bool = False, seed: int = 0):
        self.x, self.y, self.batch, self.fp = x, y, batch, fp
        self.crop, self.train = crop, train
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        x = self.x[i]
        if self.crop is not None:  # x: (5, H, W) site -> (5, crop, crop)
            h, w = x.shape[-2:]
            if self.train:
                r, c = self.rng.integers(0, h - self.crop + 1), self.rng.integers(0, w - self.crop + 1)
            else:
                r, c = (h - self.crop) // 2, (w - self.crop) // 2
            x = x[:, r : r + self.crop, c : c + self.crop]
        item = {
            "x": torch.as_tensor(np.ascontiguousarray(x)),
            "y": torch.as_tensor(self.y[i]),
            "batch": torch.as_tensor(self.batch[i]),
        }
        if self.fp is not None:
            item["fp"] = torch.as_tensor(self.fp[i])
        return item


class PhenoDataModule(L.LightningDataModule):
    """Wells (profiles) or sites (image crops) with IBP or task labels, for ``phenotypic fit``.

    Parameters
    ----------
    release_root : folder holding ``cpg0016-jump/`` and ``metadata/`` (e.g. from ``phenotypic simulate``).
    modality : ``profiles`` (whitened CellProfiler profiles) or ``images`` (5-channel crops).
    label : ``compound`` (IBP: which molecule made this well?), ``moa`` or ``target`` (task-supervised).
    split : ``compounds`` or ``plates`` (see :func:`make_splits`).
    data_fraction : fraction of each compound's training wells used.
    whiten_variance : PCA whitening keeps this fraction of variance (profiles only).
    fingerprint_bits : > 0 adds Morgan fingerprints of the well's compound as ``fp`` targets.
    crop_size : crop side for images (random in training, centred otherwise).
    """

    def __init__(
        self,
        release_root: str = "data/phenotypic/sim",
        modality: str = "profiles",
        label: str = "compound",
        split: str = "compounds",
        data_fraction: float = 1.0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.25,
        scaffold_split: bool = False,
        whiten_variance: float = 0.999,
        fingerprint_bits: int = 0,
        crop_size: int = 48,
        batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if modality not in ("profiles", "images"):
            raise ValueError(f"modality must be 'profiles' or 'images', got {modality!r}")
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        if split not in ("compounds", "plates"):
            raise ValueError(f"split must be 'compounds' or 'plates', got {split!r}")
        if not 0 < data_fraction <= 1:
            raise ValueError(f"data_fraction must be in (0, 1], got {data_fraction}")
        if not 0 < whiten_variance <= 1:
            raise ValueError(f"whiten_variance must be in (0, 1], got {whiten_variance}")
        for name, value in (("batch_size", batch_size), ("crop_size", crop_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, value in (("fingerprint_bits", fingerprint_bits), ("num_workers", num_workers)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.save_hyperparameters()
        self.dataset: PhenoDataset | None = None

    # ---- sizes the LightningModule reads in its setup() ----
    n_features: int = 0
    n_classes: int = 0
    n_batches: int = 0
    multilabel: bool = False

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        h = self.hparams
        root = Path(h.release_root)
        if not (root / "metadata").is_dir():
            raise FileNotFoundError(
                f"release_root {root} has no metadata/ folder; run `phenotypic simulate` or point it at a JUMP download"
            )
        ds = load_dataset(str(root.resolve()))
        self.dataset = ds
        meta = ds.meta
        self.splits = make_splits(
            meta,
            kind=h.split,
            val_fraction=h.val_fraction,
            test_fraction=h.test_fraction,
            scaffold=h.scaffold_split,
            seed=h.seed,
        )
        train = subsample_wells(meta, self.splits["train"], fraction=h.data_fraction, seed=h.seed)
        batches = sorted(meta["Metadata_Batch"].unique())
        self.batch_index = meta["Metadata_Batch"].map({b: i for i, b in enumerate(batches)}).to_numpy(np.int64)
        self.n_batches = len(batches)
        if h.label == "compound":
            # IBP: classes are the training compounds; its validation holds out one well per compound with
            # >= 2 training wells (the reference code holds out a well position).
            rng = np.random.default_rng(h.seed + 1)
            comp = meta["Metadata_JCP2022"].to_numpy()
            classes = sorted(set(comp[train]))
            self.class_names = classes
            val = []
            for c in classes:
                rows = train[comp[train] == c]
                if len(rows) >= 2:
                    val.append(rng.choice(rows))
            fit_val = np.array(sorted(val), dtype=np.int64)
            fit_train = np.setdiff1d(train, fit_val)
            lookup = {c: i for i, c in enumerate(classes)}
            y = np.array([lookup.get(c, -1) for c in comp], np.int64)
            self.multilabel = False
        else:
            ann = ds.annotated
            fit_train = train[ann[train]]
            fit_val = self.splits["val"][ann[self.splits["val"]]]
            col = "Metadata_moa" if h.label == "moa" else "Metadata_target"
            if h.label == "moa":
                classes = sorted(set(meta[col].to_numpy()[fit_train]))
                lookup = {c: i for i, c in enumerate(classes)}
                y = np.array([lookup.get(c, -1) for c in meta[col]], np.int64)
                fit_val = fit_val[y[fit_val] >= 0]
                self.multilabel = False
            else:
                classes = sorted({t for s in meta[col].to_numpy()[fit_train] for t in s.split("|") if t})
                y = _multi_hot(meta[col], classes)
                self.multilabel = True
            self.class_names = classes
        if len(fit_train) == 0 or (len(fit_val) == 0 and h.label != "compound"):
            raise ValueError(
                f"empty training or validation set for label {h.label!r} "
                f"({len(fit_train)} / {len(fit_val)} wells); use a larger release"
            )
        self.fit_index = {"train": fit_train, "val": fit_val}
        self.n_classes = len(self.class_names)
        self.y = y
        if h.modality == "profiles":
            self.whitener = fit_whitening(ds.features[train], variance=h.whiten_variance, seed=h.seed)
            self.x = self.whitener.transform(ds.features).astype(np.float32)
            self.n_features = self.x.shape[1]
            self.site_well = np.arange(len(meta))
        else:
            self.x, self.site_well = self._load_images(root, meta)
            self.n_features = len(CHANNELS)
        self.fp = None
        if h.fingerprint_bits > 0:
            from phenotypic.chemistry import morgan_fingerprints

            smiles = meta["Metadata_SMILES"].tolist()
            uniq = sorted(set(smiles))
            fps = morgan_fingerprints(uniq, n_bits=h.fingerprint_bits).astype(np.float32)
            pos = {s: i for i, s in enumerate(uniq)}
            self.fp = fps[[pos[s] for s in smiles]]

    def _load_images(self, root: Path, meta: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Every site of the wells in ``meta``: (n_sites, 5, H, W) float32 (log-scaled, per-channel
        standardised) and the well row of each site."""
        indexes = sorted((root / "cpg0016-jump").glob("*/workspace/load_data_csv/*/*/load_data*.csv*"))
        if not indexes:
            raise FileNotFoundError(f"no load_data CSVs under {root}; simulate with --images")
        sites = pd.concat([read_load_data(p, local_root=root) for p in indexes], ignore_index=True)
        key = meta[["Metadata_Plate", "Metadata_Well"]].assign(row=np.arange(len(meta)))
        sites = sites.merge(key, on=["Metadata_Plate", "Metadata_Well"], how="inner")
        if sites.empty:
            raise ValueError("no imaged site matches a treatment well")
        imgs = np.stack([read_site_image(r) for _, r in sites.iterrows()])
        imgs = np.log1p(np.maximum(imgs, 0))
        mean, std = imgs.mean(axis=(0, 2, 3), keepdims=True), imgs.std(axis=(0, 2, 3), keepdims=True) + 1e-6
        return ((imgs - mean) / std).astype(np.float32), sites["row"].to_numpy()

    def _sites(self, wells: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.site_well, wells))

    def dataset_for(self, wells: np.ndarray, *, train: bool = False) -> _Wells:
        """A torch Dataset over the sites/wells of ``wells`` (well row indices)."""
        sites = self._sites(wells)
        rows = self.site_well[sites]
        crop = self.hparams.crop_size if self.hparams.modality == "images" else None
        return _Wells(
            self.x[sites],
            self.y[rows],
            self.batch_index[rows],
            None if self.fp is None else self.fp[rows],
            crop=crop,
            train=train,
            seed=self.hparams.seed,
        )

    def _loader(self, wells: np.ndarray, train: bool) -> DataLoader:
        return DataLoader(
            self.dataset_for(wells, train=train),
            batch_size=self.hparams.batch_size,
            shuffle=train,
            num_workers=self.hparams.num_workers,
            drop_last=False,
            generator=torch.Generator().manual_seed(self.hparams.seed) if train else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.fit_index["train"], True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.fit_index["val"], False)

    def transform_features(self, features: np.ndarray) -> np.ndarray:
        """Whiten processed features with the PCA fitted on this module's training wells."""
        return self.whitener.transform(features).astype(np.float32)
