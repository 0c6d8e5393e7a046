"""Tracking circuits (issue 17): PathTracker and FeatureTracker data, models' training and figures."""
