"""Recurrent and feedforward vision backbones behind one registry.

>>> from shared.backbones import create, list_models
>>> net = create("unet3d", in_channels=1, features=(8, 16), downsample=((1, 2, 2),))
>>> "unet3d" in list_models()
True

Every model shares the forward signature documented in :mod:`shared.backbones.base`. Recurrent models
(``hgru``, ``fgru2d``, ``fgru3d``, ``gammanet2d``, ``gammanet3d``) are built from the cells in
:mod:`shared.backbones.cells` and trained by BPTT, truncated BPTT or C-RBP through
:mod:`shared.recurrence`. The video models of :mod:`shared.backbones.tracking` (``int``, ``cvrnn``,
``convgru``, ``r3d_small``, ``spacetime_transformer``; ``list_models(input_kind="video")``) read
(batch, channel, frame, row, column) and return one logit per video.
"""

from shared.backbones import fgru, gammanet, hgru, resnet, tracking, unet  # noqa: F401  (importing registers models)
from shared.backbones.base import Backbone, BackboneOutput
from shared.backbones.cells import FGRUCell, HGRUCell
from shared.backbones.recurrent import RecurrentBackbone, RecurrentConfig
from shared.backbones.registry import ModelInfo, create, list_models, model_info, register_backbone

__all__ = [
    "Backbone",
    "BackboneOutput",
    "FGRUCell",
    "HGRUCell",
    "ModelInfo",
    "RecurrentBackbone",
    "RecurrentConfig",
    "create",
    "list_models",
    "model_info",
    "register_backbone",
]
