"""Vision-alignment evaluation: score any PyTorch vision model against human and neural data.

Modules (one job each):

* :mod:`~shared.alignment.saliency`: input gradients, SmoothGrad, integrated gradients (memory-bounded);
* :mod:`~shared.alignment.processing`: the published ClickMe human-map processing (resize, blur);
* :mod:`~shared.alignment.scores`: per-image Spearman, the ceiling-normalised alignment score, Dice, IoU;
* :mod:`~shared.alignment.human_maps`: map/image loaders (PNG/NPY folders, NPZ, zarr, ClickMe TFRecords)
  and the split-half human ceiling; :mod:`~shared.alignment.tfrecord`: TFRecord + tf.Example codec;
* :mod:`~shared.alignment.harmonizer`: the harmonizer loss and :class:`HarmonizerCallback`;
* :mod:`~shared.alignment.features`: forward-hook feature extraction;
* :mod:`~shared.alignment.predictivity`: Brain-Score-style neural predictivity and ceilings;
* :mod:`~shared.alignment.behaviour`: error consistency and accuracy-matched comparisons;
* :mod:`~shared.alignment.probes`: sklearn and 3D-PC linear probes;
* :mod:`~shared.alignment.adversarial`: minimal L2 attacks and adversarial alignment;
* :mod:`~shared.alignment.reaction_times`: evidential readouts, uncertainty curves, xi;
* :mod:`~shared.alignment.synthetic`: data with known answers; :mod:`~shared.alignment.evaluate`: end to
  end scoring; :mod:`~shared.alignment.cli`: ``python -m shared.alignment score``;
  :mod:`~shared.alignment.demo`: the ``make demo`` part.

The names below are imported lazily (on first use), so ``python -m shared.alignment --help`` stays fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CLICKME_HUMAN_CEILING": "scores",
    "alignment_score": "scores",
    "spearman_per_image": "scores",
    "HarmonizerCallback": "harmonizer",
    "harmonizer_loss": "harmonizer",
    "input_gradients": "saliency",
    "integrated_gradients": "saliency",
    "saliency_maps": "saliency",
    "smoothgrad": "saliency",
    "score_model": "evaluate",
    "neural_predictivity": "predictivity",
    "error_consistency": "behaviour",
    "adversarial_alignment": "adversarial",
    "reaction_times": "reaction_times",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"shared.alignment.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'shared.alignment' has no attribute {name!r}")
