"""Benchmark 4: segmentation quality on thin neuron shapes, ours against waterz (and mutex watershed).

Input: simulated neural tissue at 40x8x8 nm (:func:`connectomics.simulate.neuron_labels`) in its three
morphology classes (dense: thin neurites among somata, thick dendrites and glia; sparse: branching
processes in large empty gaps; thin: only thin processes); affinities = ground truth + Gaussian
noise clipped to [0, 1] (:func:`connectomics.affinities.noisy_affinities`, waterz convention, background
never has affinity 1). Each method runs once over a sweep of thresholds; for each, the table gives the best
adapted Rand error over the sweep (CREMI convention: ground truth 0 ignored), the best VOI split + merge
over the sweep, the threshold of the best ARAND and the wall time of the whole sweep.

Methods:

* ``ours``: :func:`segment_in_memory` with the default settings (waterz fragments, mean-affinity score;
  the default block 64x256x256 holds the whole volume);
* ``ours-blocks``: the same in memory on the blockwise grid (``--block`` with ``--context``): fragments cut
  at block faces and re-joined through face links;
* ``ours-blockwise``: :func:`segment_blockwise` on that grid through zarr (what ``connectomics segment``
  does), 1 worker thread;
* ``ours-size`` / ``ours-size-blockwise``: ``ours-blocks`` / ``ours-blockwise`` with zwatershed's
  size-based merge of small fragments inside each block (``--size-threshold``, ``--merge-low``; the
  setting that bounds the memory benchmark's region graph);
* ``ours-q50``: the same with the median score (``quantile-50``);
* ``ours-seeded``: the distance-transform seeded fragments (the pre-issue-13 default);
* ``waterz`` / ``waterz-q50``: ``waterz.agglomerate`` with ``OneMinus<MeanAffinity>`` (its default) /
  ``OneMinus<HistogramQuantileAffinity<50, 256 bins>>``;
* ``mws``: mutex watershed (``mwatershed.agglom``) on the nearest-neighbour and long-range affinities
  (:data:`connectomics.affinities.DEFAULT_OFFSETS`): edge weight ``affinity - (1 - t)`` for t in
  :data:`MWS_THRESHOLDS` (positive attracts, negative repels); reported as not run when the package is
  missing.

Targets (issue 13): on every class and noise level, ours (in memory and blockwise) best ARAND <= waterz's
best ARAND + 0.005 and best VOI <= waterz's; time ours / waterz <= 1.0. Timings are wall clock on a shared
machine: read ratios, not absolute values. The first call of each method on a small volume (numba compile
or cache load, waterz module load) is excluded.

    .venv/bin/python benchmarks/segmentation_quality.py [--shape 32,128,128] [--sigmas 0.1,0.3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import numpy as np

from connectomics.affinities import DEFAULT_OFFSETS, NEAREST_OFFSETS, noisy_affinities
from connectomics.blocks import parse_coordinate
from connectomics.io import create_ome_zarr_array, open_volume
from connectomics.metrics import adapted_rand_error, contingency_table, variation_of_information
from connectomics.segment import SegmentSettings, segment_blockwise, segment_in_memory
from connectomics.simulate import MORPHOLOGIES, neuron_labels
from shared.stdio import quiet_stdout

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))
MWS_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)  # one full run each: a coarser sweep


def waterz_sweep(scoring: str) -> Callable[[np.ndarray, np.ndarray], dict[float, np.ndarray]]:
    import waterz

    def run(affs: np.ndarray, _all_affs: np.ndarray) -> dict[float, np.ndarray]:
        with quiet_stdout():
            segs = [s.copy() for s in waterz.agglomerate(affs, list(THRESHOLDS), scoring_function=scoring)]
        return dict(zip(THRESHOLDS, segs))

    return run


def mws_sweep(affs: np.ndarray, all_affs: np.ndarray) -> dict[float, np.ndarray]:
    import mwatershed

    out = {}
    for t in MWS_THRESHOLDS:  # one mutex watershed per bias: it has no hierarchy of thresholds
        out[t] = mwatershed.agglom((all_affs - (1 - t)).astype(np.float64), offsets=DEFAULT_OFFSETS)
    return out


def ours_sweep(**options) -> Callable[[np.ndarray, np.ndarray], dict[float, np.ndarray]]:
    settings = SegmentSettings(thresholds=THRESHOLDS, **options)
    return lambda affs, _all: segment_in_memory(affs, NEAREST_OFFSETS, settings)


def blockwise_sweep(block: tuple[int, ...], context: tuple[int, ...], **options):
    settings = SegmentSettings(thresholds=THRESHOLDS, block_shape=block, context=context, **options)

    def run(affs: np.ndarray, _all: np.ndarray) -> dict[float, np.ndarray]:
        with tempfile.TemporaryDirectory() as tmp:
            array = create_ome_zarr_array(
                f"{tmp}/pred.zarr/affs",
                shape=affs.shape,
                dtype="float32",
                chunks=(3, *block),
                axes=("c", "z", "y", "x"),
                voxel_size=(40.0, 8.0, 8.0),
            )
            array[...] = affs
            array.attrs["affinity_offsets"] = NEAREST_OFFSETS
            summary = segment_blockwise(
                f"{tmp}/pred.zarr/affs", f"{tmp}/seg.zarr", settings, progress=False, workers=1, n_levels=0
            )
            return {t: np.asarray(open_volume(p).data.compute()) for t, p in summary["segmentations"].items()}

    return run


def scores(segs: dict[float, np.ndarray], gt: np.ndarray) -> tuple[float, float, float]:
    """(best ARAND, its threshold, best VOI split + merge) over the sweep."""
    best_arand, best_t, best_voi = np.inf, np.nan, np.inf
    for t, seg in segs.items():
        table = contingency_table(seg, gt)
        arand = adapted_rand_error(table=table).error
        voi = variation_of_information(table=table)
        if arand < best_arand:
            best_arand, best_t = arand, t
        best_voi = min(best_voi, voi.split + voi.merge)
    return best_arand, best_t, best_voi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="32,128,128")
    parser.add_argument("--block", default="16,64,64")
    parser.add_argument("--context", default="2,8,8")
    parser.add_argument("--sigmas", default="0.1,0.3")
    parser.add_argument("--morphologies", default=",".join(MORPHOLOGIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size-threshold", type=int, default=25, help="size merge of the ours-size methods (voxels)")
    parser.add_argument("--merge-low", type=float, default=0.5, help="size merge: lowest maximum affinity")
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated subset of the methods (waterz is always run: it is the reference)",
    )
    args = parser.parse_args()
    shape = parse_coordinate(args.shape, name="--shape")
    block = parse_coordinate(args.block, name="--block")
    context = parse_coordinate(args.context, name="--context")
    size_merge = dict(size_threshold=args.size_threshold, merge_low=args.merge_low)
    methods: dict[str, Callable] = {
        "ours": ours_sweep(),
        "ours-blocks": ours_sweep(block_shape=block, context=context),
        "ours-blockwise": blockwise_sweep(block, context),
        "ours-size": ours_sweep(block_shape=block, context=context, **size_merge),
        "ours-size-blockwise": blockwise_sweep(block, context, **size_merge),
        "ours-q50": ours_sweep(score="quantile-50"),
        "ours-seeded": ours_sweep(fragments="seeded"),
        "waterz": waterz_sweep("OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>"),
        "waterz-q50": waterz_sweep("OneMinus<HistogramQuantileAffinity<RegionGraphType, 50, ScoreValue, 256, false>>"),
    }
    try:
        import mwatershed  # noqa: F401

        methods["mws"] = mws_sweep
    except ImportError as err:
        print(f"mutex watershed not run: mwatershed does not import ({err})")
    if args.methods:
        unknown = set(args.methods.split(",")) - set(methods)
        if unknown:
            parser.error(f"unknown methods {sorted(unknown)}; known: {sorted(methods)}")
        methods = {k: v for k, v in methods.items() if k in args.methods.split(",") or k == "waterz"}
    small = neuron_labels("thin", (8, 32, 32))
    warm = noisy_affinities(small, 0.1, offsets=DEFAULT_OFFSETS)
    for run in methods.values():  # compile / load once, excluded from the timings
        run(np.ascontiguousarray(warm[:3]), warm)
    print(
        f"volume {shape} at 40x8x8 nm, blockwise blocks {block} context {context}, "
        f"{len(THRESHOLDS)} thresholds {THRESHOLDS[0]}..{THRESHOLDS[-1]}"
    )
    print(
        f"{'morphology':>10} {'sigma':>5} {'method':>14} {'ARAND':>7} {'at t':>5} {'VOI':>7} {'time s':>7} "
        f"{'ARAND-waterz':>12} {'VOI-waterz':>10} {'time/waterz':>11}"
    )
    for morphology in args.morphologies.split(","):
        gt = neuron_labels(morphology, shape, seed=args.seed)
        for sigma in (float(s) for s in args.sigmas.split(",")):
            all_affs = noisy_affinities(gt, sigma, seed=args.seed, offsets=DEFAULT_OFFSETS)
            affs = np.ascontiguousarray(all_affs[:3])
            rows = {}
            for name, run in methods.items():
                start = time.perf_counter()
                segs = run(affs, all_affs)
                elapsed = time.perf_counter() - start
                rows[name] = (*scores(segs, gt), elapsed)
            ref = rows["waterz"]
            for name, (arand, t, voi, elapsed) in rows.items():
                print(
                    f"{morphology:>10} {sigma:>5.2f} {name:>14} {arand:7.4f} {t:5.2f} {voi:7.3f} "
                    f"{elapsed:7.2f} {arand - ref[0]:+12.4f} {voi - ref[2]:+10.3f} {elapsed / ref[3]:11.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
