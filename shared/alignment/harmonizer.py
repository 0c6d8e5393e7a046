"""The neural harmonizer (Fel, Felipe et al., NeurIPS 2022): train saliency to match human maps.

Loss, as in serre-lab/Harmonization ``training/loss.py`` (TensorFlow), in PyTorch:

1. saliency = *signed* gradient of the true-class logit with respect to the input, averaged over channels
   (the training map; evaluation uses the abs-max), computed with ``create_graph=True`` (double backprop);
2. standardise-and-cut both maps per image: ``relu((x - mean) / (std + 1e-5))`` with the biased std (TF);
3. rescale the human map to the saliency map's max: ``h / (max h + 1e-6) * (stop_gradient(max s) + 1e-6)``;
4. Gaussian pyramid of both: the map plus successive 5 x 5 binomial ([1,4,6,4,1] outer itself / 256)
   stride-2 downsamplings with TensorFlow SAME padding; levels 0-4 are used;
5. per level, ``mean((s - h)**2 * token)`` over the whole batch, where ``token`` is 1 for images that have a
   human map and 0 otherwise (so token-0 images dilute the loss, as published); mean over levels.

The published total is ``CE(label smoothing 0.1) + 1e-5 * sum ||w||^2 (norm layers excluded) + 1.0 *
L_harm``; :class:`HarmonizerCallback` adds ``weight * L_harm`` to whatever loss the LightningModule's own
``training_step`` returns (keep your CE and weight decay there).

Port options: ``unbiased_std=True`` and ``stop_gradient_max=False`` reproduce serre-lab/Pseudo_ClickMe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn as nn

from shared.alignment.processing import conv2d_same
from shared.alignment.saliency import target_logit_gradient

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
BINOMIAL_KERNEL = torch.outer(_BINOMIAL, _BINOMIAL) / 256.0


def gaussian_pyramid(maps: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The map and ``levels - 1`` successive binomial stride-2 downsamplings (TF SAME padding).

    Parameters
    ----------
    maps : Tensor of shape (n_images, rows, columns).
    levels : number of levels returned (level 0 is ``maps`` itself).

    Returns
    -------
    pyramid : list of ``levels`` tensors (n_images, rows_l, columns_l), rows_l = ceil(rows / 2**l).
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (n_images, rows, columns), got shape {tuple(maps.shape)}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    out = [maps]
    current = maps[:, None]
    kernel = BINOMIAL_KERNEL.to(maps)
    for _ in range(levels - 1):
        current = conv2d_same(current, kernel, stride=2)
        out.append(current[:, 0])
    return out


def standardize_cut(maps: torch.Tensor, *, epsilon: float = 1e-5, unbiased: bool = False) -> torch.Tensor:
    """Per-image ``relu((x - mean) / (std + epsilon))`` of (n_images, rows, columns) maps."""
    flat = maps.flatten(1)
    mean = flat.mean(1).view(-1, 1, 1)
    std = flat.std(1, unbiased=unbiased).view(-1, 1, 1)
    return torch.relu((maps - mean) / (std + epsilon))


def harmonizer_loss(
    saliency: torch.Tensor,
    human_maps: torch.Tensor,
    has_map: torch.Tensor | None = None,
    *,
    levels: int = 5,
    unbiased_std: bool = False,
    stop_gradient_max: bool = True,
) -> torch.Tensor:
    """The pyramidal, token-weighted MSE between standardised-cut saliency and human maps.

    Parameters
    ----------
    saliency : Tensor of shape (n_images, rows, columns), differentiable (signed channel-mean gradient).
    human_maps : Tensor of the same shape (any non-negative importance; blurred as for evaluation).
    has_map : Tensor of shape (n_images,), 1 where the image has a human map, else 0 (default all 1).
    levels : pyramid levels used (5 published).
    unbiased_std, stop_gradient_max : port variants (module docstring).

    Returns
    -------
    loss : scalar Tensor.

    Examples
    --------
    >>> s = torch.rand(2, 16, 16, requires_grad=True)
    >>> harmonizer_loss(s, torch.rand(2, 16, 16)).backward()
    """
    if saliency.shape != human_maps.shape or saliency.ndim != 3:
        raise ValueError(
            f"saliency and human_maps must both be (n_images, rows, columns); got "
            f"{tuple(saliency.shape)} and {tuple(human_maps.shape)}"
        )
    n = saliency.shape[0]
    tokens = torch.ones(n, device=saliency.device) if has_map is None else has_map.to(saliency).view(-1)
    if tokens.shape[0] != n:
        raise ValueError(f"has_map must have one entry per image ({n}), got {tuple(has_map.shape)}")
    s = standardize_cut(saliency.float(), unbiased=unbiased_std)
    h = standardize_cut(human_maps.to(s), unbiased=unbiased_std)
    s_max = s.flatten(1).amax(1).view(-1, 1, 1)
    if stop_gradient_max:
        s_max = s_max.detach()
    h = h / (h.flatten(1).amax(1).view(-1, 1, 1) + 1e-6) * (s_max + 1e-6)
    losses = [
        ((ps - ph) ** 2 * tokens.view(-1, 1, 1)).mean()
        for ps, ph in zip(gaussian_pyramid(s, levels), gaussian_pyramid(h, levels))
    ]
    return torch.stack(losses).mean()


def training_saliency(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Signed input gradient of the true-class logit, channel mean, differentiable (create_graph=True).

    Returns
    -------
    saliency : Tensor of shape (n_images, rows, columns).
    """
    return target_logit_gradient(model, images, labels, create_graph=True).mean(dim=1)


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, Any]:
    """Split a harmonizer batch into (images, labels, human_maps, has_map, batch for the module).

    Accepted batches: a tuple/list ``(images, labels, human_maps)`` or ``(images, labels, human_maps,
    has_map)``, passed on to the module as ``(images, labels)``; or a dict with keys ``images``, ``labels``,
    ``human_maps`` and optional ``has_map``, passed on without the two map keys.
    """
    if isinstance(batch, dict):
        missing = {"images", "labels", "human_maps"} - set(batch)
        if missing:
            raise KeyError(f"harmonizer batch dict lacks {sorted(missing)}; has {sorted(batch)}")
        rest = {k: v for k, v in batch.items() if k not in ("human_maps", "has_map")}
        return batch["images"], batch["labels"], batch["human_maps"], batch.get("has_map"), rest
    if isinstance(batch, (tuple, list)) and len(batch) in (3, 4):
        has_map = batch[3] if len(batch) == 4 else None
        return batch[0], batch[1], batch[2], has_map, type(batch)(batch[:2])
    raise ValueError(
        "a harmonizer batch is (images, labels, human_maps[, has_map]) or a dict with "
        f"images/labels/human_maps[/has_map]; got {type(batch).__name__} of length "
        f"{len(batch) if hasattr(batch, '__len__') else '?'}"
    )


def _is_harmonizer_batch(batch: Any) -> bool:
    if isinstance(batch, dict):
        return "human_maps" in batch
    return isinstance(batch, (tuple, list)) and len(batch) in (3, 4)


def _without_maps(step: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an evaluation step so batches carrying human maps reach it as ``(images, labels)``."""

    def wrapped(batch: Any, *args: Any, **kwargs: Any) -> Any:
        return step(unpack_batch(batch)[4] if _is_harmonizer_batch(batch) else batch, *args, **kwargs)

    return wrapped


class HarmonizerCallback(L.Callback):
    """Add ``weight * harmonizer_loss`` to any classification LightningModule's training loss.

    One line of config (LightningCLI YAML)::

        trainer:
          callbacks:
            - class_path: shared.alignment.HarmonizerCallback
              init_args: {weight: 1.0}

    At ``setup`` the callback wraps the module's ``training_step``: the batch's human maps (see
    :func:`unpack_batch`) are split off, the module's own step runs on ``(images, labels)``, and the
    harmonizer term computed from ``module(images)`` (logits (batch, n_classes)) is added to the loss it
    returns (a tensor or a dict with ``"loss"``). Validation/test/predict batches that carry maps are passed
    on as ``(images, labels)`` too, so one DataModule can serve every stage. The extra forward pass costs
    one more forward and a double backward per training step. Logged as ``train/harmonizer_loss``. Human
    maps of shape (batch, 1, rows, columns) are squeezed; they must match the image size.

    Parameters
    ----------
    weight : lambda_harmonization (1.0 published).
    levels, unbiased_std, stop_gradient_max : passed to :func:`harmonizer_loss`.
    """

    def __init__(
        self, weight: float = 1.0, levels: int = 5, unbiased_std: bool = False, stop_gradient_max: bool = True
    ) -> None:
        if weight < 0 or levels < 1:
            raise ValueError(f"weight must be >= 0 and levels >= 1, got {weight}, {levels}")
        self.weight, self.levels = float(weight), int(levels)
        self.unbiased_std, self.stop_gradient_max = unbiased_std, stop_gradient_max

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if getattr(pl_module, "_harmonizer_wrapped", False):
            return
        original = pl_module.training_step

        def training_step(batch: Any, *args: Any, **kwargs: Any):
            images, labels, human_maps, has_map, module_batch = unpack_batch(batch)
            out = original(module_batch, *args, **kwargs)
            term = self.loss(pl_module, images, labels, human_maps, has_map)
            pl_module.log(
                "train/harmonizer_loss", term.detach(), on_step=True, on_epoch=True, batch_size=images.shape[0]
            )
            if isinstance(out, dict):
                return {**out, "loss": out["loss"] + self.weight * term}
            return out + self.weight * term

        pl_module.training_step = training_step
        for name in ("validation_step", "test_step", "predict_step"):
            setattr(pl_module, name, _without_maps(getattr(pl_module, name)))
        pl_module._harmonizer_wrapped = True

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        human_maps: torch.Tensor,
        has_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The harmonizer term for one batch (used by the wrapped ``training_step``)."""
        if human_maps.ndim == 4 and human_maps.shape[1] == 1:
            human_maps = human_maps[:, 0]
        saliency = training_saliency(model, images, labels)
        return harmonizer_loss(
            saliency,
            human_maps,
            has_map,
            levels=self.levels,
            unbiased_std=self.unbiased_std,
            stop_gradient_max=self.stop_gradient_max,
        )
