"""Global random states saved in Lightning checkpoints, so a resumed training draws what an uninterrupted one would.

Lightning checkpoints hold the weights, optimizer and loop progress but not the global RNGs. Training crops
that come from torch's global generator (and dataloader worker seeds, which are drawn from it) would then
differ after a resume, and a resumed run would not reproduce an uninterrupted one. :class:`RNGStateCallback`
stores the torch, CUDA, numpy and Python generator states with every checkpoint and, when
``Trainer.fit(ckpt_path=...)`` resumes, restores them as the next training epoch starts; together with a
checkpoint at each training-epoch end (``ModelCheckpoint(save_on_train_epoch_end=True)``, an epoch boundary
where no batch is half consumed) this makes a resumed CPU run identical to an uninterrupted one.

Why at the epoch start and not on load: Lightning resumes a checkpoint written at an epoch end by replaying
that epoch's end, which creates a data-loader iterator (one draw from torch's generator) and rewrites the
checkpoint; the uninterrupted run has no such draw between its checkpoint and its next epoch.
All states are stored as tensors and plain tuples, so the checkpoint still loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

__all__ = ["RNGStateCallback"]


class RNGStateCallback(L.Callback):
    """Save the global RNG states with each checkpoint; restore them when training resumes from one.

    States loaded from a checkpoint are applied at the next ``on_train_epoch_start`` (before its data-loader
    iterator exists) and, until then, are what a checkpoint saves. CUDA states are restored only when the
    number of visible GPUs matches the saved one (a run resumed on other hardware cannot reproduce its GPU
    draws anyway).

    Examples
    --------
    >>> callback = RNGStateCallback()
    >>> state = callback.state_dict()
    >>> a = torch.rand(3)
    >>> callback.load_state_dict(state)
    >>> callback.on_train_epoch_start(None, None)
    >>> bool((torch.rand(3) == a).all())
    True
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        if self._pending is not None:
            return self._pending
        name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached_gaussian),
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            state_dict, self._pending = self._pending, None
            _set_states(state_dict)


def _set_states(state_dict: dict[str, Any]) -> None:
    """Set the global generators to the states of :meth:`RNGStateCallback.state_dict`."""
    torch.set_rng_state(state_dict["torch"])
    cuda = state_dict.get("torch.cuda", [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached_gaussian = state_dict["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
    version, state, gauss = state_dict["python"]
    random.setstate((version, tuple(state), gauss))
