"""Data generators and loaders shared by every subsystem (stimuli are generated, never downloaded).

:mod:`shared.data.pathfinder` generates the Pathfinder contour-integration stimulus;
:mod:`shared.data.pathtracker` and :mod:`shared.data.featuretracker` the PathTracker and FeatureTracker
tracking videos (spline paths from :mod:`shared.data.tracking_paths`, drawing and storage in
:mod:`shared.data.tracking_video`). All store their sets through :mod:`shared.data.zarr_store` (resumable,
config-checked zarr) with per-sample random streams from :mod:`shared.data.sampling`.
"""
