"""The affinity network as a plain ``torch.nn.Module``: what inference needs, without Lightning.

:class:`AffinityNet` is a registered 3D backbone whose readout has one channel per affinity offset. Training
wraps the same construction in :class:`connectomics.train.AffinityModel` (a LightningModule with the losses,
logging and optimiser); both keep the backbone under the attribute ``backbone``, so their state dicts have
the same keys (``backbone.*``) and a Lightning checkpoint of an ``AffinityModel`` loads into an
``AffinityNet`` strictly. :func:`load_affinity_net` does that from the checkpoint's ``hyper_parameters`` and
``state_dict``, read with ``weights_only=True``; it imports torch and the backbone registry only, so
``connectomics predict`` workers do not pay for importing Lightning (~175 MiB of resident memory).

Tensors are (batch, channel, plane, row, column); the network maps raw (batch, 1, ...) float32 in [0, 1] to
affinity **logits** (batch, len(offsets), ...), channel ``c`` for ``offsets[c]`` in the convention of
:mod:`connectomics.affinities`.

Example
-------
>>> net = AffinityNet("unet3d", {"features": [4], "norm": "none"})
>>> net(torch.rand(1, 1, 4, 16, 16)).shape
torch.Size([1, 12, 4, 16, 16])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from connectomics.affinities import DEFAULT_OFFSETS, validate_offsets
from shared.backbones import create, model_info

#: The hyper-parameters of an ``AffinityModel`` checkpoint that define the network (the others, such as
#: ``lr``, only matter for training).
NETWORK_HPARAMS = ("backbone", "backbone_config", "offsets")


def affinity_backbone(
    backbone: str, backbone_config: dict[str, Any] | None, offsets: list[list[int]] | None
) -> tuple[torch.nn.Module, dict[str, Any], list[list[int]]]:
    """Validate an affinity network's settings and create its backbone.

    Parameters
    ----------
    backbone : registry name of a 3D model, e.g. ``"gammanet3d"`` or ``"unet3d"``.
    backbone_config : keyword config for :func:`shared.backbones.create`; ``in_channels`` defaults to 1 and
        ``out_channels`` to ``len(offsets)``.
    offsets : affinity offsets (dz, dy, dx), non-positive; None for
        :data:`connectomics.affinities.DEFAULT_OFFSETS` (12 channels).

    Returns
    -------
    (backbone module, the complete backbone config with the defaults filled in, offsets as lists of ints)
    """
    offsets = validate_offsets(offsets if offsets is not None else DEFAULT_OFFSETS)
    info = model_info(backbone)
    if info.input_kind != "volume":
        raise ValueError(
            f"backbone {backbone!r} takes {info.input_kind}s; affinity models need a volume "
            f"backbone such as gammanet3d or unet3d"
        )
    config = dict(backbone_config or {})
    config.setdefault("in_channels", 1)
    config.setdefault("out_channels", len(offsets))
    if config["out_channels"] != len(offsets):
        raise ValueError(
            f"backbone_config.out_channels is {config['out_channels']} but there are "
            f"{len(offsets)} offsets; leave it out to match the offsets"
        )
    return create(backbone, **config), config, offsets


class AffinityNet(torch.nn.Module):
    """Affinity logits from EM raw with a registered 3D backbone (inference module, no Lightning).

    Parameters
    ----------
    backbone, backbone_config, offsets : see :func:`affinity_backbone`.

    Attributes
    ----------
    backbone : the backbone module (state-dict keys ``backbone.*``, as in ``AffinityModel``).
    offsets : the affinity offsets, one per output channel.
    """

    def __init__(
        self,
        backbone: str = "unet3d",
        backbone_config: dict[str, Any] | None = None,
        offsets: list[list[int]] | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.backbone_config, self.offsets = affinity_backbone(backbone, backbone_config, offsets)
        self.backbone_name = backbone

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Affinity logits of shape (batch, len(offsets), plane, row, column) from raw (batch, 1, ...)."""
        return self.backbone(raw)


def load_affinity_net(checkpoint: str | Path, map_location: str | torch.device | None = "cpu") -> AffinityNet:
    """Rebuild the network of an ``AffinityModel`` Lightning checkpoint, in eval mode, without Lightning.

    The checkpoint is read with ``weights_only=True`` (:func:`shared.checkpoints.load_checkpoint`); the
    network is built from its ``hyper_parameters`` (``backbone``, ``backbone_config``, ``offsets``) and the
    ``state_dict`` is loaded strictly, so a checkpoint of another model fails with the missing keys named.

    Raises
    ------
    FileNotFoundError : no such file.
    ValueError : not a weights-only checkpoint, or not one of an affinity model.
    """
    from shared.checkpoints import load_checkpoint

    ckpt = load_checkpoint(checkpoint, map_location=map_location, expect="affinity")
    hparams = ckpt.get("hyper_parameters")
    if "state_dict" not in ckpt or not isinstance(hparams, dict) or "backbone" not in hparams:
        raise ValueError(
            f"checkpoint {checkpoint} is not an affinity-model checkpoint: it needs 'state_dict' "
            f"and 'hyper_parameters' with a 'backbone' (as written by `connectomics fit`)"
        )
    net = AffinityNet(**{k: hparams[k] for k in NETWORK_HPARAMS if k in hparams})
    try:
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise ValueError(
            f"checkpoint {checkpoint} does not match its own hyper-parameters ({hparams['backbone']}): {detail[:400]}"
        ) from err
    return net.eval()
