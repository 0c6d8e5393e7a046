"""Recurrent and feedforward vision backbones behind one registry.

>>> from shared.backbones import create, list_models
>>> net = create("unet3d", in_channels=1, features=(8, 16), downsample=((1, 2, 2),))
>>> "unet3d" in list_models()
True

Every model shares the forward signature documented in :mod:`shared.backbones.base`.
"""

from shared.backbones import resnet, unet  # noqa: F401  (importing a module registers its models)
from shared.backbones.base import Backbone, BackboneOutput
from shared.backbones.registry import ModelInfo, create, list_models, model_info, register_backbone

__all__ = ["Backbone", "BackboneOutput", "ModelInfo", "create", "list_models", "model_info",
           "register_backbone"]
