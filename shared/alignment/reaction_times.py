"""Reaction times of recurrent models: evidential readouts per timestep, uncertainty curves and xi_cRNN.

Following Goetschalckx*, Govindarajan* et al. (NeurIPS 2023; serre-lab/rnn_rts), after Sensoy et al. 2018:

* evidence ``e = exp(clip(logits / 10, -10, 10))``; Dirichlet ``alpha = e + 1``, ``S = sum(alpha)``,
  expected probabilities ``p = alpha / S``, uncertainty ``epsilon = K / S`` (K classes), in (0, 1];
* the readout is applied to every timestep's state, giving the uncertainty curve ``epsilon_t``;
* ``xi`` = trapezoidal area under ``epsilon_t`` over t = 0..T-1 (unit spacing): a model that becomes
  certain later has a larger xi, the RT proxy compared with human RTs;
* training: :func:`evidential_loss`, ``sum (y - p)**2 + sum p (1 - p) / (S + 1) + lambda_t KL(Dir(alpha~)
  || Dir(1))`` with ``alpha~ = y + (1 - y) alpha`` and ``lambda_t`` annealed to 1 (:func:`kl_annealing`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn


def evidence(logits: torch.Tensor) -> torch.Tensor:
    """``exp(clip(logits / 10, -10, 10))`` (the rnn_rts evidence function)."""
    return torch.exp(torch.clamp(logits / 10.0, -10.0, 10.0))


@dataclass
class EvidentialOutput:
    """Dirichlet quantities of logits (..., K): ``alpha``, ``strength`` S (...), ``probabilities`` and
    ``uncertainty`` K / S (...)."""

    alpha: torch.Tensor
    strength: torch.Tensor
    probabilities: torch.Tensor
    uncertainty: torch.Tensor


def evidential_outputs(logits: torch.Tensor) -> EvidentialOutput:
    """Evidential (Dirichlet) outputs of logits with classes on the last axis."""
    alpha = evidence(logits) + 1.0
    strength = alpha.sum(-1)
    return EvidentialOutput(alpha, strength, alpha / strength.unsqueeze(-1), logits.shape[-1] / strength)


def dirichlet_kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """KL(Dir(alpha) || Dir(1, ..., 1)) per row of (..., K) concentrations (closed form, Sensoy eq. 8)."""
    k = alpha.shape[-1]
    s = alpha.sum(-1)
    return (
        torch.lgamma(s)
        - torch.lgamma(torch.tensor(float(k), dtype=alpha.dtype))
        - torch.lgamma(alpha).sum(-1)
        + ((alpha - 1) * (torch.digamma(alpha) - torch.digamma(s).unsqueeze(-1))).sum(-1)
    )


def kl_annealing(epoch: int, anneal_epochs: int = 10) -> float:
    """``min(1, epoch / anneal_epochs)``: the KL weight lambda_t."""
    return 1.0 if anneal_epochs <= 0 else min(1.0, epoch / anneal_epochs)


def evidential_loss(logits: torch.Tensor, labels: torch.Tensor, *, kl_weight: float = 1.0) -> torch.Tensor:
    """Sensoy et al. (2018) evidential MSE loss with the KL regulariser, mean over the batch.

    Parameters
    ----------
    logits : Tensor of shape (batch, n_classes).
    labels : int Tensor of shape (batch,).
    kl_weight : lambda_t (see :func:`kl_annealing`).

    Returns
    -------
    loss : scalar Tensor.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"logits must be (batch, n_classes) and labels (batch,); got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}"
        )
    out = evidential_outputs(logits)
    y = torch.nn.functional.one_hot(labels.long(), logits.shape[-1]).to(logits)
    p, s = out.probabilities, out.strength.unsqueeze(-1)
    err = ((y - p) ** 2).sum(-1)
    var = (p * (1 - p) / (s + 1)).sum(-1)
    alpha_tilde = y + (1 - y) * out.alpha
    return (err + var + kl_weight * dirichlet_kl_to_uniform(alpha_tilde)).mean()


def uncertainty_curve(step_logits) -> np.ndarray:
    """Uncertainty K / S at every timestep.

    Parameters
    ----------
    step_logits : array or Tensor of shape (n_steps, n_images, n_classes).

    Returns
    -------
    curve : ndarray of shape (n_images, n_steps), float64.
    """
    t = torch.as_tensor(np.asarray(step_logits) if not isinstance(step_logits, torch.Tensor) else step_logits)
    if t.ndim != 3:
        raise ValueError(f"step_logits must be (n_steps, n_images, n_classes), got shape {tuple(t.shape)}")
    return evidential_outputs(t.detach().double()).uncertainty.T.cpu().numpy()


def xi(curve) -> np.ndarray:
    """xi_cRNN: trapezoidal area under each uncertainty curve (n_images, n_steps) with unit spacing.

    Examples
    --------
    >>> xi(np.array([[1.0, 0.5, 0.0]]))
    array([1.])
    """
    c = np.asarray(curve, np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        raise ValueError(f"curve must be (n_images, n_steps) with n_steps >= 2, got shape {c.shape}")
    return ((c[:, 1:] + c[:, :-1]) / 2).sum(axis=1)


@torch.no_grad()
def step_logits(
    backbone: nn.Module, readout: Callable[[torch.Tensor], torch.Tensor], images, *, batch_size: int = 64
) -> np.ndarray:
    """Apply ``readout`` to every timestep of a recurrent backbone.

    Parameters
    ----------
    backbone : a :mod:`shared.backbones` model; ``backbone(x, return_steps=True).steps`` is one state per
        timestep.
    readout : maps one state to logits (batch, n_classes), e.g. ``PathfinderClassifier.readout``.
    images : array of shape (n_images, channels, rows, columns).

    Returns
    -------
    logits : ndarray of shape (n_steps, n_images, n_classes), float32.
    """
    x = torch.as_tensor(np.asarray(images, np.float32) if not isinstance(images, torch.Tensor) else images)
    param = next(iter(backbone.parameters()), None)
    dev = param.device if param is not None else torch.device("cpu")
    modules = [m for m in (backbone, readout) if isinstance(m, nn.Module)]
    flags = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        parts = []
        for s in range(0, len(x), batch_size):
            out = backbone(x[s : s + batch_size].to(dev), return_steps=True)
            steps = out.steps or [out.output]
            parts.append(torch.stack([readout(state) for state in steps]).float().cpu())
    finally:
        for m, flag in zip(modules, flags):
            m.train(flag)
    return torch.cat(parts, dim=1).numpy()


def reaction_times(
    backbone: nn.Module, readout: Callable[[torch.Tensor], torch.Tensor], images, *, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """xi per image and the uncertainty curves of a recurrent model.

    Returns
    -------
    xi : ndarray of shape (n_images,).
    curves : ndarray of shape (n_images, n_steps).
    """
    curves = uncertainty_curve(step_logits(backbone, readout, images, batch_size=batch_size))
    return xi(curves), curves
