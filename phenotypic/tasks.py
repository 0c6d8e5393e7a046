"""The Pheno-CA tasks on frozen representations (reconstructed from the authors' code; unverified).

* **MoA deconvolution**: a probe (linear or small MLP) maps a well's representation to its compound's
  mechanism of action; top-1 and top-k accuracy on held-out compounds (or plates).
* **Target deconvolution**: multi-label (a compound can hit several genes); a prediction is a top-k hit
  when any true target is among the k highest scores.
* **Molecule rediscovery**: each held-out query compound's mean representation ranks the other held-out
  wells by cosine similarity; wells of compounds sharing the query's MoA are the partners to rediscover
  (AP, and the standardised similarity of partner wells versus the rest, as in the reference code).
* **Phenotypic activity / consistency**: copairs-style mAP (:mod:`phenotypic.map`).

Deviation from the reference code, by design: probes select their epoch on a *validation* split, never
on test accuracy. Chance levels are the accuracy of always predicting the k most frequent training classes.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from phenotypic.map import phenotypic_activity, phenotypic_consistency

__all__ = [
    "train_probe",
    "topk_hits",
    "chance_topk",
    "probe_task",
    "molecule_rediscovery",
    "task_units",
    "evaluate_task",
    "evaluate_representation",
]


def topk_hits(scores: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """Per-row hit (bool): true class (or any true label, for multi-hot ``target``) in the top ``k``.

    scores : (n, n_classes); target : (n,) class indices or (n, n_classes) multi-hot.
    """
    top = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]
    if target.ndim == 1:
        return (top == target[:, None]).any(1)
    return np.take_along_axis(target, top, 1).max(1) > 0


def chance_topk(train_target: np.ndarray, test_target: np.ndarray, n_classes: int, k: int) -> float:
    """Accuracy of always guessing the ``k`` most frequent training classes."""
    freq = np.bincount(train_target, minlength=n_classes) if train_target.ndim == 1 else train_target.sum(0)
    scores = np.broadcast_to(freq.astype(float), (len(test_target), n_classes))
    return float(topk_hits(scores, test_target, k).mean())


def _mlp(d_in: int, n_out: int, kind: str, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(d_in, n_out)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(d_in, hidden),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, n_out),
        )
    raise ValueError(f"probe kind must be 'linear' or 'mlp', got {kind!r}")


def train_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    n_classes: int,
    kind: str = "linear",
    hidden: int = 256,
    epochs: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 8192,
    patience: int = 30,
    seed: int = 0,
) -> tuple[nn.Module, dict]:
    """Train a probe on frozen representations, keeping the epoch with the best validation loss.

    AdamW, full batch up to ``batch_size`` wells (probes are small; CPU-friendly), early stopping after
    ``patience`` epochs without validation improvement.

    Parameters
    ----------
    x_train, x_val : ndarray of shape (n_wells, n_dims), standardised with the training statistics here.
    y_train, y_val : (n_wells,) class indices, or (n_wells, n_classes) multi-hot for multi-label.
    kind : ``linear`` or ``mlp`` (two hidden layers of ``hidden`` units).

    Returns
    -------
    predict : callable ``x -> scores`` of shape (n, n_classes) (applies the same standardisation).
    info : ``best_epoch``, ``val_loss``.
    """
    if len(x_train) == 0 or len(x_val) == 0:
        raise ValueError("probe needs non-empty training and validation sets")
    torch.manual_seed(seed)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.as_tensor((x_train - mean) / std, dtype=torch.float32)
    xv = torch.as_tensor((x_val - mean) / std, dtype=torch.float32)
    multilabel = y_train.ndim == 2
    yt = torch.as_tensor(y_train, dtype=torch.float32 if multilabel else torch.long)
    yv = torch.as_tensor(y_val, dtype=torch.float32 if multilabel else torch.long)

    def loss_fn(logits, y):
        return F.binary_cross_entropy_with_logits(logits, y) if multilabel else F.cross_entropy(logits, y)

    net = _mlp(xt.shape[1], n_classes, kind, hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, waited = np.inf, None, 0, 0
    for epoch in range(epochs):
        net.train()
        for idx in torch.randperm(len(xt), generator=gen).split(batch_size):
            opt.zero_grad()
            loss_fn(net(xt[idx]), yt[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val = float(loss_fn(net(xv), yv))
        if val < best - 1e-4:
            best, best_state, best_epoch, waited = val, copy.deepcopy(net.state_dict()), epoch, 0
        else:
            waited += 1
            if waited >= patience:
                break
    net.load_state_dict(best_state)
    net.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.as_tensor((x - mean) / std, dtype=torch.float32)).numpy()

    return predict, {"best_epoch": best_epoch, "val_loss": best}


def _labels(meta: pd.DataFrame, task: str, rows_train: np.ndarray) -> tuple[np.ndarray, list[str]]:
    col = "Metadata_moa" if task == "moa" else "Metadata_target"
    if task == "moa":
        classes = sorted(set(meta[col].to_numpy()[rows_train]))
        lookup = {c: i for i, c in enumerate(classes)}
        return np.array([lookup.get(c, -1) for c in meta[col]]), classes
    classes = sorted({t for s in meta[col].to_numpy()[rows_train] for t in s.split("|") if t})
    pos = {t: i for i, t in enumerate(classes)}
    y = np.zeros((len(meta), len(classes)), np.float32)
    for r, s in enumerate(meta[col]):
        for t in filter(None, s.split("|")):
            if t in pos:
                y[r, pos[t]] = 1
    return y, classes


def probe_task(
    rep: np.ndarray,
    meta: pd.DataFrame,
    splits: dict[str, np.ndarray],
    *,
    task: str = "moa",
    kind: str = "linear",
    k: int = 10,
    seed: int = 0,
    epochs: int = 300,
) -> dict:
    """Train a probe for ``task`` (``moa`` or ``target``) on annotated train wells, select on val, score test.

    Parameters
    ----------
    rep : ndarray of shape (n_wells, n_dims), one representation per row of ``meta``.
    splits : ``train`` / ``val`` / ``test`` row indices.

    Returns
    -------
    result : dict with ``top1``, ``topk``, ``chance_top1``, ``chance_topk``, ``n_test``, ``n_classes``.
    """
    if task not in ("moa", "target"):
        raise ValueError(f"task must be 'moa' or 'target', got {task!r}")
    ann = (meta["Metadata_moa"] != "").to_numpy()
    tr, va, te = (splits[s][ann[splits[s]]] for s in ("train", "val", "test"))
    y, classes = _labels(meta, task, tr)
    if task == "moa":  # classes never seen in training cannot be predicted; they count as misses in test
        va = va[y[va] >= 0]
    predict, info = train_probe(
        rep[tr], y[tr], rep[va], y[va], n_classes=len(classes), kind=kind, seed=seed, epochs=epochs
    )
    scores = predict(rep[te])
    yt = y[te]
    return {
        "top1": float(topk_hits(scores, yt, 1).mean()),
        "topk": float(topk_hits(scores, yt, k).mean()),
        "chance_top1": chance_topk(y[tr], yt, len(classes), 1),
        "chance_topk": chance_topk(y[tr], yt, len(classes), k),
        "n_test": int(len(te)),
        "n_classes": len(classes),
        "best_epoch": info["best_epoch"],
    }


def molecule_rediscovery(rep: np.ndarray, meta: pd.DataFrame, rows: np.ndarray) -> dict:
    """Rank wells by similarity to each query compound and score its MoA partners.

    Parameters
    ----------
    rep : ndarray of shape (n_wells, n_dims).
    rows : candidate wells (e.g. the test split); every annotated compound among them is a query once.

    Returns
    -------
    result : ``map`` (mean AP of partner wells), ``chance_map`` (mean partner share), ``z`` (mean
        standardised similarity of partner wells versus the others), ``n_queries``.
    """
    from phenotypic.map import _unit_rows

    rows = rows[(meta["Metadata_moa"].to_numpy()[rows] != "")]
    x = _unit_rows(rep[rows])
    comp = meta["Metadata_JCP2022"].to_numpy()[rows]
    moa = meta["Metadata_moa"].to_numpy()[rows]
    aps, chance, zs = [], [], []
    for c in np.unique(comp):
        own = comp == c
        partners = (moa == moa[own][0]) & ~own
        if not partners.any() or own.all():
            continue
        q = x[own].mean(0)
        sim = x[~own] @ (q / np.linalg.norm(q))
        rel = partners[~own]
        order = np.argsort(-sim, kind="stable")
        hits = rel[order]
        aps.append(float((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits].mean()))
        chance.append(float(rel.mean()))
        others = sim[~rel]
        zs.append(float((sim[rel].mean() - others.mean()) / (others.std() + 1e-12)) if len(others) > 1 else 0.0)
    if not aps:
        raise ValueError("no query compound has an MoA partner among the candidate wells")
    return {
        "map": float(np.mean(aps)),
        "chance_map": float(np.mean(chance)),
        "z": float(np.mean(zs)),
        "n_queries": len(aps),
    }


def task_units(probes: tuple[str, ...] = ("linear", "mlp")) -> list[tuple[str, str]]:
    """The (task, probe) pairs :func:`evaluate_representation` scores, in table order.

    Examples
    --------
    >>> task_units(("linear",))[:2]
    [('moa deconvolution', 'linear'), ('target deconvolution', 'linear')]
    >>> len(task_units(("linear", "mlp")))
    7
    """
    return [(f"{task} deconvolution", kind) for task in ("moa", "target") for kind in probes] + [
        (task, "none") for task in ("molecule rediscovery", "phenotypic activity", "phenotypic consistency (MoA)")
    ]


def evaluate_task(
    rep: np.ndarray,
    meta: pd.DataFrame,
    splits: dict[str, np.ndarray],
    *,
    name: str,
    task: str,
    probe: str = "none",
    k: int = 10,
    seed: int = 0,
    epochs: int = 300,
    null_size: int = 2000,
) -> dict:
    """One Pheno-CA task (a pair of :func:`task_units`) for one representation: one row of the results table.

    Parameters
    ----------
    rep : ndarray of shape (n_wells, n_dims), one representation per row of ``meta``.
    splits : ``train`` / ``val`` / ``test`` row indices.
    name : the representation's name in the table.
    task, probe : as listed by :func:`task_units` (``probe`` is ``"none"`` for the retrieval tasks).

    Returns
    -------
    row : ``representation``, ``task``, ``probe``, ``metric``, ``top1`` (and ``topk``), their chance levels
        ``chance_top1`` / ``chance_topk`` where defined, ``n_test``.
    """
    head = {"representation": name, "task": task, "probe": probe}
    if task in ("moa deconvolution", "target deconvolution"):
        r = probe_task(rep, meta, splits, task=task.split()[0], kind=probe, k=k, seed=seed, epochs=epochs)
        return {**head, "metric": f"top1 / top{k}", **r}
    test = splits["test"]
    if task == "molecule rediscovery":
        red = molecule_rediscovery(rep, meta, test)
        return {
            **head,
            "metric": "mAP",
            "top1": red["map"],
            "chance_top1": red["chance_map"],
            "z": red["z"],
            "n_test": red["n_queries"],
        }
    if task == "phenotypic activity":
        ctrl = np.flatnonzero((meta["Metadata_pert_type"] == "negcon").to_numpy())
        sel = np.concatenate([test, ctrl])
        res = phenotypic_activity(rep[sel], meta.iloc[sel], sameby_plate=False, null_size=null_size, seed=seed)
    elif task == "phenotypic consistency (MoA)":
        res = phenotypic_consistency(rep[test], meta.iloc[test], label="Metadata_moa", null_size=null_size, seed=seed)
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {[t for t, _ in task_units()]}")
    return {
        **head,
        "metric": "fraction retrieved / mAP",
        "top1": float(res["below_corrected_p"].mean()),
        "topk": float(res["mean_average_precision"].mean()),
        "chance_topk": float(res["expected_map"].mean()),
        "n_test": len(res),
    }


def evaluate_representation(
    rep: np.ndarray,
    meta: pd.DataFrame,
    splits: dict[str, np.ndarray],
    *,
    name: str,
    probes: tuple[str, ...] = ("linear", "mlp"),
    k: int = 10,
    seed: int = 0,
    epochs: int = 300,
    null_size: int = 2000,
) -> list[dict]:
    """All Pheno-CA tasks for one representation; one dict per (task, probe) for a results table
    (:func:`evaluate_task` for each of :func:`task_units`)."""
    return [
        evaluate_task(
            rep, meta, splits, name=name, task=task, probe=probe, k=k, seed=seed, epochs=epochs, null_size=null_size
        )
        for task, probe in task_units(probes)
    ]
