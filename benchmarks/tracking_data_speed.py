"""PathTracker generation speed: our vectorised painter against the reference's per-frame scikit-image loop.

The peer is the drawing loop of ``pathtracker/pathtracker_data_generator`` (main script, "Start drawing here"),
transcribed in :func:`reference_render`: for every frame, ``skimage.draw.polygon`` per dot and
``skimage.draw.polygon_perimeter`` per marker, in the reference's order. Both draw the same tracks (ours, all
floored), so the videos must be identical; the script checks that, then prints the time of each and the ratio.

Run::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/tracking_data_speed.py --n 1000

``--n 1000`` at the published settings (64 frames, 14 + 1 paired distractors) is the "1000 videos in seconds"
target of issue 17. FeatureTracker is timed too (no peer: its reference draws pixel by pixel in Python).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from shared.data.featuretracker import FeatureTrackerConfig, generate_featuretracker
from shared.data.pathtracker import PathTrackerConfig, generate_pathtracker


def reference_render(tracks: np.ndarray, label: int, image_size: int = 32) -> np.ndarray:
    """One video drawn as the reference does. tracks (K, T, 2) int (target, paired, others); -> (T, H, W, 3) uint8."""
    from skimage.draw import polygon, polygon_perimeter

    def rectangle(r0, c0, width, height):
        return polygon([r0, r0 + width, r0 + width, r0], [c0, c0, c0 + height, c0 + height])

    def rectangle_perimeter(r0, c0, width, height):
        return polygon_perimeter([r0, r0 + width, r0 + width, r0], [c0, c0, c0 + height, c0 + height])

    coordinates_2, coordinates_3, coordinates_d = tracks[0], tracks[1], tracks[2:]
    path_length = tracks.shape[1]
    images = np.zeros((path_length, image_size, image_size, 3), dtype=np.uint8)
    for frame in range(path_length):
        for d in coordinates_d:  # (ours are floored, so drawn at +1 like the target; see shared.data.pathtracker)
            rr, cc = rectangle(d[frame][0] + 1, d[frame][1] + 1, 1, 1)
            images[frame, rr, cc] = (0, 255, 0)
        rr, cc = rectangle_perimeter(coordinates_2[0][0], coordinates_2[0][1], 2, 2)
        images[frame, rr, cc] = (255, 0, 0)
        end = coordinates_2[path_length - 1] if label else coordinates_3[path_length - 1]
        rr, cc = rectangle_perimeter(end[0], end[1], 2, 2)
        images[frame, rr, cc] = (0, 0, 255)
        rr, cc = rectangle(coordinates_2[frame][0] + 1, coordinates_2[frame][1] + 1, 1, 1)
        images[frame, rr, cc] = (0, 255, 0)
        rr, cc = rectangle(coordinates_3[frame][0] + 1, coordinates_3[frame][1] + 1, 1, 1)
        images[frame, rr, cc] = (0, 255, 0)
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="videos to generate (default 1000)")
    parser.add_argument("--peer-n", type=int, default=100, help="videos the slower peer loop draws (default 100)")
    args = parser.parse_args()

    config = PathTrackerConfig()
    start = time.perf_counter()
    data = generate_pathtracker(args.n, config=config, seed=0)
    ours = time.perf_counter() - start
    m = min(args.peer_n, args.n)
    start = time.perf_counter()
    peer = np.stack([reference_render(data.tracks[i].astype(int), int(data.labels[i])) for i in range(m)])
    peer_s = (time.perf_counter() - start) * args.n / m  # drawing only, scaled to n videos
    identical = bool((peer == data.videos[:m]).all())
    start = time.perf_counter()
    generate_featuretracker(args.n, config=FeatureTrackerConfig(), seed=0)
    ft = time.perf_counter() - start
    print(
        f"PathTracker {args.n} videos x {config.frames} frames: ours {ours:.2f} s (paths + drawing); reference "
        f"per-frame skimage drawing alone {peer_s:.1f} s (timed on {m}, scaled); ratio {peer_s / ours:.1f}x; "
        f"identical videos: {identical}"
    )
    print(f"FeatureTracker {args.n} videos x 32 frames (idshapes_idcolors): ours {ft:.2f} s")
    if not identical:
        raise SystemExit("the vectorised painter and the reference drawing loop disagree")


if __name__ == "__main__":
    main()
