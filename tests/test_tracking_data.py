"""PathTracker and FeatureTracker generators, their zarr store, the tracking DataModule and the frames figure.

Reference rules (``pathtracker/pathtracker_data_generator``, ``S4b1n3/feature_tracker``) are transcribed below
as the expected behaviour where the generators port them.
"""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
import pytest

from shared.data.featuretracker import (
    FEATURETRACKER_CONDITIONS,
    FeatureTrackerConfig,
    game_of_life_step,
    generate_featuretracker,
    load_featuretracker_zarr,
    write_featuretracker_zarr,
)
from shared.data.pathtracker import (
    PATHTRACKER_AXES,
    PathTrackerConfig,
    config_for_condition,
    generate_pathtracker,
    load_pathtracker_zarr,
    write_pathtracker_zarr,
)
from shared.data.tracking_paths import curve_length, curves_from_draws, gencoord_curves, sample_tracks

PT = PathTrackerConfig(frames=12, num_distractors=4)
FT = FeatureTrackerConfig(frames=10, num_distractors=4)
RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def pt_set():
    return generate_pathtracker(12, config=PT, seed=(5, 0))


@pytest.fixture(scope="module")
def ft_sets():
    return {
        c: generate_featuretracker(8, config=dataclasses.replace(FT, condition=c), seed=(6, 0))
        for c in ("idshapes_idcolors", "oodshapes_oodcolors", "noshapes_nocolors", "idshapes_irregularcolors")
    }


def _colours(videos: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(c) for c in np.unique(videos.reshape(-1, 3), axis=0).tolist()}


# ------------------------------------------------------------------------------------------------ paths


def _reference_get_coordinates(a, op, d_angles, direction, *, rigidity=0.95, distance=0.002, win=27.0):
    """``GenCoord.get_coordinates`` transcribed, with its random draws passed in."""
    coordinates = [np.asarray(a, float)]
    angle_list = [np.arctan2(a[1], a[0])]
    k = 0
    for i, d_ang in enumerate(d_angles):
        ang = rigidity * (angle_list[i] + d_ang if op == "add" else angle_list[i] - d_ang)
        angle_list.append(ang)
        for _ in range(5):
            b = np.array(
                (
                    np.cos(np.radians(ang)) * distance + coordinates[k][0],
                    np.sin(np.radians(ang)) * distance + coordinates[k][1],
                )
            )
            coordinates.append(b)
            k += 1
    c = np.array(coordinates)
    scaled = (c - c.min(0)) / (c.max(0) - c.min(0)) * win
    return scaled if direction else scaled[::-1]


def test_spline_curves_match_the_transcribed_reference():
    rng = np.random.default_rng(0)
    n, steps = 3, 65
    seeds = rng.random((n, 2)) * 200
    ops = ["add", "sub", "sub"]
    choices = np.arange(0, 90, 0.95)
    d = choices[rng.integers(0, choices.size, (n, steps))]
    direction = [1, 0, 1]
    ours = curves_from_draws(seeds, np.array([1.0, -1.0, -1.0]), d, np.array([dr == 0 for dr in direction]))
    assert ours.shape == (n, curve_length(), 2) == (n, 326, 2)
    for k in range(n):
        expected = _reference_get_coordinates(seeds[k], ops[k], d[k], direction[k])
        np.testing.assert_allclose(ours[k], expected, atol=1e-9)


def test_tracks_are_stride_speed_slices_of_one_curve():
    for speed in (1, 2, 4):
        rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
        curves = gencoord_curves(rng_a, 4)
        same = gencoord_curves(rng_b, 4)
        offsets = rng_b.integers(0, curves.shape[1] - 16 * speed + 1, 4)  # the draw sample_tracks makes next
        tracks = sample_tracks(rng_a, curves, frames=16, speed=speed)
        for k in range(4):
            expected = np.floor(same[k, offsets[k] : offsets[k] + 16 * speed : speed])
            np.testing.assert_array_equal(tracks[k], expected)
    # faster dots travel further per frame (about `speed` times)
    tracks = {s: generate_pathtracker(8, config=dataclasses.replace(PT, speed=s), seed=1).tracks for s in (1, 4)}
    step = {s: np.abs(np.diff(t.astype(float), axis=2)).max(-1).mean() for s, t in tracks.items()}
    assert step[4] > 2.5 * step[1]
    with pytest.raises(ValueError, match="exceeds the 326 points"):
        PathTrackerConfig(frames=128, speed=4)


# ------------------------------------------------------------------------------------------------ PathTracker


def test_pathtracker_deterministic_index_independent_and_balanced(pt_set):
    again = generate_pathtracker(12, config=PT, seed=(5, 0))
    part = generate_pathtracker(12, config=PT, seed=(5, 0), indices=[3, 11])
    other = generate_pathtracker(12, config=PT, seed=(6, 0))
    np.testing.assert_array_equal(pt_set.videos, again.videos)
    np.testing.assert_array_equal(pt_set.videos[[3, 11]], part.videos)
    np.testing.assert_array_equal(pt_set.masks[[3, 11]], part.masks)
    assert not np.array_equal(pt_set.videos, other.videos)
    assert pt_set.videos.shape == (12, 12, 32, 32, 3) and pt_set.videos.dtype == np.uint8
    assert pt_set.masks.shape == (12, 12, 32, 32) and pt_set.labels.dtype == np.int64
    assert int(pt_set.labels.sum()) == 6
    assert int(generate_pathtracker(7, config=PT, seed=0).labels.sum()) == 4
    assert _colours(pt_set.videos) <= {(0, 0, 0), (0, 255, 0), RED, BLUE}


def _box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(pixels)
    return rows.min(), rows.max(), cols.min(), cols.max()


def _inside(pixels: np.ndarray, box) -> bool:
    rows, cols = np.nonzero(pixels)
    return rows.size > 0 and bool(
        (rows >= box[0]).all() and (rows <= box[1]).all() and (cols >= box[2]).all() and (cols <= box[3]).all()
    )


def _marker_boxes(data, v: int, side: int):
    """The (red, blue) marker boxes, checked against the pixels: every visible marker pixel (mask 1) of that
    colour, over all frames, lies in the box of ``side`` at the recorded corner, and some are visible."""
    is_marker = data.masks[v] == 1
    boxes = []
    for corner, colour in zip(data.markers[v].astype(int), (RED, BLUE)):
        box = (corner[0], corner[0] + side - 1, corner[1], corner[1] + side - 1)
        assert _inside((is_marker & (data.videos[v] == colour).all(-1)).any(0), box)
        boxes.append(box)
    return boxes


def test_pathtracker_labels_follow_from_masks_and_markers(pt_set):
    for v in range(len(pt_set)):
        mask, label = pt_set.masks[v], pt_set.labels[v]
        red, blue = _marker_boxes(pt_set, v, 3)
        assert _inside(mask[0] == 2, red)  # the target starts under the red marker
        assert _inside(mask[-1] == 2, blue) == bool(label)  # ... and ends under the blue one iff positive
        if not label:
            assert _inside(mask[-1] == 3, blue)  # negatives: the paired distractor ends there
        # no other dot starts under the red marker, so "the dot that leaves the start" is well defined
        assert set(np.unique(mask[0][red[0] : red[1] + 1, red[2] : red[3] + 1])) <= {1, 2}


def test_pathtracker_objects_markers_and_reference_footprints(pt_set):
    from skimage.draw import polygon, polygon_perimeter

    k = 2 + PT.num_distractors
    assert pt_set.tracks.shape == (12, k, 12, 2)
    for v in range(len(pt_set)):
        ids = set(np.unique(pt_set.masks[v]).tolist())
        assert ids == {0, 1, *range(2, 2 + k)}  # markers, target, paired and every other distractor visible
        start, goal = pt_set.markers[v].astype(int)
        for (r, c), colour in ((start, RED), (goal, BLUE)):
            rr, cc = polygon_perimeter([r, r + 2, r + 2, r], [c, c, c + 2, c + 2])  # the reference's marker
            ring = pt_set.masks[v][:, rr, cc]
            # in every frame each outline pixel shows a marker or a dot drawn over it (target or paired)
            assert np.isin(ring, [1, 2, 3]).all()
            shows = pt_set.videos[v][:, rr, cc][ring == 1]
            assert ((shows == colour).all(-1) | (shows == (BLUE if colour == RED else RED)).all(-1)).all()
    # the paired distractor has the target's length and speed; its dot is the reference's rectangle(r+1, c+1, 1, 1)
    r, c = pt_set.tracks[0, 1, 0].astype(int)
    rr, cc = polygon([r + 1, r + 2, r + 2, r + 1], [c + 1, c + 1, c + 2, c + 2])
    assert (pt_set.masks[0, 0][rr, cc] == 3).all() and len(rr) == PT.dot_size**2


def test_pathtracker_videos_equal_the_reference_drawing_loop(pt_set):
    """The vectorised painter draws exactly what the reference's per-frame scikit-image loop draws."""
    import importlib.util
    from pathlib import Path

    # the transcription lives in the benchmark that times it (benchmarks/ is not a package)
    spec = importlib.util.spec_from_file_location(
        "tracking_data_speed", Path(__file__).resolve().parents[1] / "benchmarks" / "tracking_data_speed.py"
    )
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    reference_render = benchmark.reference_render

    for v in range(4):
        expected = reference_render(pt_set.tracks[v].astype(int), int(pt_set.labels[v]))
        np.testing.assert_array_equal(pt_set.videos[v], expected)


def test_pathtracker_axes_and_conditions():
    assert PATHTRACKER_AXES == {"distractors": (0, 5, 14, 25), "length": (32, 64, 128), "speed": (1, 2, 4)}
    base = PathTrackerConfig()
    assert (base.image_size, base.frames, base.num_distractors, base.speed) == (32, 64, 14, 1)
    assert config_for_condition(base, "distractors=25").num_distractors == 25
    assert config_for_condition(base, "speed=4").speed == 4
    with pytest.raises(ValueError, match="axis=value"):
        config_for_condition(base, "clutter=3")
    none = generate_pathtracker(2, config=PathTrackerConfig(frames=8, num_distractors=0), seed=0)
    assert set(np.unique(none.masks).tolist()) == {0, 1, 2, 3}  # the paired distractor is always there
    assert PathTrackerConfig.from_dict(base.to_dict()) == base


# ------------------------------------------------------------------------------------------------ FeatureTracker


def _reference_update(grid: np.ndarray, rule: str) -> np.ndarray:
    """``Shape_ID.update`` / ``Shape_OOD.update`` transcribed (without the reseed)."""
    n = grid.shape[0]
    new = np.zeros_like(grid)
    for i in range(n):
        for j in range(n):
            neighbors = np.sum(grid[max(0, i - 1) : min(n, i + 2), max(0, j - 1) : min(n, j + 2)]) - grid[i, j]
            if rule == "ood" and grid[i, j] == 1 and (neighbors < 2 or neighbors > 3):
                new[i, j] = 0
            elif rule == "id" and grid[i, j] == 0 and neighbors == 3:
                new[i, j] = 1
            else:
                new[i, j] = grid[i, j]
    return new


def test_game_of_life_half_rules_by_hand_and_against_the_reference():
    blinker = np.zeros((5, 5), int)
    blinker[2, 1:4] = 1
    birth = game_of_life_step(blinker.astype(bool), "id").astype(int)
    assert birth[1:4, 1:4].tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # cells above/below are born
    death = game_of_life_step(blinker.astype(bool), "ood").astype(int)
    assert death[2].tolist() == [0, 0, 1, 0, 0]  # the two ends (1 neighbour) die, nothing is born
    rng = np.random.default_rng(0)
    grids = rng.integers(0, 2, (50, 5, 5))
    for rule in ("id", "ood"):
        ours = game_of_life_step(grids.astype(bool), rule)
        for g, o in zip(grids, ours):
            np.testing.assert_array_equal(o.astype(int), _reference_update(g, rule))


def test_featuretracker_shapes_follow_their_rule_in_the_videos(ft_sets):
    for condition, rule in (("idshapes_idcolors", "id"), ("oodshapes_oodcolors", "ood")):
        data = ft_sets[condition]
        for v in range(len(data)):
            (r, c) = data.tracks[v, 0, 0].astype(int)
            grids = [
                data.masks[v, t][r0 : r0 + 5, c0 : c0 + 5] == 2
                for t, (r0, c0) in enumerate(data.tracks[v, 0].astype(int))
            ]  # the target is drawn on top
            assert grids[0].any() and not grids[0][[0, -1]].any() and not grids[0][:, [0, -1]].any()
            for t in range(len(grids) - 2):
                expected = game_of_life_step(grids[t], rule)
                if expected.any():  # an emptied grid is reseeded
                    np.testing.assert_array_equal(grids[t + 1], expected)
            last = grids[-1]
            assert last.any() and not last[[0, -1]].any() and not last[:, [0, -1]].any()  # Shape.end()
    still = ft_sets["noshapes_nocolors"]
    assert (still.masks == 2).sum(axis=(2, 3)).min() == 9  # a filled 3x3 square in every frame
    assert _colours(still.videos) <= {(0, 0, 0), (0, 255, 0), RED, BLUE}


def _reference_plot_frame(frame, shapes, colours, t, target, distractors, goal):
    """``utils_drawing.plot_frame`` transcribed (``plot_objects`` per object, the reference's order), without
    its second drawing of the nearest distractor; shapes (K, T, 5, 5), colours (K, T, 3)."""

    def plot_objects(shape, color, x, y):
        for i in range(len(shape)):
            for j in range(len(shape)):
                if shape[i, j]:
                    frame[x + i, y + j] = color

    blob = np.zeros((5, 5), np.uint8)
    blob[0, :] = blob[-1, :] = blob[:, 0] = blob[:, -1] = 1
    plot_objects(blob, RED, *target[0])
    plot_objects(blob, BLUE, *goal)
    for k, d in enumerate(distractors):
        plot_objects(shapes[1 + k, t], colours[1 + k, t], *d[t])
    plot_objects(shapes[0, t], colours[0, t], *target[t])
    return frame


def test_featuretracker_videos_equal_the_reference_drawing(ft_sets):
    from shared.data.featuretracker import _draw_sample, _shape_frames, hsv_to_rgb_uint8, hue_degrees
    from shared.data.sampling import sample_rng

    for condition, half in (("idshapes_idcolors", "id"), ("oodshapes_oodcolors", "ood")):
        data, cfg = ft_sets[condition], dataclasses.replace(FT, condition=condition)
        for v in range(3):
            parts = _draw_sample(sample_rng((6, 0), v), cfg)
            shapes = _shape_frames(parts["start"][None], parts["reseeds"][None], half, cfg.frames)[0]
            colours = hsv_to_rgb_uint8(hue_degrees(cfg.frames, parts["hue_start"], parts["hue_speed"], half))
            tracks = parts["tracks"]
            for t in range(cfg.frames):
                expected = _reference_plot_frame(
                    np.zeros((32, 32, 3), np.uint8), shapes, colours, t, tracks[0], tracks[1:], data.markers[v, 1]
                )
                np.testing.assert_array_equal(data.videos[v, t], expected)


def _hues(data, ids=(2,)) -> np.ndarray:
    pixels = data.videos[np.isin(data.masks, ids)].astype(float) / 255
    return np.array([colorsys.rgb_to_hsv(*p)[0] for p in np.unique(pixels, axis=0)])


def test_featuretracker_hues_stay_in_their_half_and_turn_at_their_speed(ft_sets):
    objects = tuple(range(2, 3 + FT.num_distractors))
    id_hues, ood_hues = _hues(ft_sets["idshapes_idcolors"], objects), _hues(ft_sets["oodshapes_oodcolors"], objects)
    tol = 1 / 360
    assert id_hues.min() >= 0 and id_hues.max() <= 0.5 + tol and id_hues.size > 20
    assert ood_hues.min() >= 0.5 - tol and ood_hues.max() < 1 and ood_hues.size > 20

    def hue_steps(data):  # degrees per frame of each video's target (mod 180), from the frames 0 and 1
        steps = []
        for v in range(len(data)):
            rgb = [data.videos[v, t][data.masks[v, t] == 2][0] / 255 for t in (0, 1)]
            h0, h1 = (colorsys.rgb_to_hsv(*p)[0] * 360 for p in rgb)
            steps.append((h1 - h0) % 180)
        return np.array(steps)

    np.testing.assert_allclose(hue_steps(ft_sets["idshapes_idcolors"]), 360 / 64, atol=1.5)
    irregular = hue_steps(ft_sets["idshapes_irregularcolors"])
    assert (irregular > 0.02 * 360 - 1.5).all() and (irregular < 0.05 * 360 + 1.5).all()
    assert np.ptp(irregular) > 1  # drawn per video


def test_featuretracker_labels_markers_and_nearest_distractor(ft_sets):
    data = ft_sets["idshapes_idcolors"]
    assert int(data.labels.sum()) == 4
    for v in range(len(data)):
        mask, label = data.masks[v], data.labels[v]
        red, blue = _marker_boxes(data, v, 5)
        assert _inside(mask[0] == 2, red)
        assert _inside(mask[-1] == 2, blue) == bool(label)
        ends = data.tracks[v, 1:, -1].astype(float)
        nearest = np.argmin(np.hypot(*(ends - data.tracks[v, 0, -1]).T))
        goal = data.tracks[v, 0, -1] if label else data.tracks[v, 1 + nearest, -1]
        np.testing.assert_array_equal(data.markers[v, 1], goal)
        assert len(set(np.unique(mask).tolist()) - {0, 1, 2}) == FT.num_distractors
    again = generate_featuretracker(8, config=FT, seed=(6, 0), indices=[5])
    np.testing.assert_array_equal(again.videos[0], data.videos[5])
    assert len(FEATURETRACKER_CONDITIONS) == 9 and FT.condition == "idshapes_idcolors"
    with pytest.raises(ValueError, match="unknown FeatureTracker condition"):
        FeatureTrackerConfig(condition="bigshapes")


def test_generators_draw_the_target_path_with_the_reference_settings():
    """The target's track (never redrawn) replays from the video's stream with the reference's spline
    settings: delta_angle_max 90, and 180 for FeatureTracker's irregular paths."""
    from shared.data.sampling import sample_rng
    from shared.data.tracking_paths import spline_tracks

    for condition, delta in (("idshapes_idcolors", 90.0), ("idshapes_idcolors_irregular", 180.0)):
        cfg = dataclasses.replace(FT, condition=condition)
        data = generate_featuretracker(3, config=cfg, seed=(4,))
        for i in range(3):
            replay = spline_tracks(sample_rng((4,), i), cfg.num_objects, frames=cfg.frames, delta_angle_max=delta)
            np.testing.assert_array_equal(data.tracks[i, 0], replay[0])
    data = generate_pathtracker(3, config=PT, seed=(4,))
    replay = spline_tracks(sample_rng((4,), 2), PT.num_objects, frames=PT.frames, window=27.0)
    np.testing.assert_array_equal(data.tracks[2, 0], replay[0])


# ------------------------------------------------------------------------------------------------ zarr


def test_zarr_round_trip_resume_and_config_refusal(tmp_path):
    import zarr

    from shared.jobs import JobConfigError

    path = tmp_path / "pt.zarr"
    write_pathtracker_zarr(path, 6, config=PT, seed=(1, 0), block_size=2, progress=False)
    direct = generate_pathtracker(6, config=PT, seed=(1, 0))
    data = load_pathtracker_zarr(path, expected_config=PT)
    for name in ("videos", "masks", "labels", "tracks", "markers"):
        np.testing.assert_array_equal(getattr(data, name), getattr(direct, name))
    assert data.config == PT and data.seed == (1, 0)

    # an interrupted write (a block without its done-marker) is refused by the loader, resumed by the writer
    group = zarr.open_group(path, mode="r+")
    group["done"][1] = False
    (path / "videos/.job/done/block-1").unlink()
    group["videos"][2:4] = 0
    with pytest.raises(ValueError, match="incomplete"):
        load_pathtracker_zarr(path)
    write_pathtracker_zarr(path, 6, config=PT, seed=(1, 0), block_size=2, progress=False)
    np.testing.assert_array_equal(load_pathtracker_zarr(path).videos, direct.videos)

    other = dataclasses.replace(PT, num_distractors=5)
    with pytest.raises(JobConfigError, match=r"config.num_distractors: stored 4, requested 5") as err:
        write_pathtracker_zarr(path, 6, config=other, seed=(1, 0), block_size=2, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="different configuration") as err:
        load_pathtracker_zarr(path, expected_config=other)
    assert "\n" not in str(err.value)
    write_pathtracker_zarr(path, 4, config=other, seed=0, block_size=2, progress=False, overwrite=True)
    assert load_pathtracker_zarr(path).config.num_distractors == 5

    ft = tmp_path / "ft.zarr"
    write_featuretracker_zarr(ft, 4, config=FT, seed=3, block_size=3, progress=False, num_workers=2)
    np.testing.assert_array_equal(
        load_featuretracker_zarr(ft, expected_config=FT).videos, generate_featuretracker(4, config=FT, seed=3).videos
    )
    with pytest.raises(ValueError, match="not a FeatureTracker dataset"):
        load_featuretracker_zarr(path)


def test_zarr_writer_never_touches_a_foreign_folder(tmp_path):
    import zarr

    from shared.cli import UserError
    from shared.jobs import OutputExistsError

    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(foreign, mode="w").attrs["format"] = "other"
    with pytest.raises(ValueError, match="not a PathTracker dataset"):
        write_pathtracker_zarr(foreign, 2, config=PT, overwrite=True, progress=False)
    assert (foreign / "zarr.json").exists()
    plain = tmp_path / "notes"
    plain.mkdir()
    (plain / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a readable zarr group"):
        write_pathtracker_zarr(plain, 2, config=PT, overwrite=True, progress=False)
    assert (plain / "keep.txt").read_text() == "mine"
    # a PathTracker group without the writer's bookkeeping is refused unless overwrite
    path = tmp_path / "pt.zarr"
    write_pathtracker_zarr(path, 2, config=PT, progress=False)
    import shutil

    shutil.rmtree(path / "videos/.job")
    with pytest.raises(OutputExistsError, match="not written by write_pathtracker_zarr"):
        write_pathtracker_zarr(path, 2, config=PT, progress=False)
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        write_pathtracker_zarr(tmp_path / "file.zarr", 2, config=PT, progress=False)


# ------------------------------------------------------------------------------------------------ datamodule, figure


def test_datamodule_batches_for_both_tasks(tmp_path):
    import torch

    from shared.tracking.datamodule import TrackingDataModule

    dm = TrackingDataModule(
        "pathtracker",
        root=str(tmp_path),
        n_train=4,
        n_val=2,
        n_test=2,
        frames=8,
        num_distractors=2,
        batch_size=3,
        test_conditions=["length=6", "distractors=2"],
    )
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (3, 3, 8, 32, 32) and batch["video"].dtype == torch.float32
    assert 0 <= float(batch["video"].min()) and float(batch["video"].max()) == 1.0
    assert batch["label"].dtype == torch.int64 and batch["mask"].dtype == torch.uint8
    assert batch["mask"].shape == (3, 8, 32, 32) and batch["condition"].tolist() == [0, 0, 0]
    # channel 2 of frame 0 is the blue goal marker (the InT readout reads it)
    video = batch["video"][0]
    assert ((video[2, 0] == 1) & (video[0, 0] == 0) & (video[1, 0] == 0)).sum() >= 5
    dm.setup("test")
    assert dm.condition_names == ["distractors=2,length=8,speed=1", "length=6"]
    batches = list(dm.test_dataloader())
    assert [b["video"].shape[2] for b in batches] == [6, 8]  # one condition per batch
    assert [b["condition"].tolist() for b in batches] == [[1, 1], [0, 0]]
    assert (tmp_path / "pathtracker" / "test-length=6.zarr").is_dir()

    ft = TrackingDataModule(
        "featuretracker",
        root=str(tmp_path),
        n_train=2,
        n_val=2,
        n_test=2,
        frames=6,
        num_distractors=2,
        batch_size=2,
        test_conditions=["oodshapes_oodcolors"],
    )
    ft.prepare_data()
    ft.setup()
    assert next(iter(ft.val_dataloader()))["video"].shape == (2, 3, 6, 32, 32)
    assert ft.condition_names == ["idshapes_idcolors", "oodshapes_oodcolors"]
    assert next(iter(ft.test_dataloader()))["condition"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="task must be one of"):
        TrackingDataModule("mazes", root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown FeatureTracker test condition"):
        TrackingDataModule("featuretracker", root=str(tmp_path), test_conditions=["nope"])


def test_example_frames_figure(tmp_path, pt_set):
    from shared.tracking.figures import plot_example_frames

    png = plot_example_frames(pt_set, tmp_path / "figs" / "frames.png", n_videos=2, frames=[0, 5, 11])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="frames must be indices"):
        plot_example_frames(pt_set, tmp_path / "bad.png", frames=[40])
