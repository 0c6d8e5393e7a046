"""The settings of a segmentation run: one object for the in-memory path, the blockwise path, the manifest
and the command line.

Examples
--------
>>> s = SegmentSettings(thresholds=(0.5, 0.3), score="quantile-50")
>>> s.thresholds, s.quantile
((0.3, 0.5), 50)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from connectomics.blocks import as_coordinate, parse_coordinate

FRAGMENT_METHODS = ("waterz", "seeded")
"""``waterz``: steepest-ascent watershed on the affinity graph with low/high thresholds (waterz/zwatershed),
voxels whose strongest edge is <= ``low`` are background; ``seeded``: distance-transform seeds grown by an
edge watershed (suits fat convex cells)."""


def _numbers(text: str) -> tuple[float, ...]:
    """``"0.3,0.5"`` -> ``(0.3, 0.5)`` (a command-line value)."""
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.3,0.5, got {text!r}") from None


def _coordinate(text: str) -> tuple[int, ...]:
    """``"8,64,64"`` (or ``"64"``, broadcast) -> a (plane, row, column) coordinate (a command-line value)."""
    try:
        return parse_coordinate(text, name="the value")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _show(values: tuple) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


_NUMBERS = {"parse": _numbers, "show": _show}
_COORDINATE = {"parse": _coordinate, "show": _show}


@dataclass(frozen=True)
class SegmentSettings:
    """Everything that decides a segmentation (not where it runs); one command-line option per field
    (:func:`shared.cli.add_dataclass_arguments`), documented under each field."""

    thresholds: tuple[float, ...] = field(default=(0.5,), metadata=_NUMBERS)
    """comma-separated agglomeration thresholds on the merge score (1 - affinity statistic, waterz's
    convention: higher thresholds merge more); stored sorted and distinct"""
    fragments: str = field(default="waterz", metadata={"choices": FRAGMENT_METHODS})
    """fragment method (see FRAGMENT_METHODS)"""
    low: float = 0.0001
    """waterz fragments: edges <= this join nothing; a voxel with no stronger edge is background 0 (waterz's
    aff_threshold_low)"""
    high: float = 0.9999
    """waterz fragments: edges >= this always join (waterz's aff_threshold_high)"""
    size_threshold: int = 0
    """waterz fragments: merge fragments smaller than this (voxels) inside each block's read ROI into their
    neighbour of highest maximum affinity (zwatershed's size merge,
    connectomics.segment.watershed.merge_small_fragments); 0 = off. On noisy affinities it cuts the number of
    fragments and region-graph edges about tenfold (less work)"""
    merge_low: float = 0.5
    """waterz fragments: the size merge needs a maximum affinity >= this"""
    seed_threshold: float = 0.5
    """seeded fragments: boundary < this is seed interior (see connectomics.segment.watershed.seeded_fragments)"""
    seed_radius: int = 4
    """seeded fragments: in-plane radius of seed maxima (voxels)"""
    min_seed_distance: float = 2.0
    """seeded fragments: seeds lie at least this far from the boundary (voxels)"""
    score: str = "mean"
    """agglomeration score: mean (waterz's default OneMinus<MeanAffinity>) or quantile-Q
    (OneMinus<HistogramQuantileAffinity<Q, 256 bins>>, e.g. quantile-50, the median)"""
    min_size: int = 0
    """dust removal: segments with fewer voxels become 0"""
    block_shape: tuple[int, int, int] = field(default=(64, 256, 256), metadata={"flag": "--block", **_COORDINATE})
    """block shape Z,Y,X (voxels) of the fragments and of the blockwise processing"""
    context: tuple[int, int, int] = field(default=(4, 16, 16), metadata=_COORDINATE)
    """watershed context Z,Y,X read around each block"""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once here
        set_(self, "thresholds", tuple(sorted({float(t) for t in self.thresholds})))
        set_(self, "block_shape", tuple(as_coordinate(self.block_shape, 3, name="block")))
        set_(self, "context", tuple(as_coordinate(self.context, 3, name="context")))
        if not self.thresholds:
            raise ValueError("at least one threshold is needed")
        if not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(
                f"thresholds are merge scores (1 - affinity statistic) in [0, 1], got "
                f"{', '.join(f'{t:g}' for t in self.thresholds)}"
            )
        if self.fragments not in FRAGMENT_METHODS:
            raise ValueError(f"fragments must be one of {FRAGMENT_METHODS}, got {self.fragments!r}")
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"need 0 <= low < high <= 1, got low {self.low}, high {self.high}")
        if self.score != "mean" and not 0 < self.quantile < 100:
            raise ValueError(f"score must be 'mean' or 'quantile-Q' with 0 < Q < 100, got {self.score!r}")
        if self.min_size < 0 or self.seed_radius < 0 or self.size_threshold < 0:
            raise ValueError("min_size, seed_radius and size_threshold must be >= 0")
        if not 0.0 <= self.merge_low <= 1.0:
            raise ValueError(f"merge_low must lie in [0, 1], got {self.merge_low}")

    @property
    def quantile(self) -> int:
        """The quantile (percent) of a ``quantile-Q`` score, -1 for ``mean``."""
        if self.score == "mean":
            return -1
        name, _, q = self.score.partition("-")
        if name != "quantile" or not q.isdecimal():
            raise ValueError(f"score must be 'mean' or 'quantile-Q' (e.g. quantile-50), got {self.score!r}")
        return int(q)

    @property
    def block_voxels(self) -> int:
        """Voxels of a full read ROI: the id range reserved for each block's fragments."""
        return math.prod(b + 2 * c for b, c in zip(self.block_shape, self.context))

    def to_manifest(self) -> dict[str, Any]:
        """The settings as JSON-ready values (tuples as lists), as recorded in the run's manifest."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> SegmentSettings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def resolve(settings: SegmentSettings | None, options: dict[str, Any]) -> SegmentSettings:
    """``settings`` with ``options`` (field names) applied; the keyword form of the public functions."""
    unknown = set(options) - {f.name for f in dataclasses.fields(SegmentSettings)}
    if unknown:
        raise TypeError(f"unknown segmentation settings {sorted(unknown)}")
    return (settings or SegmentSettings()).replace(**options)
