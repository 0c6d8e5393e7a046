"""Pathfinder: train any registered backbone on the contour-integration task.

* :mod:`shared.data.pathfinder` generates the stimuli (zarr);
* :class:`~shared.pathfinder.datamodule.PathfinderDataModule` serves them;
* :class:`~shared.pathfinder.module.PathfinderClassifier` wraps a backbone with the published readout;
* ``python -m shared.pathfinder fit --config configs/pathfinder/hgru.yaml`` trains with LightningCLI;
* :mod:`shared.pathfinder.experiment` compares hGRU with a larger feedforward baseline;
* :mod:`shared.pathfinder.demo` is this package's part of ``make demo``.
"""

from importlib import import_module

__all__ = ["PathfinderClassifier", "PathfinderDataModule", "PathfinderDataset", "count_parameters"]
_HOMES = {
    "PathfinderDataModule": "datamodule",
    "PathfinderDataset": "datamodule",
    "PathfinderClassifier": "module",
    "count_parameters": "module",
}


def __getattr__(name: str):
    # imported on first use, so `python -m shared.pathfinder --help` can answer from its cache without torch
    if name in _HOMES:
        return getattr(import_module(f"shared.pathfinder.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'shared.pathfinder' has no attribute {name!r}")
