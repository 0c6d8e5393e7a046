"""Metrics: brute-force pair references to 1e-9, skimage's documented differences, blockwise tables, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import skimage.metrics
import zarr

from connectomics.evaluate import cli
from connectomics.io import write_ome_zarr
from connectomics.metrics import (
    adapted_rand_error,
    border_mask,
    contingency_table,
    contingency_table_blockwise,
    cremi_score,
    evaluate_segmentation,
    exclude_voxels,
    merge_tables,
    variation_of_information,
)


def brute_force_rand(
    seg: np.ndarray, gt: np.ndarray, seg_zero: str, self_pairs: bool = True
) -> tuple[float, float, float]:
    """SNEMI3D adapted Rand by counting ordered voxel pairs (self-pairs included) over GT foreground.

    A pair "shares a segment" when both voxels carry the same segment id > 0; with ``seg_zero="label"``
    0 is an ordinary id. A seg-0 voxel paired with itself is a singleton pair, counted with weight 1/n
    (n = all voxels) in the reference (cremi_python) formula; that weight is applied here explicitly.
    ``self_pairs=False`` counts only pairs of distinct voxels (skimage's convention).
    """
    s, g = seg.ravel(), gt.ravel()
    n = s.size
    fg = np.flatnonzero(g != 0)
    same_gt = same_seg = same_both = 0.0
    for i in fg:
        for j in fg:
            if i == j and not self_pairs:
                continue
            sg = g[i] == g[j]
            if seg_zero == "label":
                ss, w = s[i] == s[j], 1.0
            elif s[i] == 0:
                ss, w = i == j, 1.0 / n
            else:
                ss, w = s[i] == s[j], 1.0
            same_gt += sg
            same_seg += w * ss
            same_both += w * (ss and sg)
    precision, recall = same_both / same_seg, same_both / same_gt
    return 1 - 2 * precision * recall / (precision + recall), precision, recall


def brute_force_voi(seg: np.ndarray, gt: np.ndarray, seg_zero: str) -> tuple[float, float]:
    """H(seg|gt), H(gt|seg) in bits from explicit probability tables over GT-foreground voxels."""
    keep = gt.ravel() != 0
    g = gt.ravel()[keep]
    s = seg.ravel()[keep].astype(np.int64)
    if seg_zero == "singletons":  # each seg-0 voxel its own segment (negative ids never collide)
        zero = s == 0
        s[zero] = -np.arange(1, zero.sum() + 1)
    n = len(g)

    def entropy(labels: np.ndarray) -> float:
        _, c = np.unique(labels, return_counts=True)
        p = c / n
        return float(-(p * np.log2(p)).sum())

    joint = entropy(np.stack([g, s], 1).view([("a", g.dtype), ("b", s.dtype)]).ravel())
    return joint - entropy(g), joint - entropy(s)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("seg_zero", ["singletons", "label"])
def test_metrics_match_brute_force(seed, seg_zero):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 4, size=(3, 5, 6)).astype(np.uint64)
    seg = rng.integers(0, 5, size=(3, 5, 6)).astype(np.uint32)
    ref = brute_force_rand(seg, gt, seg_zero)
    got = adapted_rand_error(seg, gt, seg_zero=seg_zero)
    assert got.error == pytest.approx(ref[0], abs=1e-9)
    assert got.precision == pytest.approx(ref[1], abs=1e-9)
    assert got.recall == pytest.approx(ref[2], abs=1e-9)
    split, merge = brute_force_voi(seg, gt, seg_zero)
    voi = variation_of_information(seg, gt, seg_zero=seg_zero)
    assert voi.split == pytest.approx(split, abs=1e-9) and voi.merge == pytest.approx(merge, abs=1e-9)
    assert cremi_score(seg, gt, seg_zero=seg_zero) == pytest.approx(math.sqrt(ref[0] * (split + merge)), abs=1e-9)
    distinct = brute_force_rand(seg, gt, seg_zero, self_pairs=False)
    got = adapted_rand_error(seg, gt, seg_zero=seg_zero, self_pairs=False)
    assert (got.error, got.precision, got.recall) == pytest.approx(distinct, abs=1e-9)


def test_hand_computed_cases():
    gt = np.array([[1, 1, 2, 2, 0, 0]])
    perfect = adapted_rand_error(np.array([[5, 5, 7, 7, 9, 3]]), gt)
    assert perfect.error == 0.0 and perfect.precision == 1.0 and perfect.recall == 1.0
    merge = adapted_rand_error(np.array([[5, 5, 5, 5, 0, 0]]), gt)  # P = 8/16, R = 1
    assert (merge.precision, merge.recall) == (0.5, 1.0)
    assert merge.error == pytest.approx(1 / 3)
    split = variation_of_information(np.array([[1, 2, 3, 4, 0, 0]]), gt)
    assert (split.split, split.merge) == (1.0, 0.0)
    assert evaluate_segmentation(np.array([[5, 5, 5, 5, 1, 1]]), gt)["voi_merge"] == pytest.approx(1.0)


def test_skimage_differences_are_the_documented_ones():
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 6, size=(4, 9, 9))
    seg_nozero = rng.integers(1, 8, size=(4, 9, 9))
    ours = adapted_rand_error(seg_nozero, gt, self_pairs=False)  # skimage counts distinct pairs only
    err, sk_prec, sk_rec = skimage.metrics.adapted_rand_error(gt, seg_nozero)
    assert err == pytest.approx(ours.error, abs=1e-12)
    assert abs(err - adapted_rand_error(seg_nozero, gt).error) > 1e-4
    # skimage swaps precision and recall relative to SNEMI3D
    assert sk_prec == pytest.approx(ours.recall, abs=1e-12) and sk_rec == pytest.approx(ours.precision, abs=1e-12)
    # with segmentation 0 present, skimage treats 0 as a label: it equals our seg_zero="label" only
    seg = rng.integers(0, 8, size=(4, 9, 9))
    err0, _, _ = skimage.metrics.adapted_rand_error(gt, seg)
    assert err0 == pytest.approx(adapted_rand_error(seg, gt, seg_zero="label", self_pairs=False).error, abs=1e-12)
    assert abs(err0 - adapted_rand_error(seg, gt, self_pairs=False).error) > 1e-4
    # skimage VOI ignores nothing by default; ignore_labels=[0] with image0=gt gives our (split, merge)
    voi = variation_of_information(seg, gt, seg_zero="label")
    sk_split, sk_merge = skimage.metrics.variation_of_information(gt, seg, ignore_labels=[0])
    assert sk_merge == pytest.approx(voi.merge, abs=1e-9) and sk_split == pytest.approx(voi.split, abs=1e-9)
    sk_default = skimage.metrics.variation_of_information(gt, seg)
    assert abs(sk_default[1] - voi.merge) > 1e-4


def test_contingency_table_is_sparse_and_blockwise_equal():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 50, size=(8, 30, 30)).astype(np.uint64) + np.uint64(2**62)
    gt[0] = 0
    seg = rng.integers(0, 70, size=(8, 30, 30)).astype(np.uint64)
    whole = contingency_table(seg, gt)
    assert len(whole.count) <= gt.size and whole.count.sum() == gt.size
    matrix, gt_ids, seg_ids = whole.to_sparse()
    assert matrix.nnz == len(whole.count) and matrix.sum() == gt.size and gt_ids[-1] > 2**62
    blocks = contingency_table_blockwise(seg, gt, block_shape=(3, 7, 11), progress=False)
    assert evaluate_segmentation(table=blocks) == evaluate_segmentation(table=whole)
    halves = merge_tables([contingency_table(seg[:4], gt[:4]), contingency_table(seg[4:], gt[4:])])
    assert adapted_rand_error(table=halves).error == pytest.approx(adapted_rand_error(seg, gt).error, abs=1e-12)


def reference_table(seg: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt ids, seg ids, counts) of every pair, sorted, by ``np.unique`` over stacked uint64 ids."""
    pairs = np.stack([gt.ravel().astype(np.uint64), seg.ravel().astype(np.uint64)], axis=1)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    return uniq[:, 0], uniq[:, 1], counts


def test_contingency_table_any_ids_dtypes_and_layouts():
    rng = np.random.default_rng(3)
    top = np.iinfo(np.uint64).max  # ids beyond int64 (and far beyond int32) are hashed, not compacted
    gt = rng.choice(np.array([0, 1, 2**40, top - 1, top], np.uint64), size=(5, 12, 13))
    seg = rng.integers(0, 10**6, size=(5, 12, 13)).astype(np.uint64)  # ~780 distinct pairs: the table grows
    seg[:, :, :4] = top  # long runs of one pair
    cases = {
        "C order": (seg, gt),
        "F order": (np.asfortranarray(seg), np.asfortranarray(gt)),
        "strided views": (seg[:, ::2, 1:], gt[:, ::2, 1:]),
        "mixed order": (np.asfortranarray(seg), gt),
        "small signed and unsigned dtypes": ((seg % 100).astype(np.int8), (gt % 1000).astype(np.uint16)),
    }
    for name, (s, g) in cases.items():
        table = contingency_table(s, g)
        ref_gt, ref_seg, ref_count = reference_table(s, g)
        assert table.gt.dtype == table.seg.dtype == np.uint64 and table.count.dtype == np.int64, name
        np.testing.assert_array_equal(table.gt, ref_gt, err_msg=name)
        np.testing.assert_array_equal(table.seg, ref_seg, err_msg=name)
        np.testing.assert_array_equal(table.count, ref_count, err_msg=name)
        assert table.n_voxels == s.size
    assert contingency_table(seg, gt).gt.max() == top
    # merging the tables of two halves gives the whole table, exactly
    halves = merge_tables([contingency_table(seg[:2], gt[:2]), contingency_table(seg[2:], gt[2:])])
    whole = contingency_table(seg, gt)
    for field in ("gt", "seg", "count"):
        np.testing.assert_array_equal(getattr(halves, field), getattr(whole, field))


def test_empty_and_single_label_volumes():
    empty = contingency_table(np.zeros((0, 4, 4), np.uint64), np.zeros((0, 4, 4), np.uint64))
    assert (len(empty.count), empty.n_voxels) == (0, 0)
    assert len(merge_tables([]).count) == 0 and merge_tables([empty, empty]).n_voxels == 0
    with pytest.raises(ValueError, match="ground truth has no foreground"):
        variation_of_information(table=empty)
    one = np.full((3, 4, 4), 7, np.uint64)
    table = contingency_table(one, one)
    assert (table.gt.tolist(), table.seg.tolist(), table.count.tolist()) == ([7], [7], [48])
    assert adapted_rand_error(one, one).error == 0.0
    assert variation_of_information(one, one).total == 0.0
    # everything unlabelled in the segmentation: all singletons (pure split) or one label (pure merge)
    unlabelled = np.zeros_like(one)
    # the reference code weighs the 48 singletons as 48 / n (n = 48 voxels here), not 48: recall 1 / 48^2
    assert adapted_rand_error(unlabelled, one).recall == pytest.approx(1 / 48**2)
    assert adapted_rand_error(unlabelled, one, self_pairs=False).error == pytest.approx(1.0)
    assert variation_of_information(unlabelled, one).split == pytest.approx(np.log2(48))
    assert adapted_rand_error(unlabelled, one, seg_zero="label").error == 0.0


def test_bad_inputs():
    gt = np.ones((2, 3, 3), np.uint64)
    with pytest.raises(ValueError, match=r"seg and gt must have the same shape, got \(2, 3, 4\) and \(2, 3, 3\)"):
        adapted_rand_error(np.ones((2, 3, 4), np.uint64), gt)
    with pytest.raises(TypeError, match="seg must have an integer dtype, got float32"):
        variation_of_information(np.ones((2, 3, 3), np.float32), gt)
    with pytest.raises(ValueError, match="seg contains negative labels"):
        contingency_table(-np.ones((2, 3, 3), np.int64), gt)
    late_negative = np.arange(18, dtype=np.int64).reshape(2, 3, 3)
    late_negative[1, 2, 1] = -5  # found in the middle of the sweep, reported with the minimum
    with pytest.raises(ValueError, match=r"gt contains negative labels \(min -5\)"):
        contingency_table(gt, late_negative)
    with pytest.raises(ValueError, match=r"seg and gt must have the same shape"):
        contingency_table(np.ones(18, np.uint64), gt)
    with pytest.raises(ValueError, match="ground truth has no foreground"):
        adapted_rand_error(gt, np.zeros_like(gt))
    with pytest.raises(ValueError, match="seg_zero must be 'singletons' or 'label'"):
        adapted_rand_error(gt, gt, seg_zero="ignore")


def test_evaluate_cli_reads_chunks_and_writes_json(tmp_path, capsys):
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 9, size=(6, 20, 20)).astype(np.uint64)
    seg = (gt // 2).astype(np.uint64)
    write_ome_zarr(tmp_path / "gt.zarr" / "labels", gt, axes="zyx", voxel_size=(40, 4, 4), chunks=(2, 10, 10))
    write_ome_zarr(tmp_path / "seg.zarr" / "seg", seg, axes="zyx", voxel_size=(40, 4, 4), chunks=(3, 20, 20))
    out = tmp_path / "scores.json"
    code = cli(
        [f"{tmp_path}/seg.zarr/seg", f"{tmp_path}/gt.zarr/labels", "--json", str(out), "--block", "2,10,10", "--quiet"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "arand" in printed and "voi_split" in printed and "cremi_score" in printed
    scores = json.loads(out.read_text())
    assert scores["arand"] == pytest.approx(adapted_rand_error(seg, gt).error, abs=1e-12)
    assert scores["voi_merge"] == pytest.approx(variation_of_information(seg, gt).merge, abs=1e-12)
    # shape mismatch and float labels are refused with the reason
    root = zarr.open_group(str(tmp_path / "bad.zarr"), mode="w")
    root.create_array("small", data=np.zeros((6, 20, 19), np.uint64))
    root.create_array("float", data=np.zeros((6, 20, 20), np.float32))
    assert cli([f"{tmp_path}/bad.zarr/small", f"{tmp_path}/gt.zarr/labels", "--quiet"]) == 2
    assert "must have the same shape" in capsys.readouterr().err
    assert cli([f"{tmp_path}/bad.zarr/float", f"{tmp_path}/gt.zarr/labels", "--quiet"]) == 2
    assert "must have an integer dtype" in capsys.readouterr().err


# ------------------------------------------------------------------- excluded voxels: CREMI conventions
def _dot_in_plane() -> np.ndarray:
    """One 5x5 section of id 1 with a single voxel of id 2 in the middle."""
    gt = np.ones((1, 5, 5), np.uint64)
    gt[0, 2, 2] = 2
    return gt


def test_border_mask_hand_computed():
    gt = _dot_in_plane()
    # boundary pixels: the dot and its 4 neighbours (each has a 4-neighbour with another id)
    plus = np.zeros((5, 5), bool)
    plus[2, 1:4] = plus[1:4, 2] = True
    np.testing.assert_array_equal(border_mask(gt, 0.0, (40, 4, 4))[0], plus)
    # 1 pixel (4 nm at 4 nm/px): everything within Euclidean distance 1 of the plus = |dy| + |dx| <= 2
    yy, xx = np.mgrid[-2:3, -2:3]
    np.testing.assert_array_equal(border_mask(gt, 4.0, (40, 4, 4))[0], abs(yy) + abs(xx) <= 2)
    # 1.5 pixels reaches the diagonal sqrt(2) but not the corners (distance sqrt(5))
    corners = (abs(yy) == 2) & (abs(xx) == 2)
    np.testing.assert_array_equal(border_mask(gt, 6.0, (40, 4, 4))[0], ~corners)
    # in nm: at 8 nm/px 8 nm is one pixel again; a section without boundary masks nothing
    np.testing.assert_array_equal(border_mask(gt, 8.0, (40, 8, 8)), border_mask(gt, 4.0, (40, 4, 4)))
    assert not border_mask(np.ones((2, 4, 4), np.uint8), 200.0, (40, 4, 4)).any()


def test_cremi_evaluation_hand_computed():
    gt = _dot_in_plane()
    seg = np.full((1, 5, 5), 8, np.uint64)
    seg[0, :, :2] = 7  # columns 0-1 one segment, 2-4 another
    kept = exclude_voxels(gt, border=border_mask(gt, 4.0, (40, 4, 4)))
    # 12 voxels survive, all of id 1, split 6/6 between segments 7 and 8: H(seg|gt) = 1 bit, no merge;
    # sum a^2 = 144, sum b^2 = sum n^2 = 72: precision 1, recall 1/2, ARAND 1 - 2 * 0.5 / 1.5 = 1/3
    assert int((kept != 0).sum()) == 12 and set(np.unique(kept)) == {0, 1}
    scores = evaluate_segmentation(seg, kept)
    assert scores["voi_split"] == pytest.approx(1.0) and scores["voi_merge"] == pytest.approx(0.0)
    assert scores["precision"] == pytest.approx(1.0) and scores["recall"] == pytest.approx(0.5)
    assert scores["arand"] == pytest.approx(1 / 3) and scores["cremi_score"] == pytest.approx(math.sqrt(1 / 3))


def test_exclude_voxels_ignore_labels_and_mask():
    gt = np.array([0, 0, 1, 1, 2, 2, 5, 5], np.uint32)
    mask = np.array([1, 1, 1, 0, 1, 1, 1, 1], np.uint8)
    assert exclude_voxels(gt).tolist() == [0, 0, 1, 1, 2, 2, 5, 5]
    assert exclude_voxels(gt, ignore_labels=[0, 5], mask=mask).tolist() == [0, 0, 1, 0, 2, 2, 0, 0]
    # 0 scored as an object (cremi_python's gt += 1): ids shift, excluded voxels are 0
    assert exclude_voxels(gt, ignore_labels=[], mask=mask).tolist() == [1, 1, 2, 0, 3, 3, 6, 6]
    # a seg that splits the two GT-0 voxels: invisible while 0 is ignored, a split once 0 is scored
    seg = np.array([3, 4, 1, 1, 2, 2, 5, 5], np.uint64)
    assert variation_of_information(seg, exclude_voxels(gt)).split == pytest.approx(0.0)
    assert variation_of_information(seg, exclude_voxels(gt, ignore_labels=[])).split == pytest.approx(2 / 8)
    # unlabelled voxels are not scored even when the segmentation is wrong there
    wrong = seg.copy()
    wrong[3] = 9
    assert adapted_rand_error(wrong, exclude_voxels(gt, mask=mask)).error == pytest.approx(
        adapted_rand_error(seg, exclude_voxels(gt, mask=mask)).error
    )
    with pytest.raises(ValueError, match="2\\^64 - 1"):
        exclude_voxels(np.array([0, 2**64 - 1], np.uint64), ignore_labels=[])
    with pytest.raises(ValueError, match="mask and gt must have the same shape"):
        exclude_voxels(gt, mask=mask[:4])


def _border_mask_by_definition(plane: np.ndarray, distance_px: float) -> np.ndarray:
    """cremi_python's create_border_mask_2d definition, written as a brute-force search: a pixel is masked
    when some boundary pixel (a 4-neighbour differs; the image is edge-padded) lies within distance_px."""
    rows, cols = plane.shape
    boundary = [
        (y, x)
        for y in range(rows)
        for x in range(cols)
        if any(
            0 <= y + dy < rows and 0 <= x + dx < cols and plane[y + dy, x + dx] != plane[y, x]
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
        )
    ]
    out = np.zeros(plane.shape, bool)
    for y in range(rows):
        for x in range(cols):
            out[y, x] = any((y - by) ** 2 + (x - bx) ** 2 <= distance_px**2 for by, bx in boundary)
    return out


@pytest.mark.parametrize("distance_px", [0.0, 1.0, 2.5, 4.0])
def test_border_mask_matches_cremi_definition(distance_px):
    rng = np.random.default_rng(int(distance_px * 10))
    gt = np.repeat(np.repeat(rng.integers(0, 4, size=(2, 6, 7)), 3, axis=1), 3, axis=2).astype(np.uint64)
    mask = border_mask(gt, distance_px * 4.0, (40, 4, 4))
    for z in range(gt.shape[0]):
        np.testing.assert_array_equal(mask[z], _border_mask_by_definition(gt[z], distance_px))


def test_blockwise_exclusions_equal_whole_volume_and_skimage():
    rng = np.random.default_rng(5)
    gt = np.repeat(np.repeat(rng.integers(0, 6, size=(4, 6, 6)), 8, axis=1), 8, axis=2).astype(np.uint64)
    seg = (gt + (rng.random(gt.shape) < 0.05)).astype(np.uint64) % 5
    mask = (rng.random(gt.shape) > 0.2).astype(np.uint8)
    voxel = (40.0, 8.0, 8.0)
    kept = exclude_voxels(gt, ignore_labels=[], mask=mask, border=border_mask(gt, 8.0, voxel))
    assert 0.3 < (kept != 0).mean() < 0.7  # blocks of 7x9 without their margin would mask ~1400 voxels wrongly
    whole = contingency_table(seg, kept)
    blocks = contingency_table_blockwise(
        seg,
        gt,
        block_shape=(3, 7, 9),
        progress=False,
        ignore_labels=[],
        mask=mask,
        border_distance=8.0,
        voxel_size=voxel,
    )
    assert evaluate_segmentation(table=blocks) == evaluate_segmentation(table=whole)
    # skimage (outside reference) with the excluded voxels as its ignore label gives the same VOI
    sk_split, sk_merge = skimage.metrics.variation_of_information(kept, seg, ignore_labels=[0])
    voi = variation_of_information(table=blocks, seg_zero="label")
    assert (voi.split, voi.merge) == (pytest.approx(sk_split, abs=1e-12), pytest.approx(sk_merge, abs=1e-12))


def test_evaluate_cli_mask_ignore_labels_and_border(tmp_path, capsys):
    from connectomics.io import write_label_image

    rng = np.random.default_rng(3)
    # 800 nm objects at 50 nm/px: the default 200 nm (4 px) border mask leaves their cores
    gt = np.repeat(np.repeat(rng.integers(0, 5, size=(4, 4, 4)), 16, axis=1), 16, axis=2).astype(np.uint64)
    seg = (gt // 2).astype(np.uint64)
    mask = np.ones(gt.shape, np.uint8)
    mask[:, :20] = 0
    image = f"{tmp_path}/sim.zarr/raw"
    write_ome_zarr(image, np.zeros(gt.shape, np.uint8), axes="zyx", voxel_size=(40, 50, 50), chunks=(2, 32, 32))
    write_label_image(image, "neuron_ids", gt, chunks=(2, 32, 32))
    write_label_image(image, "labels_mask", mask, chunks=(2, 32, 32))
    write_ome_zarr(tmp_path / "seg.zarr" / "seg", seg, axes="zyx", voxel_size=(40, 50, 50), chunks=(4, 64, 64))
    out = tmp_path / "s.json"
    assert (
        cli(
            [
                f"{tmp_path}/seg.zarr/seg",
                f"{image}/labels/neuron_ids",
                "--mask",
                f"{image}/labels/labels_mask",
                "--ignore-labels",
                "none",
                "--border-mask",
                "--block",
                "2,32,32",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    scores = json.loads(out.read_text())
    assert scores["border_mask_nm"] == 200.0 and scores["ignore_labels"] == [] and scores["mask"].endswith("mask")
    kept = exclude_voxels(gt, ignore_labels=[], mask=mask, border=border_mask(gt, 200.0, (40, 50, 50)))
    expected = evaluate_segmentation(seg, kept)
    assert scores["arand"] == pytest.approx(expected["arand"], abs=1e-12)
    assert scores["voi"] == pytest.approx(expected["voi"], abs=1e-12)
    assert scores["n_scored"] == int((kept != 0).sum()) > 0
    assert (
        cli(
            [
                f"{tmp_path}/seg.zarr/seg",
                f"{image}/labels/neuron_ids",
                "--ignore-labels",
                "0,3",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["arand"] == pytest.approx(
        evaluate_segmentation(seg, exclude_voxels(gt, ignore_labels=[0, 3]))["arand"], abs=1e-12
    )
    capsys.readouterr()
    root = zarr.open_group(str(tmp_path / "bad.zarr"), mode="w")
    root.create_array("mask", data=np.ones((4, 64, 63), np.uint8))
    assert (
        cli(
            [f"{tmp_path}/seg.zarr/seg", f"{image}/labels/neuron_ids", "--mask", f"{tmp_path}/bad.zarr/mask", "--quiet"]
        )
        == 2
    )
    assert "must be an integer volume of the ground truth's shape" in capsys.readouterr().err
    # everything excluded: a one-line error, not a traceback
    assert (
        cli([f"{tmp_path}/seg.zarr/seg", f"{image}/labels/neuron_ids", "--ignore-labels", "0,1,2,3,4", "--quiet"]) == 2
    )
    assert "no foreground" in capsys.readouterr().err


def test_evaluate_cli_per_segmentation_json_sweep_figure_and_no_foreign_overwrite(tmp_path, capsys):
    rng = np.random.default_rng(3)
    gt = rng.integers(1, 9, size=(4, 16, 16)).astype(np.uint64)
    for t, seg in ((0.3, gt), (0.5, gt // 2), (0.7, gt // 4)):
        write_ome_zarr(tmp_path / "seg.zarr" / f"seg_{t}", seg, axes="zyx", voxel_size=(40, 4, 4), chunks=(4, 16, 16))
    write_ome_zarr(tmp_path / "gt.zarr" / "labels", gt, axes="zyx", voxel_size=(40, 4, 4), chunks=(4, 16, 16))
    args = [str(tmp_path / "seg.zarr"), str(tmp_path / "gt.zarr/labels"), "--quiet"]
    assert cli(args) == 0
    printed = capsys.readouterr().out
    figure = tmp_path / "seg.zarr.metrics.png"
    assert f"wrote figure {figure}" in printed and figure.read_bytes()[:4] == b"\x89PNG"
    scores = {t: json.loads((tmp_path / f"seg.zarr.seg_{t}.metrics.json").read_text()) for t in (0.3, 0.5, 0.7)}
    assert scores[0.3]["arand"] == pytest.approx(0.0, abs=1e-12)  # one JSON per segmentation, its own scores
    assert scores[0.7]["arand"] == pytest.approx(adapted_rand_error(gt // 4, gt).error, abs=1e-12)
    assert cli(args) == 0  # its own outputs are replaced by a rerun
    # a file it did not write is refused (one line, exit 2), with --overwrite replaced
    foreign = tmp_path / "seg.zarr.seg_0.5.metrics.json"
    foreign.write_text("my notes")
    capsys.readouterr()
    assert cli([str(tmp_path / "seg.zarr/seg_0.5"), str(tmp_path / "gt.zarr/labels"), "--quiet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and foreign.read_text() == "my notes"
    assert cli(args + ["--json", str(tmp_path / "one.json")]) == 2  # --json names one file
    assert cli([str(tmp_path / "seg.zarr/seg_0.5"), str(tmp_path / "gt.zarr/labels"), "--quiet", "--overwrite"]) == 0
    assert json.loads(foreign.read_text())["seg"].endswith("seg_0.5")
    # negative labels: a one-line error, exit 2
    write_ome_zarr(
        tmp_path / "neg.zarr" / "seg",
        -np.ones((4, 16, 16), np.int64),
        axes="zyx",
        voxel_size=(40, 4, 4),
        chunks=(4, 16, 16),
    )
    capsys.readouterr()
    assert cli([str(tmp_path / "neg.zarr/seg"), str(tmp_path / "gt.zarr/labels"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "negative labels" in err and len(err.strip().splitlines()) == 1
