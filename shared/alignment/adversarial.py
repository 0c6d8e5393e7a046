"""Adversarial alignment (serre-lab/Adversarial-Alignment): where does the smallest attack put its pixels?

For each correctly classified image, the smallest L2 budget eps for which an L2 PGD attack succeeds is
found by binary search; the score is the Spearman rho between the per-pixel magnitude of that attack,
``|channel mean(x_adv - x)|``, and the human map. (The published per-batch min-max normalisation of the
map is a monotone transform of each image's map, so it does not change rho and is omitted.)

PGD as published: each step moves ``alpha * g / ||g||`` along the gradient g of the cross-entropy,
projects the perturbation onto the eps **sphere** (not the ball: ``delta * eps / ||delta||``), and clamps
the image to [0, 1]; binary search over eps in [0.01, 10]. The published code passes its initial eps
through the search and has a broken ``execute_attack``; here every image gets its own eps interval, halved
``n_search`` times, and the reported eps is the smallest successful one found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.alignment.saliency import _as_targets, _as_tensor, _model_device


def _norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.ndim - 1)))


def l2_pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: torch.Tensor,
    *,
    alpha: float = 0.5,
    n_iter: int = 3,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Untargeted L2 PGD with the perturbation projected onto the eps sphere (one eps per image).

    Parameters
    ----------
    model : classifier, (batch, channels, rows, columns) -> logits.
    images : Tensor of shape (batch, channels, rows, columns); labels : (batch,) true classes.
    eps : Tensor of shape (batch,), the L2 radius per image.
    alpha : step length (L2) per iteration.
    n_iter : iterations.
    clamp : valid pixel range, or None.

    Returns
    -------
    adversarial : Tensor shaped like ``images`` (detached).
    """
    x0 = images.detach()
    e = eps.to(x0).view(-1, *([1] * (x0.ndim - 1)))
    x = x0.clone()
    for _ in range(n_iter):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(x), labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            delta = x - x0 + alpha * g / _norm(g)
            delta = delta * e / _norm(delta)
            x = x0 + delta
            if clamp is not None:
                x = x.clamp(*clamp)
        x = x.detach()
    return x


@dataclass
class MinimalPerturbation:
    """Result of :func:`minimal_l2_perturbation`.

    Attributes
    ----------
    eps : ndarray of shape (n_images,), the smallest successful L2 budget found (NaN if none in range).
    perturbations : ndarray of shape (n_images, channels, rows, columns), x_adv - x at that eps (0 if none).
    success : bool ndarray of shape (n_images,).
    """

    eps: np.ndarray
    perturbations: np.ndarray
    success: np.ndarray


def minimal_l2_perturbation(
    model: nn.Module,
    images,
    labels,
    *,
    eps_range: tuple[float, float] = (0.01, 10.0),
    n_search: int = 10,
    alpha: float = 0.5,
    n_iter: int = 3,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 64,
) -> MinimalPerturbation:
    """Binary search, per image, for the smallest eps at which :func:`l2_pgd` flips the prediction.

    Parameters
    ----------
    model : classifier (evaluated in eval mode).
    images : array of shape (n_images, channels, rows, columns) in the ``clamp`` range.
    labels : int array of shape (n_images,), the true classes.
    eps_range : (low, high) search interval for the L2 budget (published: 0.01, 10).
    n_search : bisection steps; the final interval is (high - low) / 2**n_search wide.
    alpha, n_iter, clamp : passed to :func:`l2_pgd` (published: 0.5, 3, [0, 1]).
    batch_size : images per batch.

    Returns
    -------
    result : :class:`MinimalPerturbation`.
    """
    x_all = _as_tensor(images)
    y_all = _as_targets(labels, len(x_all))
    lo0, hi0 = eps_range
    if not 0 <= lo0 < hi0:
        raise ValueError(f"eps_range must satisfy 0 <= low < high, got {eps_range}")
    dev = _model_device(model)
    was_training = model.training
    model.eval()
    eps_out = np.full(len(x_all), np.nan)
    pert_out = np.zeros(x_all.shape, np.float32)
    try:
        for s in range(0, len(x_all), batch_size):
            x, y = x_all[s : s + batch_size].to(dev), y_all[s : s + batch_size].to(dev)
            lo = torch.full((len(x),), float(lo0), device=dev)
            hi = torch.full((len(x),), float(hi0), device=dev)
            best = torch.full((len(x),), float("nan"), device=dev)
            best_x = x.clone()

            def attack(eps: torch.Tensor, x=x, y=y) -> tuple[torch.Tensor, torch.Tensor]:
                adv = l2_pgd(model, x, y, eps, alpha=alpha, n_iter=n_iter, clamp=clamp)
                with torch.no_grad():
                    return adv, model(adv).argmax(1) != y

            adv, ok = attack(hi)
            best = torch.where(ok, hi, best)
            best_x[ok] = adv[ok]
            for _ in range(n_search):
                mid = (lo + hi) / 2
                adv, ok = attack(mid)
                improve = ok & ~(best <= mid)  # NaN best or a larger best eps
                best = torch.where(improve, mid, best)
                best_x[improve] = adv[improve]
                hi = torch.where(ok, mid, hi)
                lo = torch.where(ok, lo, mid)
            eps_out[s : s + len(x)] = best.cpu().numpy()
            pert_out[s : s + len(x)] = (best_x - x).cpu().numpy()
    finally:
        model.train(was_training)
    return MinimalPerturbation(eps_out, pert_out, ~np.isnan(eps_out))


@dataclass
class AdversarialAlignment:
    """Result of :func:`adversarial_alignment`.

    Attributes
    ----------
    mean_spearman : mean rho over attacked images (correctly classified and successfully attacked).
    mean_eps : mean smallest successful eps over the same images (perturbation tolerance).
    spearman : ndarray of shape (n_images,), NaN for images not scored.
    eps : ndarray of shape (n_images,).
    scored : bool ndarray of shape (n_images,).
    """

    mean_spearman: float
    mean_eps: float
    spearman: np.ndarray
    eps: np.ndarray
    scored: np.ndarray


def adversarial_alignment(model: nn.Module, images, labels, human_maps, **options) -> AdversarialAlignment:
    """Spearman between the minimal attack's per-pixel magnitude and the human map (module docstring).

    Parameters
    ----------
    model, images, labels : as in :func:`minimal_l2_perturbation` (``options`` are passed to it).
    human_maps : array of shape (n_images, rows, columns).

    Returns
    -------
    result : :class:`AdversarialAlignment`; only correctly classified, successfully attacked images count.
    """
    from shared.alignment.scores import spearman_per_image

    x = _as_tensor(images)
    y = _as_targets(labels, len(x))
    maps = np.asarray(human_maps, np.float64)
    if maps.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"human_maps must have shape {(x.shape[0], *x.shape[2:])}, got {maps.shape}")
    dev = _model_device(model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        correct = torch.cat([model(x[s : s + 64].to(dev)).argmax(1).cpu() for s in range(0, len(x), 64)]) == y
    model.train(was_training)
    correct = correct.numpy()
    rho = np.full(len(x), np.nan)
    eps = np.full(len(x), np.nan)
    if correct.any():
        res = minimal_l2_perturbation(model, x[correct], y[correct], **options)
        magnitude = np.abs(res.perturbations.mean(axis=1))
        r = spearman_per_image(magnitude, maps[correct])
        r[~res.success] = np.nan
        rho[correct], eps[correct] = r, res.eps
    scored = ~np.isnan(rho)
    nan = float("nan")
    return AdversarialAlignment(
        float(np.mean(rho[scored])) if scored.any() else nan,
        float(np.mean(eps[scored])) if scored.any() else nan,
        rho,
        eps,
        scored,
    )
