"""Safe checkpoint loading.

Every checkpoint in recurrent-vision is read with ``torch.load(..., weights_only=True)``: tensors and plain
containers only, never arbitrary pickled objects. Lightning checkpoints qualify as long as the module's
hyper-parameters are plain values (strings, numbers, lists, dicts), which every LightningModule here keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch

from shared.validation import check_existing_path

M = TypeVar("M", bound=torch.nn.Module)


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint file as a dict with ``weights_only=True``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (with the reason) for a file that is
    not a weights-only checkpoint, e.g. a pickle holding arbitrary objects.
    """
    p = check_existing_path(path, name="checkpoint", kind="file")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError/RuntimeError with long messages
        raise ValueError(
            f"could not load checkpoint {p} safely (weights_only=True): {str(err).splitlines()[0]}"
        ) from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint {p} holds a {type(ckpt).__name__}, expected a dict")
    return ckpt


def load_lightning_module(cls: type[M], path: str | Path, map_location: str | torch.device | None = "cpu") -> M:
    """Rebuild a LightningModule from a Lightning checkpoint without unpickling code.

    The module is constructed from the saved ``hyper_parameters`` and its ``state_dict`` is loaded strictly.
    Use this instead of ``cls.load_from_checkpoint`` so the weights-only rule holds everywhere.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    if "state_dict" not in ckpt:
        raise ValueError(f"checkpoint {path} has no 'state_dict'; is it a Lightning checkpoint?")
    # LightningCLI adds private bookkeeping keys such as ``_instantiator`` / ``_class_path``: not arguments
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
    model = cls(**hparams)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    return model
