"""Data generators and loaders shared by every subsystem (stimuli are generated, never downloaded).

:mod:`shared.data.pathfinder` generates the Pathfinder contour-integration stimulus and stores it as zarr.
"""
