"""Features from any layer of any torch model, by forward hooks on module names (no torchvision/timm).

Layer names are those of ``model.named_modules()`` (``list_layers`` lists them). A hooked module's output
may be a tensor, a tuple/list (the first tensor is taken) or a :class:`shared.backbones.BackboneOutput`
(its ``output``). Outputs are pooled per image:

* ``"flatten"``: all values, (n, channels * rows * columns);
* ``"avg"`` / ``"max"``: global average / max over the spatial (or token) axes, (n, channels);
* ``"cls"``: token 0 of a (n, tokens, dim) output (ViT class token).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from shared.validation import check_choice

POOLING = ("flatten", "avg", "max", "cls")


def list_layers(model: nn.Module, *, leaf_only: bool = False) -> list[str]:
    """Hookable module names of ``model`` in definition order (leaves only if asked)."""
    return [
        name for name, mod in model.named_modules() if name and (not leaf_only or not any(True for _ in mod.children()))
    ]


def _first_tensor(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "output") and isinstance(output.output, torch.Tensor):
        return output.output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"cannot take features from a module output of type {type(output).__name__}")


def pool_features(t: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool one layer's output (n, channels, *spatial) or (n, tokens, dim) to (n, features)."""
    check_choice(pooling, POOLING, name="pooling")
    if pooling == "flatten" or t.ndim == 2:
        return t.flatten(1)
    if pooling == "cls":
        if t.ndim != 3:
            raise ValueError(f"pooling='cls' needs (n, tokens, dim) outputs, got shape {tuple(t.shape)}")
        return t[:, 0]
    if t.ndim == 3:  # (n, tokens, dim): pool over tokens
        return t.mean(1) if pooling == "avg" else t.amax(1)
    dims = tuple(range(2, t.ndim))
    return t.mean(dims) if pooling == "avg" else t.amax(dims)


class FeatureExtractor:
    """Context manager recording chosen layers' outputs on every forward pass.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    >>> with FeatureExtractor(net, ["1"]) as fx:
    ...     _ = net(torch.zeros(2, 1, 5, 5))
    >>> fx.outputs["1"].shape
    torch.Size([2, 4, 3, 3])
    """

    def __init__(self, model: nn.Module, layers: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        unknown = [name for name in layers if name not in modules]
        if unknown:
            raise KeyError(
                f"unknown layer(s) {unknown}; use list_layers(model) to see names, e.g. {list_layers(model)[:8]}"
            )
        self.model, self.layers = model, list(layers)
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self._modules = modules

    def __enter__(self) -> FeatureExtractor:
        for name in self.layers:

            def hook(_module, _inputs, output, name=name):
                self.outputs[name] = _first_tensor(output)

            self._handles.append(self._modules[name].register_forward_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images,
    layers: Sequence[str],
    *,
    pooling: str = "avg",
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Run ``model`` over ``images`` in batches and return pooled features of each layer.

    Parameters
    ----------
    model : any nn.Module (run in eval mode; its training flag is restored afterwards).
    images : array or tensor of shape (n_images, channels, rows, columns) (any shape the model takes).
    layers : module names (see :func:`list_layers`).
    pooling : ``"avg"``, ``"max"``, ``"flatten"`` or ``"cls"`` (module docstring).
    batch_size : images per forward pass.
    progress : show a tqdm bar over batches.

    Returns
    -------
    features : dict layer -> ndarray of shape (n_images, n_features), float32.
    """
    check_choice(pooling, POOLING, name="pooling")
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).float()
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="features", unit="batch")
    was_training = model.training
    model.eval()
    try:
        with FeatureExtractor(model, layers) as fx:
            for s in starts:
                fx.outputs.clear()
                model(x[s : s + batch_size].to(device))
                for name in layers:
                    if name not in fx.outputs:
                        raise RuntimeError(f"layer {name!r} was not called in the forward pass")
                    chunks[name].append(pool_features(fx.outputs[name], pooling).float().cpu().numpy())
    finally:
        model.train(was_training)
    return {name: np.concatenate(parts) for name, parts in chunks.items()}
