"""Saliency maps of any classifier: input gradients, SmoothGrad and integrated gradients.

Every function takes an ``nn.Module`` mapping images ``(batch, channels, rows, columns)`` to logits
``(batch, n_classes)`` and one target class per image, and returns one map per image. Work is split into
chunks of at most ``batch_size`` model inputs (images x noise samples, or images x integration steps), so
memory is bounded by ``batch_size`` whatever the number of samples or steps: no perturbed batch is held
beyond the chunk that uses it. Accumulation is in float64.

Channel reductions (``reduce``):

* ``"absmax"``: max over channels of |gradient| (Xplique ``Saliency``; the ClickMe evaluation map);
* ``"mean"``: signed channel mean (the harmonizer's *training* map);
* ``"absmean"``: |channel mean| (the adversarial-alignment map);
* ``"none"``: keep the channels, shape (n_images, channels, rows, columns).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from shared.validation import check_choice, check_ndim

REDUCTIONS = ("absmax", "mean", "absmean", "none")
METHODS = ("gradient", "smoothgrad", "integrated_gradients")


def _as_tensor(images, name: str = "images") -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    check_ndim(x, 4, name=name, axes="(n_images, channels, rows, columns)")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.float()


def _as_targets(targets, n: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if t.ndim == 0:
        t = t.expand(n)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"targets must be one class index per image ({n}), got shape {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"targets must be integer class indices, got {t.dtype}")
    return t.long()


def reduce_channels(gradients: torch.Tensor, reduce: str) -> torch.Tensor:
    """Reduce (n, channels, rows, columns) gradients to maps; see the module docstring for the options."""
    check_choice(reduce, REDUCTIONS, name="reduce")
    if reduce == "absmax":
        return gradients.abs().amax(dim=1)
    if reduce == "mean":
        return gradients.mean(dim=1)
    if reduce == "absmean":
        return gradients.mean(dim=1).abs()
    return gradients


def target_logit_gradient(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, create_graph: bool = False
) -> torch.Tensor:
    """d logit[target] / d input for one batch, as a tensor shaped like ``images`` (differentiable if asked).

    The harmonizer uses ``create_graph=True`` so the saliency can itself be trained (double backprop).
    """
    x = images.detach().requires_grad_(True)
    logits = model(x)
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"model must return logits of shape (batch, n_classes), got {tuple(logits.shape)}")
    selected = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
    (grad,) = torch.autograd.grad(selected, x, create_graph=create_graph)
    return grad


def _run(
    model: nn.Module,
    images,
    targets,
    per_image: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    reduce: str,
    device,
) -> np.ndarray:
    check_choice(reduce, REDUCTIONS, name="reduce")
    x = _as_tensor(images)
    t = _as_targets(targets, x.shape[0])
    if device is not None:
        model.to(device)
    was_training = model.training
    model.eval()
    try:
        out = per_image(x, t)
    finally:
        model.train(was_training)
    return reduce_channels(out, reduce).numpy()


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def input_gradients(
    model: nn.Module,
    images,
    targets,
    *,
    reduce: str = "absmax",
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Gradient of the target logit with respect to the input (the ClickMe saliency map).

    Parameters
    ----------
    model : nn.Module mapping (batch, channels, rows, columns) to logits (batch, n_classes).
    images : array or tensor of shape (n_images, channels, rows, columns), floating point.
    targets : int array of shape (n_images,) (or one int for all), the class whose logit is explained.
    reduce : channel reduction: ``"absmax"`` (default, the published evaluation map), ``"mean"``,
        ``"absmean"`` or ``"none"``.
    batch_size : images per forward/backward pass.
    device : move the model there first; default: leave it where its parameters are.

    Returns
    -------
    maps : ndarray of shape (n_images, rows, columns), float64 (channels kept when ``reduce="none"``).

    Examples
    --------
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    >>> input_gradients(net, torch.rand(5, 3, 4, 4), [0, 1, 0, 1, 1]).shape
    (5, 4, 4)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def per_image(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dev = _model_device(model)
        out = torch.empty(x.shape, dtype=torch.float64)
        for sl in _chunks(x.shape[0], batch_size):
            out[sl] = target_logit_gradient(model, x[sl].to(dev), t[sl]).detach().double().cpu()
        return out

    return _run(model, images, targets, per_image, reduce=reduce, device=device)


def smoothgrad(
    model: nn.Module,
    images,
    targets,
    *,
    n_samples: int = 25,
    noise_level: float = 0.15,
    reduce: str = "absmax",
    squared: bool = False,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """SmoothGrad: input gradients averaged over Gaussian-noised copies of each image.

    Noise has standard deviation ``noise_level * (max(x) - min(x))`` per image (Smilkov et al. 2017). The
    noise samples are drawn and pushed through the model chunk by chunk (``batch_size`` noisy images at a
    time, images x samples flattened), so memory does not grow with ``n_samples``.

    Parameters
    ----------
    model, images, targets, reduce, batch_size, device : as in :func:`input_gradients`.
    n_samples : noisy copies per image.
    noise_level : noise standard deviation relative to each image's value range.
    squared : average squared gradients (SmoothGrad-Squared) instead of gradients.
    seed : seed of the noise generator (the maps are deterministic for a given seed and batch_size).

    Returns
    -------
    maps : ndarray of shape (n_images, rows, columns), float64.

    References
    ----------
    Smilkov et al. (2017) SmoothGrad: removing noise by adding noise. arXiv:1706.03825
    """
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"n_samples and batch_size must be >= 1, got {n_samples}, {batch_size}")
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0, got {noise_level}")

    def per_image(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dev = _model_device(model)
        gen = torch.Generator().manual_seed(seed)
        n = x.shape[0]
        sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
        total = torch.zeros(x.shape, dtype=torch.float64)
        flat = n * n_samples  # pair k = (image k // n_samples, sample k % n_samples)
        for sl in _chunks(flat, batch_size):
            idx = torch.arange(sl.start, sl.stop) // n_samples
            noise = torch.randn((len(idx), *x.shape[1:]), generator=gen) * sigma[idx].view(-1, 1, 1, 1)
            g = target_logit_gradient(model, (x[idx] + noise).to(dev), t[idx]).detach().double().cpu()
            total.index_add_(0, idx, g * g if squared else g)
        return total / n_samples

    return _run(model, images, targets, per_image, reduce=reduce, device=device)


def integrated_gradients(
    model: nn.Module,
    images,
    targets,
    *,
    n_steps: int = 32,
    baseline: float = 0.0,
    reduce: str = "absmax",
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Integrated gradients (Sundararajan et al. 2017) through captum, with a bounded internal batch.

    captum's ``IntegratedGradients`` expands each image into ``n_steps`` path points; its
    ``internal_batch_size`` (set to ``batch_size``) makes it evaluate them in chunks, which is what keeps
    memory bounded (captum#245). Images go through captum ``max(1, batch_size // n_steps)`` at a time.

    Parameters
    ----------
    model, images, targets, reduce, batch_size, device : as in :func:`input_gradients`.
    n_steps : points on the straight path from the baseline (Gauss-Legendre rule, captum's default).
    baseline : constant baseline image value.

    Returns
    -------
    maps : ndarray of shape (n_images, rows, columns), float64.

    Notes
    -----
    Completeness: the attributions (``reduce="none"``) summed over pixels approximate
    ``logit(x) - logit(baseline)``.
    """
    from captum.attr import IntegratedGradients

    if n_steps < 1 or batch_size < 1:
        raise ValueError(f"n_steps and batch_size must be >= 1, got {n_steps}, {batch_size}")

    def per_image(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dev = _model_device(model)
        ig = IntegratedGradients(model)
        out = torch.empty(x.shape, dtype=torch.float64)
        for sl in _chunks(x.shape[0], max(1, batch_size // n_steps)):
            xb = x[sl].to(dev)
            attr = ig.attribute(
                xb,
                baselines=torch.full_like(xb, baseline),
                target=t[sl].to(dev),
                n_steps=n_steps,
                internal_batch_size=batch_size,
            )
            out[sl] = attr.detach().double().cpu()
        return out

    return _run(model, images, targets, per_image, reduce=reduce, device=device)


def saliency_maps(model: nn.Module, images, targets, *, method: str = "gradient", **options) -> np.ndarray:
    """Dispatch to :func:`input_gradients`, :func:`smoothgrad` or :func:`integrated_gradients` by name."""
    check_choice(method, METHODS, name="method")
    func = {"gradient": input_gradients, "smoothgrad": smoothgrad, "integrated_gradients": integrated_gradients}[method]
    return func(model, images, targets, **options)
