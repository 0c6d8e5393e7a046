"""recurrent-vision's shared core.

Recurrent backbones (:mod:`shared.backbones`), the recurrence engine (:mod:`shared.recurrence`), Pathfinder
data (:mod:`shared.data`), vision-alignment evaluation (:mod:`shared.alignment`) and the small pieces every
subsystem uses: safe checkpoint loading (:mod:`shared.checkpoints`), devices and AMP
(:mod:`shared.devices`), input validation (:mod:`shared.validation`), console commands and LightningCLI
(:mod:`shared.cli`) and the demo report (:mod:`shared.report`).

The domain packages (``connectomics``, ``phenotypic``, ``rldiag``) import from here; nothing here imports
from them.
"""

__version__ = "0.1.0"
