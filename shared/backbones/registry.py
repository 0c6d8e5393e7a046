"""The backbone registry: every model is created by name from a validated config.

Copying timm's habits: a decorator files a plain factory under its name; each family's architecture
config is a dataclass, so an unknown key or a wrong value fails with a message naming it (timm's
``create_model`` silently drops some kwargs; we never do).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import torch.nn as nn

INPUT_KINDS = ("image", "volume", "video")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model besides its weights.

    ``input_kind`` is ``"image"`` (batch, channel, row, column), ``"volume"`` (batch, channel, plane, row,
    column) or ``"video"`` (batch, channel, frame, row, column); left empty it is derived from
    ``spatial_dims`` (2: image, 3: volume).
    """

    name: str
    factory: Callable[[Any], nn.Module]
    config_class: type
    spatial_dims: int
    recurrent: bool
    description: str
    input_kind: str = ""

    def __post_init__(self) -> None:
        if not self.input_kind:
            object.__setattr__(self, "input_kind", "image" if self.spatial_dims == 2 else "volume")
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {', '.join(map(repr, INPUT_KINDS))}; got {self.input_kind!r}")


_REGISTRY: dict[str, ModelInfo] = {}


def register_backbone(
    name: str, config_class: type, *, spatial_dims: int, recurrent: bool, description: str, input_kind: str = ""
):
    """Decorator filing ``factory(config) -> nn.Module`` under ``name`` (``input_kind``: see :class:`ModelInfo`)."""

    def decorator(factory):
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(name, factory, config_class, spatial_dims, recurrent, description, input_kind)
        return factory

    return decorator


def list_models(
    pattern: str = "*", *, spatial_dims: int | None = None, recurrent: bool | None = None, input_kind: str | None = None
) -> list[str]:
    """Registered model names matching a glob ``pattern`` and optional capability filters, sorted.

    Examples
    --------
    >>> from shared.backbones import list_models
    >>> "int" in list_models(input_kind="video") and "hgru" not in list_models(input_kind="video")
    True
    """
    return sorted(
        n
        for n, info in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern)
        and (spatial_dims is None or info.spatial_dims == spatial_dims)
        and (recurrent is None or info.recurrent == recurrent)
        and (input_kind is None or info.input_kind == input_kind)
    )


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model; ``KeyError`` listing the valid names otherwise."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name]


def create(name: str, **config: Any) -> nn.Module:
    """Create a registered backbone from keyword config.

    Raises ``KeyError`` for an unknown model name and ``TypeError``/``ValueError`` naming the key for an
    unknown config key or a bad value.

    Examples
    --------
    >>> from shared.backbones import create
    >>> net = create("unet2d", in_channels=1, features=(8, 16))
    >>> net.spatial_dims
    2
    """
    info = model_info(name)
    cfg = build_config(info.config_class, config, owner=name)
    model = info.factory(cfg)
    model.model_name = name
    return model


def build_config(config_class: type, values: dict[str, Any], *, owner: str):
    """Instantiate a config dataclass from ``values``, checking keys and value types first."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise TypeError(
            f"{owner}: unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(config_class)
    coerced = {}
    for key, value in values.items():
        coerced[key] = _coerce(value, hints[key], f"{owner}.{key}")
    return config_class(**coerced)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a (simple) type annotation; lists become tuples where a tuple is declared."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise TypeError(f"{where}: {value!r} matches none of {annotation}")
    if annotation is type(None):
        if value is not None:
            raise TypeError(f"{where}: expected None, got {value!r}")
        return value
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {', '.join(map(repr, args))}; got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a tuple, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if annotation in (bool, str):
        if not isinstance(value, annotation):
            raise TypeError(f"{where}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
        return value
    return value
