"""The tracking models of issue 17: video classifiers ``(batch, 3, frame, row, column) -> (batch, 1)`` logits.

>>> from shared.backbones import list_models
>>> list_models(input_kind="video")
['convgru', 'cvrnn', 'int', 'r3d_small', 'spacetime_transformer']

* ``int`` (:mod:`~shared.backbones.tracking.int_circuit`): the InT circuit of PathTracker;
* ``cvrnn`` (:mod:`~shared.backbones.tracking.cvrnn`): the complex-valued CV-RNN of FeatureTracker, its
  real-valued control (``complex_valued=False``), :func:`~shared.backbones.tracking.synchrony.synchrony_loss`;
* baselines at small size: ``r3d_small``, ``convgru``, ``spacetime_transformer``.

The recurrent ones (``int``, ``cvrnn``, ``convgru``) take one step per frame through
:mod:`shared.recurrence`; what ``mode="crbp"`` means for them is in :mod:`shared.backbones.tracking.base`.
"""

from shared.backbones.tracking import convgru, cvrnn, int_circuit, r3d, spacetime_transformer  # noqa: F401
from shared.backbones.tracking.synchrony import synchrony_loss

__all__ = ["synchrony_loss"]
