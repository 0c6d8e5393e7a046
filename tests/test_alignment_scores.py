"""Alignment scores and map processing, each against an independent computation (scipy, sklearn)."""

import numpy as np
import pytest
import zarr
from PIL import Image
from scipy import ndimage, stats
from sklearn.metrics import f1_score, jaccard_score

from shared.alignment.human_maps import load_images, load_maps, map_split_half_ceiling
from shared.alignment.processing import blur_maps, clickme_blur_kernel, process_clickme_maps, resize_maps
from shared.alignment.scores import (
    CLICKME_HUMAN_CEILING,
    alignment_score,
    dice_top_fraction,
    iou_top_fraction,
    spearman_per_image,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_spearman_matches_scipy_with_ties(dtype):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (4, 6, 7)).astype(dtype)  # many ties
    b = (rng.random((4, 6, 7)) * 10).astype(dtype)
    expected = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(spearman_per_image(a, b), expected, rtol=1e-12, atol=1e-12)


def test_dice_iou_match_sklearn():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 10, 10)), rng.random((3, 10, 10))
    b[0] = a[0] + 0.01 * rng.random((10, 10))
    for i in range(3):
        ma = (a[i] > np.percentile(a[i], 90)).ravel()
        mb = (b[i] > np.percentile(b[i], 90)).ravel()
        assert dice_top_fraction(a, b)[i] == pytest.approx(f1_score(ma, mb), abs=1e-8)
        assert iou_top_fraction(a, b)[i] == pytest.approx(jaccard_score(ma, mb), abs=1e-8)


def test_alignment_score_normalises_and_handles_constant_maps():
    rng = np.random.default_rng(2)
    human = rng.random((5, 8, 8))
    sal = human + 0.5 * rng.random((5, 8, 8))
    res = alignment_score(sal, human)
    rho = [stats.spearmanr(s.ravel(), h.ravel()).statistic for s, h in zip(sal, human)]
    assert res.mean_spearman == pytest.approx(np.mean(rho))
    assert res.score == pytest.approx(np.mean(rho) / CLICKME_HUMAN_CEILING)
    sal[1] = 3.0
    assert alignment_score(sal, human).n_nan == 1
    assert np.isnan(alignment_score(sal, human, nan_policy="propagate").score)
    with pytest.raises(ValueError, match="constant"):
        alignment_score(sal, human, nan_policy="raise")
    with pytest.raises(ValueError, match="same shape"):
        alignment_score(sal, human[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        alignment_score(np.full((1, 2, 2), np.nan), np.ones((1, 2, 2)))


def test_clickme_kernel_and_blur_match_scipy():
    k = clickme_blur_kernel()
    cols, rows = np.arange(-5, 5), np.arange(4, -6, -1)
    expected = np.exp(-(cols[None] ** 2 + rows[:, None] ** 2) / 200.0)
    np.testing.assert_allclose(k, expected / expected.sum())
    img = np.random.default_rng(3).random((1, 12, 9))
    # TF SAME padding of an even 10-tap kernel: 4 before, 5 after; cross-correlation
    padded = np.pad(img[0], ((4, 5), (4, 5)))
    ref = ndimage.correlate(padded, k, mode="constant", origin=(-1, -1))[4:-5, 4:-5]
    np.testing.assert_allclose(blur_maps(img)[0], ref, atol=1e-12)


def test_resize_is_block_mean_at_half_size_and_pipeline_shapes():
    img = np.random.default_rng(4).random((2, 8, 6))
    block = img.reshape(2, 4, 2, 3, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(resize_maps(img, (4, 3)), block)
    out = process_clickme_maps(np.ones((1, 256, 256)) * 7, output_size=224)
    assert out.shape == (1, 224, 224) and out.max() <= 7 + 1e-9


def test_load_maps_from_folders_npz_and_zarr(tmp_path):
    rng = np.random.default_rng(5)
    maps = (rng.random((3, 6, 5)) * 255).astype(np.uint8)
    folder = tmp_path / "png"
    folder.mkdir()
    for i, m in enumerate(maps):
        Image.fromarray(np.stack([m] * 3, -1)).save(folder / f"img{i}.png")
    loaded, names = load_maps(folder)
    np.testing.assert_allclose(loaded, maps)
    assert names == ["img0", "img1", "img2"]
    np.savez(tmp_path / "m.npz", heat=maps)
    np.testing.assert_allclose(load_maps(tmp_path / "m.npz")[0], maps)
    zarr.create_array(str(tmp_path / "m.zarr"), data=maps[:, None].astype(np.float32))
    np.testing.assert_allclose(load_maps(tmp_path / "m.zarr")[0], maps)
    images, _ = load_images(folder)
    assert images.shape == (3, 3, 6, 5)
    np.savez(tmp_path / "two.npz", a=maps, b=maps)
    with pytest.raises(ValueError, match="pass key"):
        load_maps(tmp_path / "two.npz")
    with pytest.raises(FileNotFoundError):
        load_maps(tmp_path / "missing")


def test_map_split_half_ceiling_known_answers():
    rng = np.random.default_rng(6)
    truth = rng.random((6, 8, 8))
    identical = [np.repeat(t[None], 4, 0) for t in truth]
    res = map_split_half_ceiling(identical, n_iterations=5)
    assert res.ceiling == pytest.approx(1.0)
    assert abs(res.floor) < 0.3
    noisy = [t[None] + 0.3 * rng.standard_normal((6, 8, 8)) for t in truth]
    assert 0.3 < map_split_half_ceiling(noisy, n_iterations=5).ceiling < 1.0
