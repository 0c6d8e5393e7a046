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
from dataclasses import dataclass
from typing import Any

from connectomics.blocks import as_coordinate, parse_coordinate

FRAGMENT_METHODS = ("waterz", "seeded")
"""``waterz``: steepest-ascent watershed on the affinity graph with low/high thresholds (waterz/zwatershed),
voxels whose strongest edge is <= ``low`` are background; ``seeded``: distance-transform seeds grown by an
edge watershed (suits fat convex cells)."""


@dataclass(frozen=True)
class SegmentSettings:
    """Everything that decides a segmentation (not where it runs).

    Attributes
    ----------
    thresholds : agglomeration thresholds on the merge score (``1 - affinity statistic``, waterz's
        convention: higher thresholds merge more); stored sorted and distinct.
    fragments : fragment method, one of :data:`FRAGMENT_METHODS`.
    low, high : ``waterz`` fragments: an edge <= ``low`` joins nothing (a voxel with no stronger edge is
        background 0); edges >= ``high`` always join (waterz's ``aff_threshold_low/high``).
    size_threshold, merge_low : ``waterz`` fragments: zwatershed's size-based merge inside each block's read
        ROI (:func:`connectomics.segment.watershed.merge_small_fragments`): a fragment of fewer than
        ``size_threshold`` voxels joins its neighbour of highest maximum affinity when that affinity is >=
        ``merge_low``. 0 (the default) keeps waterz's fragments unchanged; on noisy affinities a threshold
        cuts the number of fragments and region-graph edges about tenfold (less work).
    seed_threshold, seed_radius, min_seed_distance : ``seeded`` fragments (see
        :func:`connectomics.segment.watershed.seeded_fragments`).
    score : edge score of the agglomeration: ``mean`` (waterz's default ``OneMinus<MeanAffinity>``) or
        ``quantile-Q`` (``OneMinus<HistogramQuantileAffinity<Q, 256 bins>>``, e.g. ``quantile-50``, the
        median).
    min_size : dust removal: segments with fewer voxels become 0.
    block_shape : fragment/processing block (plane, row, column).
    context : read context around each block for the watershed (plane, row, column).
    """

    thresholds: tuple[float, ...] = (0.5,)
    fragments: str = "waterz"
    low: float = 0.0001
    high: float = 0.9999
    size_threshold: int = 0
    merge_low: float = 0.5
    seed_threshold: float = 0.5
    seed_radius: int = 4
    min_seed_distance: float = 2.0
    score: str = "mean"
    min_size: int = 0
    block_shape: tuple[int, int, int] = (64, 256, 256)
    context: tuple[int, int, int] = (4, 16, 16)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once here
        set_(self, "thresholds", tuple(sorted({float(t) for t in self.thresholds})))
        set_(self, "block_shape", tuple(as_coordinate(self.block_shape, 3, name="block")))
        set_(self, "context", tuple(as_coordinate(self.context, 3, name="context")))
        if not self.thresholds:
            raise ValueError("at least one threshold is needed")
        if not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds are merge scores (1 - affinity statistic) in [0, 1], got "
                             f"{', '.join(f'{t:g}' for t in self.thresholds)}")
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

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add one command-line option per setting (defaults from the dataclass)."""
        d = SegmentSettings()
        parser.add_argument("--thresholds", default=",".join(f"{t:g}" for t in d.thresholds),
                            help="comma-separated merge thresholds")
        parser.add_argument("--fragments", default=d.fragments, choices=FRAGMENT_METHODS,
                            help="fragment method")
        parser.add_argument("--low", type=float, default=d.low,
                            help="waterz fragments: edges <= this join nothing (background)")
        parser.add_argument("--high", type=float, default=d.high, help="waterz fragments: edges >= this join")
        parser.add_argument("--size-threshold", type=int, default=d.size_threshold,
                            help="waterz fragments: merge fragments smaller than this (voxels) inside each "
                                 "block into their strongest neighbour (zwatershed); 0 = off")
        parser.add_argument("--merge-low", type=float, default=d.merge_low,
                            help="waterz fragments: the size merge needs a maximum affinity >= this")
        parser.add_argument("--score", default=d.score, help="agglomeration score: mean or quantile-Q")
        parser.add_argument("--min-size", type=int, default=d.min_size,
                            help="dust removal: smaller segments become 0")
        parser.add_argument("--seed-threshold", type=float, default=d.seed_threshold,
                            help="seeded fragments: boundary < this is seed interior")
        parser.add_argument("--seed-radius", type=int, default=d.seed_radius,
                            help="seeded fragments: in-plane radius of seed maxima (voxels)")
        parser.add_argument("--min-seed-distance", type=float, default=d.min_seed_distance,
                            help="seeded fragments: seeds lie at least this far from the boundary (voxels)")
        parser.add_argument("--block", default=",".join(map(str, d.block_shape)),
                            help="block shape Z,Y,X (voxels)")
        parser.add_argument("--context", default=",".join(map(str, d.context)),
                            help="watershed context around each block, Z,Y,X")

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> SegmentSettings:
        """The settings of parsed command-line options (raises ``ValueError`` on bad values)."""
        try:
            thresholds = tuple(float(t) for t in args.thresholds.split(","))
        except ValueError:
            raise ValueError(f"--thresholds must be comma-separated numbers, got {args.thresholds!r}") from None
        return cls(thresholds=thresholds, fragments=args.fragments, low=args.low, high=args.high,
                   size_threshold=args.size_threshold, merge_low=args.merge_low,
                   seed_threshold=args.seed_threshold, seed_radius=args.seed_radius,
                   min_seed_distance=args.min_seed_distance, score=args.score, min_size=args.min_size,
                   block_shape=parse_coordinate(args.block, name="--block"),
                   context=parse_coordinate(args.context, name="--context"))


def resolve(settings: SegmentSettings | None, options: dict[str, Any]) -> SegmentSettings:
    """``settings`` with ``options`` (field names) applied; the keyword form of the public functions."""
    unknown = set(options) - {f.name for f in dataclasses.fields(SegmentSettings)}
    if unknown:
        raise TypeError(f"unknown segmentation settings {sorted(unknown)}")
    return (settings or SegmentSettings()).replace(**options)
