"""Benchmark 3: our watershed + mean-affinity agglomeration against waterz on the same affinities (speed).

Ground truth: watershed of smoothed noise seeded at local maxima (lsd's test data: fat convex cells, on
which every method reaches ARAND about 0; quality on thin neurites is benchmarks/segmentation_quality.py);
affinities ``clip(0.8 * same_object + 0.1 + sigma * noise)`` (nearest neighbours, waterz convention). Two
comparisons:

* **pipeline**: affinities -> segmentation at each threshold (ours: :func:`segment_in_memory` with the
  default settings: waterz's watershed, blocks of 64x256x256 joined through face links, region graph,
  agglomeration; waterz: its watershed + agglomeration);
* **agglomeration**: the same fragments (:func:`waterz_fragments`) given to both; region graph +
  mean-affinity agglomeration.

Both sides run once on a small volume first (excluded): numba compiles (or loads from its cache) our
kernels, and waterz compiles (or loads) its C++ agglomeration module; that first-call time is printed too.
Timings are the best of ``--repeats`` runs.

Targets: time ours / waterz <= 1.0, adapted Rand error against ground truth no worse than waterz's + 0.01.
waterz prints progress from C++; it is silenced at the file-descriptor level.

    .venv/bin/python benchmarks/agglomeration_vs_waterz.py [--shape 48,160,160] [--sigma 0.15] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import waterz
from scipy import ndimage
from skimage.segmentation import watershed

from connectomics.blocks import Roi, parse_coordinate
from connectomics.metrics import adapted_rand_error
from connectomics.segment import (
    NEAREST_NEIGHBOUR_OFFSETS,
    agglomerate,
    block_region_graph,
    nearest_neighbour_channels,
    relabel,
    segment_in_memory,
    waterz_fragments,
)
from shared.stdio import quiet_stdout


def make_data(shape: tuple[int, int, int], sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random(shape), (3, 8, 8))
    seeds, _ = ndimage.label(noise == ndimage.maximum_filter(noise, size=(9, 25, 25)))
    gt = watershed(-noise, seeds).astype(np.uint64)
    affs = np.zeros((3,) + shape, np.float32)
    affs[0, 1:] = gt[1:] == gt[:-1]
    affs[1, :, 1:] = gt[:, 1:] == gt[:, :-1]
    affs[2, :, :, 1:] = gt[:, :, 1:] == gt[:, :, :-1]
    affs = np.clip(0.8 * affs + 0.1 + sigma * rng.standard_normal(affs.shape), 0, 1).astype(np.float32)
    return gt, affs


def best_of(repeats: int, run):
    """(fastest wall time in seconds, result of the last run) of ``repeats`` calls of ``run()``."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="48,160,160")
    parser.add_argument("--sigma", type=float, default=0.15)
    parser.add_argument("--thresholds", default="0.3,0.5")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = parse_coordinate(args.shape, name="--shape")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    gt, affs = make_data(shape, args.sigma)
    print(f"volume {shape}, {len(np.unique(gt))} objects, affinity noise sigma {args.sigma}")

    _, small = make_data((8, 32, 32), args.sigma)
    start = time.perf_counter()
    segment_in_memory(small, NEAREST_NEIGHBOUR_OFFSETS, thresholds=thresholds)
    t_first_ours = time.perf_counter() - start
    start = time.perf_counter()
    with quiet_stdout():
        [s.copy() for s in waterz.agglomerate(small, thresholds)]
    t_first_theirs = time.perf_counter() - start
    print(
        f"warm-up on (8, 32, 32), excluded (numba compile or cache load / waterz module build or load): "
        f"ours {t_first_ours:.2f} s, waterz {t_first_theirs:.2f} s"
    )

    t_ours, ours = best_of(
        args.repeats, lambda: segment_in_memory(affs, NEAREST_NEIGHBOUR_OFFSETS, thresholds=thresholds)
    )

    def run_waterz(**kwargs):
        with quiet_stdout():
            return [s.copy() for s in waterz.agglomerate(affs, thresholds, **kwargs)]

    t_theirs, theirs = best_of(args.repeats, run_waterz)
    print(
        f"pipeline (affinities -> segmentations): ours {t_ours:.2f} s, waterz {t_theirs:.2f} s, "
        f"time ratio {t_ours / t_theirs:.2f} (target <= 1.0)"
    )
    for t, seg_w in zip(thresholds, theirs):
        a_ours, a_w = adapted_rand_error(ours[t], gt).error, adapted_rand_error(seg_w, gt).error
        print(
            f"  threshold {t}: ARAND ours {a_ours:.4f}, waterz {a_w:.4f}, difference {a_ours - a_w:+.4f} "
            f"(target <= +0.01)"
        )

    fragments = waterz_fragments(affs).astype(np.uint64)
    nn = nearest_neighbour_channels(NEAREST_NEIGHBOUR_OFFSETS)
    volume = Roi((0, 0, 0), shape)

    def run_ours():
        start = time.perf_counter()
        graph = block_region_graph(fragments, affs, volume, volume, nn)
        split = time.perf_counter() - start
        luts = agglomerate(graph, thresholds=thresholds)
        return graph, split, {t: relabel(fragments, graph.fragments, lut) for t, lut in luts.items()}

    t_ours, (graph, t_graph, ours) = best_of(args.repeats, run_ours)
    t_theirs, theirs = best_of(args.repeats, lambda: run_waterz(fragments=fragments.copy()))
    print(
        f"agglomeration of the same {len(graph.fragments)} fragments: ours {t_ours:.2f} s, waterz "
        f"{t_theirs:.2f} s, time ratio {t_ours / t_theirs:.2f} (target <= 1.0); of ours, region graph "
        f"{t_graph:.2f} s"
    )
    for t, seg_w in zip(thresholds, theirs):
        a_ours, a_w = adapted_rand_error(ours[t], gt).error, adapted_rand_error(seg_w, gt).error
        same = adapted_rand_error(ours[t], seg_w).error
        print(
            f"  threshold {t}: ARAND ours {a_ours:.4f}, waterz {a_w:.4f}, difference {a_ours - a_w:+.4f}; "
            f"ours against waterz {same:.4f}"
        )


if __name__ == "__main__":
    main()
