"""Tracking circuits (issue 17): PathTracker and FeatureTracker, InT and CV-RNN against video baselines.

* :mod:`shared.data.pathtracker` and :mod:`shared.data.featuretracker` generate the stimuli (zarr);
* :class:`~shared.tracking.datamodule.TrackingDataModule` serves them (videos, labels, object masks, conditions);
* :class:`~shared.tracking.module.TrackingClassifier` trains any registered video model (BCE, Adam, synchrony loss);
* ``python -m shared.tracking fit --config configs/tracking/int.yaml`` trains with LightningCLI;
* :mod:`shared.tracking.human` reads human response files and compares them with a model;
* :mod:`shared.tracking.figures` draws example frames;
* :mod:`shared.tracking.demo` is this package's part of ``make demo``.
"""

from shared.tracking.module import TrackingClassifier

__all__ = ["TrackingClassifier"]
