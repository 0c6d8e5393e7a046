"""Pathfinder: train any registered backbone on the contour-integration task.

* :mod:`shared.data.pathfinder` generates the stimuli (zarr);
* :class:`~shared.pathfinder.datamodule.PathfinderDataModule` serves them;
* :class:`~shared.pathfinder.module.PathfinderClassifier` wraps a backbone with the published readout;
* ``python -m shared.pathfinder fit --config configs/pathfinder/hgru.yaml`` trains with LightningCLI;
* :mod:`shared.pathfinder.experiment` compares hGRU with a larger feedforward baseline;
* :mod:`shared.pathfinder.demo` is this package's part of ``make demo``.
"""

from shared.pathfinder.datamodule import PathfinderDataModule, PathfinderDataset
from shared.pathfinder.module import PathfinderClassifier, count_parameters

__all__ = ["PathfinderClassifier", "PathfinderDataModule", "PathfinderDataset", "count_parameters"]
