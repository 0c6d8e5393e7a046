"""Safe checkpoint loading, with one-line errors that say what a bad checkpoint is.

Every checkpoint in recurrent-vision is read with ``torch.load(..., weights_only=True)``: tensors and plain
containers only, never arbitrary pickled objects. Lightning checkpoints qualify as long as the module's
hyper-parameters are plain values (strings, numbers, lists, dicts), which every LightningModule here keeps.

Every loader (connectomics, phenotypic, rldiag, alignment) goes through :func:`load_checkpoint`, so an
empty, truncated, hostile or foreign file fails the same way everywhere: :class:`CheckpointError` (a
``ValueError``), whose message names the file and the problem, e.g. "this is a Pathfinder checkpoint;
expected a phenotypic IBP checkpoint".
"""

from __future__ import annotations

import inspect
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from shared.validation import check_existing_path

M = TypeVar("M", bound=torch.nn.Module)

__all__ = [
    "CheckpointError",
    "CheckpointKind",
    "KINDS",
    "identify_checkpoint",
    "load_checkpoint",
    "load_lightning_module",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot or must not be loaded; the message names the file and the reason."""


@dataclass(frozen=True)
class CheckpointKind:
    """How to recognise one subsystem's checkpoints without importing it.

    id : short name for ``load_checkpoint(..., expect=id)``.
    name : words for messages, e.g. ``"a Pathfinder checkpoint"``.
    class_name : the LightningModule that writes it (``None`` for a plain ``torch.save`` dict).
    hparams : keys that its ``hyper_parameters`` always hold.
    keys : top-level keys (for plain dicts).
    """

    id: str
    name: str
    class_name: str | None
    hparams: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()

    def matches(self, ckpt: dict) -> bool:
        hp = ckpt.get("hyper_parameters")
        has_hparams = isinstance(hp, dict) and self.hparams <= set(hp)
        return self.keys <= set(ckpt) and (not self.hparams or has_hparams)


# Most specific first. Data only: shared never imports the domain packages.
KINDS: tuple[CheckpointKind, ...] = (
    CheckpointKind(
        "pathfinder",
        "a Pathfinder checkpoint (shared.pathfinder)",
        "PathfinderClassifier",
        frozenset({"backbone", "readout", "lipschitz_weight"}),
    ),
    CheckpointKind(
        "affinity",
        "a connectomics affinity-model checkpoint",
        "AffinityModel",
        frozenset({"backbone", "offsets", "penalty_weight"}),
    ),
    CheckpointKind(
        "ibp", "a phenotypic IBP checkpoint", "IBPModule", frozenset({"encoder", "width", "depth", "fingerprint_bits"})
    ),
    CheckpointKind(
        "bc",
        "an rldiag behaviour-cloning checkpoint",
        "BehaviourCloning",
        frozenset({"encoder", "n_actions", "target"}),
    ),
    CheckpointKind(
        "ppo", "an rldiag PPO checkpoint (rldiag train)", None, keys=frozenset({"config", "model", "optimizer"})
    ),
)


def identify_checkpoint(ckpt: dict) -> CheckpointKind | None:
    """The kind of checkpoint ``ckpt`` is (see :data:`KINDS`), or None if unknown.

    Examples
    --------
    >>> identify_checkpoint({"state_dict": {}, "hyper_parameters": {"backbone": "hgru", "readout": "reference",
    ...                                                            "lipschitz_weight": 10.0}}).id
    'pathfinder'
    """
    return next((k for k in KINDS if k.matches(ckpt)), None)


def _check_kind(ckpt: dict, path: Path, expected: CheckpointKind | None) -> None:
    found = identify_checkpoint(ckpt)
    if expected is not None and found is not None and found != expected:
        raise CheckpointError(f"{path}: this is {found.name}; expected {expected.name}")


def load_checkpoint(
    path: str | Path, map_location: str | torch.device | None = "cpu", *, expect: str | None = None
) -> dict[str, Any]:
    """Load a checkpoint file as a dict with ``weights_only=True``.

    ``expect`` is a :data:`KINDS` id (``"pathfinder"``, ``"affinity"``, ``"ibp"``, ``"bc"``, ``"ppo"``): a
    checkpoint recognised as another kind is refused with both named. Unrecognised ones pass.

    Raises
    ------
    FileNotFoundError : no such file.
    CheckpointError : the file is empty, truncated, not a PyTorch checkpoint, holds pickled objects other
        than tensors and plain containers (refused unread: it could run code), or is not a dict.
    """
    p = check_existing_path(path, name="checkpoint", kind="file")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"checkpoint {p} is empty (0 bytes): it was never written completely; copy it again or use another one"
        )
    with open(p, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
    if zipped and not zipfile.is_zipfile(p):
        raise CheckpointError(
            f"checkpoint {p} is truncated or corrupt ({size} bytes, not a complete archive); "
            "copy it again or use another one"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4 detected": we refuse or load anyway
            ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):  # the weights-only reader met a class or function reference
            raise CheckpointError(
                f"refused checkpoint {p} (read with weights_only=True): it holds pickled Python objects besides "
                "tensors and plain containers, which could run code when loaded; it was not loaded. Save weights "
                "(a state_dict) instead"
            ) from err
        detail = next((line for line in str(err).splitlines() if line.startswith("Unsupported")), "unreadable")
        raise CheckpointError(
            f"checkpoint {p} is not a PyTorch checkpoint (weights-only reader: {detail}); it was not loaded"
        ) from err
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, IndexError) as err:
        what = "truncated or corrupt" if zipped else "not a PyTorch checkpoint"
        raise CheckpointError(
            f"checkpoint {p} is {what} ({size} bytes; torch says: "
            f"{' '.join(str(err).split())[:120] or type(err).__name__})"
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {p} holds a {type(ckpt).__name__}, expected a dict")
    if expect is not None:
        kinds = {k.id: k for k in KINDS}
        if expect not in kinds:
            raise ValueError(f"expect must be one of {sorted(kinds)}, got {expect!r}")
        _check_kind(ckpt, p, kinds[expect])
    return ckpt


def _accepted_arguments(cls: type) -> set[str] | None:
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name != "self"}


def load_lightning_module(cls: type[M], path: str | Path, map_location: str | torch.device | None = "cpu") -> M:
    """Rebuild a LightningModule from a Lightning checkpoint without unpickling code.

    The module is constructed from the saved ``hyper_parameters`` and its ``state_dict`` is loaded strictly.
    Use this instead of ``cls.load_from_checkpoint`` so the weights-only rule holds everywhere.

    Raises
    ------
    CheckpointError : see :func:`load_checkpoint`; also a checkpoint of another subsystem (named), one
        without a ``state_dict``, or one whose weights do not fit its own hyper-parameters.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    kind = next((k for k in KINDS if k.class_name == cls.__name__), None)
    _check_kind(ckpt, Path(path), kind)
    expected = kind.name if kind is not None else f"a {cls.__name__} checkpoint"
    if "state_dict" not in ckpt:
        raise CheckpointError(
            f"checkpoint {path} has no 'state_dict'; is it a Lightning checkpoint? Expected {expected}"
        )
    # LightningCLI adds private bookkeeping keys such as ``_instantiator`` / ``_class_path``: not arguments
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
    accepted = _accepted_arguments(cls)
    unknown = sorted(set(hparams) - accepted) if accepted is not None else []
    if unknown:
        raise CheckpointError(
            f"{path} is not {expected}: its hyper-parameters {unknown} are not arguments of {cls.__name__}"
        )
    try:
        model = cls(**hparams)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError) as err:
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{path} does not rebuild as {expected}: {detail}") from err
    model.eval()
    return model
