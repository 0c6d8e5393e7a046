"""Linear probes on frozen features: the scikit-learn recipe and the 3D-PC recipe.

**sklearn recipe**: ``Pipeline(StandardScaler, LogisticRegressionCV(Cs=10 values over 1e-4..1e4,
cv=StratifiedKFold(5), scoring="accuracy", max_iter=1000))``, the scaler fitted inside each fold; scored on
a fixed test split when one exists, else by an outer ``StratifiedKFold(5, shuffle=True, random_state=0)``.
On scikit-learn >= 1.9 the pure-L2 setting is spelled ``l1_ratios=(0.0,)`` and
``use_legacy_attributes=False`` (older versions reject those arguments; we branch on the version).

**3D-PC recipe** (Linsley et al. ICLR 2025, serre-lab/VPT): ``BatchNorm1d(affine=False, eps=1e-6) ->
Dropout(0.3) -> Linear(D, 1)``, BCE with logits, AdamW(lr 5e-5, weight decay 1e-4), batch 16, 30 epochs;
the epoch with the best validation accuracy is reported on the test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from shared.validation import check_finite, check_ndim


def _xy(features, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, np.float64)
    y = np.asarray(labels)
    check_ndim(x, 2, name=f"{name} features", axes="(n_samples, n_features)")
    check_finite(x, name=f"{name} features")
    if y.shape != (len(x),):
        raise ValueError(f"{name} labels must have shape ({len(x)},), got {y.shape}")
    return x, y


def sklearn_probe_pipeline(*, n_cs: int = 10, inner_folds: int = 5, max_iter: int = 1000, random_state: int = 0):
    """The standardise + cross-validated L2 logistic regression pipeline (module docstring)."""
    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kwargs = {}
    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 9):
        kwargs = {"l1_ratios": (0.0,), "use_legacy_attributes": False}
    clf = LogisticRegressionCV(
        Cs=np.logspace(-4, 4, n_cs),
        cv=StratifiedKFold(inner_folds, shuffle=True, random_state=random_state),
        scoring="accuracy",
        max_iter=max_iter,
        **kwargs,
    )
    return make_pipeline(StandardScaler(), clf)


@dataclass
class ProbeResult:
    """Probe accuracy: ``mean`` and ``sd`` over outer folds (sd 0 with a fixed test split), ``chance`` (the
    majority-class rate of the evaluated labels) and ``per_fold`` accuracies."""

    mean: float
    sd: float
    chance: float
    per_fold: np.ndarray


def sklearn_probe(
    features,
    labels,
    *,
    test_features=None,
    test_labels=None,
    outer_folds: int = 5,
    inner_folds: int = 5,
    n_cs: int = 10,
    random_state: int = 0,
) -> ProbeResult:
    """Linear-probe accuracy with the scikit-learn recipe.

    Parameters
    ----------
    features : array of shape (n_samples, n_features); labels : array of shape (n_samples,).
    test_features, test_labels : a fixed test split; if given, the probe is fit on all of ``features``.
    outer_folds, inner_folds : cross-validation folds (outer: accuracy; inner: choosing C).
    n_cs : inverse regularisation strengths tried, log-spaced over 1e-4..1e4.

    Returns
    -------
    result : :class:`ProbeResult`.
    """
    from sklearn.model_selection import StratifiedKFold

    x, y = _xy(features, labels, "train")
    if test_features is not None:
        xt, yt = _xy(test_features, test_labels, "test")
        pipe = sklearn_probe_pipeline(n_cs=n_cs, inner_folds=inner_folds, random_state=random_state)
        acc = pipe.fit(x, y).score(xt, yt)
        chance = float(np.max(np.unique(yt, return_counts=True)[1]) / len(yt))
        return ProbeResult(float(acc), 0.0, chance, np.array([acc]))
    folds = StratifiedKFold(outer_folds, shuffle=True, random_state=random_state)
    scores = []
    for train, test in folds.split(x, y):
        pipe = sklearn_probe_pipeline(n_cs=n_cs, inner_folds=inner_folds, random_state=random_state)
        scores.append(pipe.fit(x[train], y[train]).score(x[test], y[test]))
    arr = np.asarray(scores)
    chance = float(np.max(np.unique(y, return_counts=True)[1]) / len(y))
    return ProbeResult(float(arr.mean()), float(arr.std()), chance, arr)


class BinaryProbe(nn.Module):
    """BatchNorm1d(affine=False, eps=1e-6) -> Dropout -> Linear(D, 1): the 3D-PC probe head."""

    def __init__(self, n_features: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm1d(n_features, affine=False, eps=1e-6), nn.Dropout(dropout), nn.Linear(n_features, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


@dataclass
class TorchProbeResult:
    """Result of :func:`train_3dpc_probe`: the best-validation epoch (0-based), its validation and test
    accuracies, and the per-epoch ``history`` (dicts with epoch, train_loss, val_accuracy, test_accuracy)."""

    best_epoch: int
    val_accuracy: float
    test_accuracy: float
    history: list[dict] = field(default_factory=list)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(((model(x) > 0).long() == y).double().mean())


def train_3dpc_probe(
    train_features,
    train_labels,
    val_features,
    val_labels,
    test_features,
    test_labels,
    *,
    epochs: int = 30,
    lr: float = 5e-5,
    weight_decay: float = 1e-4,
    batch_size: int = 16,
    dropout: float = 0.3,
    seed: int = 0,
    progress: bool = False,
) -> TorchProbeResult:
    """Train the 3D-PC binary probe and report the best-validation epoch on test.

    Parameters
    ----------
    train_features, val_features, test_features : arrays of shape (n_split, n_features).
    train_labels, val_labels, test_labels : 0/1 arrays of shape (n_split,).
    epochs, lr, weight_decay, batch_size, dropout : the published settings by default.
    seed : seeds the initialisation and shuffling.
    progress : tqdm bar over epochs.

    Returns
    -------
    result : :class:`TorchProbeResult` (test accuracy *at the best validation epoch*, ties -> earliest).
    """
    splits = {}
    for name, (f, lab) in {
        "train": (train_features, train_labels),
        "val": (val_features, val_labels),
        "test": (test_features, test_labels),
    }.items():
        x, y = _xy(f, lab, name)
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"{name} labels must be 0/1 for the binary 3D-PC probe")
        splits[name] = (torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y.astype(np.int64)))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xtr, ytr = splits["train"]
    model = BinaryProbe(xtr.shape[1], dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    history, best = [], (-1.0, 0, 0.0)
    epoch_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="probe", unit="epoch")
    for epoch in epoch_iter:
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for s in range(0, len(xtr), batch_size):
            idx = perm[s : s + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples in training mode
                continue
            loss = loss_fn(model(xtr[idx]), ytr[idx].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        val_acc = _accuracy(model, *splits["val"])
        test_acc = _accuracy(model, *splits["test"])
        history.append(
            {"epoch": epoch, "train_loss": total / len(xtr), "val_accuracy": val_acc, "test_accuracy": test_acc}
        )
        if val_acc > best[0]:
            best = (val_acc, epoch, test_acc)
    return TorchProbeResult(best[1], best[0], best[2], history)
