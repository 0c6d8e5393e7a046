"""Block geometry, done-markers and the dask engine, on small ROIs with hand-counted blocks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectomics.blocks import (
    DoneMarkers,
    Roi,
    block_grid,
    check_chunk_aligned,
    parse_coordinate,
    run_blockwise,
)


def test_roi_operations():
    roi = Roi((2, 0, 4), (3, 5, 6))
    assert roi.end == (5, 5, 10) and roi.size == 90
    assert roi.grow((1, 1, 1)) == Roi((1, -1, 3), (5, 7, 8))
    assert roi.intersect(Roi((0, 0, 0), (4, 4, 4))) == Roi((2, 0, 4), (2, 4, 0))
    assert roi.intersect(Roi((0, 0, 0), (4, 4, 4))).empty()
    assert roi.to_slices(relative_to=Roi((1, 0, 0), (9, 9, 9))) == (slice(1, 4), slice(0, 5), slice(4, 10))
    assert Roi.parse("0:4,10:20,5:6") == Roi((0, 10, 5), (4, 10, 1))
    with pytest.raises(ValueError, match="empty"):
        Roi.parse("4:4,0:1,0:1")
    with pytest.raises(ValueError, match="z0:z1"):
        Roi.parse("0-4")
    assert parse_coordinate("8", name="--block") == (8, 8, 8)
    with pytest.raises(ValueError, match="3 values"):
        parse_coordinate("1,2", name="--block")


def test_1d_tiling_hand_counted():
    # volume [0, 10), blocks of 4, context 1: write [0,4) [4,8) [8,10); reads clipped to the volume
    blocks = block_grid(Roi((0,), (10,)), (4,), 1)
    assert [(b.block_id, b.write_roi.begin[0], b.write_roi.end[0]) for b in blocks] == [
        (0, 0, 4),
        (1, 4, 8),
        (2, 8, 10),
    ]
    assert [(b.read_roi.begin[0], b.read_roi.end[0]) for b in blocks] == [(0, 5), (3, 9), (7, 10)]
    # ROI [3, 9) inside the volume: the grid stays anchored at 0, ids stay those of the full grid
    blocks = block_grid(Roi((3,), (6,)), (4,), 2, volume_roi=Roi((0,), (10,)))
    assert [(b.block_id, b.write_roi.begin[0], b.write_roi.end[0]) for b in blocks] == [(0, 3, 4), (1, 4, 8), (2, 8, 9)]
    assert [(b.read_roi.begin[0], b.read_roi.end[0]) for b in blocks] == [(1, 6), (2, 10), (6, 10)]


def test_3d_tiling_covers_each_voxel_once():
    total = Roi((0, 0, 0), (5, 7, 9))
    blocks = block_grid(total, (2, 4, 4), (1, 2, 2))
    assert len(blocks) == 3 * 2 * 3
    assert sorted(b.block_id for b in blocks) == list(range(18))
    assert sum(b.write_roi.size for b in blocks) == total.size
    for b in blocks:
        assert total.contains(b.read_roi) and b.read_roi.contains(b.write_roi)
    with pytest.raises(ValueError, match="not inside the volume"):
        block_grid(Roi((0, 0, 0), (6, 7, 9)), (2, 4, 4), volume_roi=total)


def test_chunk_alignment_check():
    check_chunk_aligned((32, 128, 128), (16, 64, 64), what="out")
    with pytest.raises(ValueError, match=r"e\.g\. \(32, 128, 192\)"):
        check_chunk_aligned((32, 128, 130), (16, 64, 64), what="out")


def test_markers_and_stages(tmp_path):
    markers = DoneMarkers(tmp_path / "done")
    assert markers.done_ids() == set()
    markers.mark(7)
    assert markers.is_done(7) and markers.done_ids() == {7}
    # stages of one job share the folder; each sees only its own markers
    fragments, graph = DoneMarkers(tmp_path / "done", stage="fragments"), DoneMarkers(tmp_path / "done", stage="g")
    fragments.mark(3)
    assert (tmp_path / "done/fragments-3").exists() and fragments.done_ids() == {3} and graph.done_ids() == set()
    assert markers.done_ids() == {7}


class Recorder:
    """A picklable process function that fails on one block id."""

    def __init__(self, folder, fail_on: int) -> None:
        self.folder, self.fail_on = folder, fail_on

    def __call__(self, block) -> None:
        if block.block_id == self.fail_on:
            raise OSError("disk full")
        (self.folder / f"wrote-{block.block_id}").write_text("")


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_engine_skips_done_and_contains_failures(tmp_path, scheduler):
    blocks = block_grid(Roi((0, 0, 0), (4, 4, 4)), (2, 2, 2))
    markers = DoneMarkers(tmp_path / "done")
    markers.mark(0)
    result = run_blockwise(Recorder(tmp_path, fail_on=3), blocks, markers, scheduler=scheduler, progress=False)
    assert result.n_blocks == 8 and result.n_already_done == 1 and result.n_processed == 6
    assert list(result.failed) == [3] and "disk full" in result.failed[3]
    assert not (tmp_path / "wrote-0").exists()  # skipped: already done
    assert markers.done_ids() == {0, 1, 2, 4, 5, 6, 7}  # the failed block has no marker
    with pytest.raises(RuntimeError, match="1 of 8 blocks failed"):
        result.raise_for_failures("test")
    again = run_blockwise(Recorder(tmp_path, fail_on=-1), blocks, markers, scheduler=scheduler, progress=False)
    assert again.n_processed == 1 and not again.failed


def test_engine_records_failures_in_the_job_of_the_output(tmp_path):
    """With a shared.jobs job, markers live in <out>/.job/done and a failed block's error and traceback in
    <out>/.job/failed/<id>.json (cleared once it succeeds); the error is JobIncompleteError (exit code 1)."""
    from shared.jobs import JobIncompleteError, open_job

    blocks = block_grid(Roi((0, 0, 0), (4, 4, 4)), (2, 2, 2))
    with open_job(tmp_path / "out", "test", {}) as job:
        result = run_blockwise(Recorder(tmp_path, fail_on=5), blocks, DoneMarkers.of_job(job), progress=False)
    record = json.loads((tmp_path / "out/.job/failed/5.json").read_text())
    assert record["error"] == "OSError: disk full" and record["attempts"] == 1 and record["traceback"]
    assert job.done_units() == {str(i) for i in range(8) if i != 5}
    with pytest.raises(JobIncompleteError, match=r"1 of 8 blocks failed .*block 5: OSError: disk full") as err:
        result.raise_for_failures("test", records=job.folder / "failed")
    assert err.value.exit_code == 1 and isinstance(err.value, RuntimeError)
    with open_job(tmp_path / "out", "test", {}) as job:
        run_blockwise(Recorder(tmp_path, fail_on=-1), blocks, DoneMarkers.of_job(job), progress=False)
    assert job.failed_units() == {} and len(job.done_units()) == 8


# ------------------------------------------------------------------------------- property: the block grid
@st.composite
def grids(draw):
    """A volume (any offset), an ROI inside it, a block shape, a context and a grid origin."""
    ndim = draw(st.integers(1, 3))
    offset = tuple(draw(st.integers(-5, 5)) for _ in range(ndim))
    shape = tuple(draw(st.integers(1, 12)) for _ in range(ndim))
    volume = Roi(offset, shape)
    begin = tuple(draw(st.integers(o, o + s - 1)) for o, s in zip(offset, shape))
    end = tuple(draw(st.integers(b + 1, o + s)) for b, o, s in zip(begin, offset, shape))
    block = tuple(draw(st.integers(1, 7)) for _ in range(ndim))
    context = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    origin = draw(st.none() | st.just(tuple(o - draw(st.integers(0, 3)) for o in offset)))
    return volume, Roi.from_bounds(begin, end), block, context, origin


@settings(max_examples=100, deadline=None)
@given(grid=grids())
def test_blocks_tile_the_roi_once_and_read_inside_the_volume(grid):
    volume, roi, block, context, origin = grid
    blocks = block_grid(roi, block, context, volume_roi=volume, origin=origin)
    # write ROIs cover every voxel of the ROI exactly once and nothing outside it
    count = np.zeros(volume.shape, np.int32)
    for b in blocks:
        assert not b.write_roi.empty() and roi.contains(b.write_roi)
        count[b.write_roi.to_slices(relative_to=volume)] += 1
    inside = np.zeros(volume.shape, bool)
    inside[roi.to_slices(relative_to=volume)] = True
    assert (count[inside] == 1).all() and (count[~inside] == 0).all()
    # each block is its grid cell cut to the ROI; its read ROI is the context around it, clipped to the volume
    anchor = volume.offset if origin is None else origin
    for b in blocks:
        cell = Roi(tuple(a + i * s for a, i, s in zip(anchor, b.grid_index, block)), block)
        assert b.write_roi == cell.intersect(roi)
        assert b.read_roi == b.write_roi.grow(context).intersect(volume)
        assert volume.contains(b.read_roi) and b.read_roi.contains(b.write_roi)
    # ids are unique and depend on the grid cell only, not on the ROI asked for
    assert len({b.block_id for b in blocks}) == len(blocks)
    whole = {b.grid_index: b.block_id for b in block_grid(volume, block, context, volume_roi=volume, origin=origin)}
    assert all(whole[b.grid_index] == b.block_id for b in blocks)
