"""Volume IO: every format opens with its geometry, OME-Zarr round-trips, every bad input fails clearly."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from connectomics.io import (
    add_alias,
    add_multiscale_levels,
    check_role,
    check_same_geometry,
    create_label_image,
    create_ome_zarr_array,
    create_segmentation_image,
    downsample_block,
    has_dataset,
    normalize_raw,
    open_volume,
    parse_volume_path,
    resolve_address,
    write_label_image,
    write_ome_zarr,
)


@pytest.fixture
def raw() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=(6, 20, 24), dtype=np.uint8)


def test_parse_volume_path():
    assert parse_volume_path("vol.zarr/raw") == (Path("vol.zarr"), "raw")
    assert parse_volume_path("/d/vol.zarr/a/b") == (Path("/d/vol.zarr"), "a/b")
    assert parse_volume_path("vol.zarr") == (Path("vol.zarr"), None)
    assert parse_volume_path("file.h5:volumes/raw") == (Path("file.h5"), "volumes/raw")
    assert parse_volume_path("sample_A.hdf:/volumes/labels/neuron_ids") == (
        Path("sample_A.hdf"),
        "volumes/labels/neuron_ids",
    )
    assert parse_volume_path("stack.tif") == (Path("stack.tif"), None)
    assert parse_volume_path("stack.TIFF") == (Path("stack.TIFF"), None)


def test_ome_zarr_roundtrip_metadata_and_levels(tmp_path, raw):
    path = tmp_path / "v.zarr" / "raw"
    write_ome_zarr(
        path, raw, axes=("z", "y", "x"), voxel_size=(40, 4, 4), chunks=(3, 10, 12), offset=(80, 8, 8), n_levels=3
    )
    vol = open_volume(f"{tmp_path}/v.zarr/raw")
    assert vol.axes == ("z", "y", "x") and vol.voxel_size == (40.0, 4.0, 4.0) and vol.offset == (80.0, 8.0, 8.0)
    np.testing.assert_array_equal(vol.data.compute(), raw)
    assert vol.data.chunksize == (3, 10, 12)
    meta = json.loads((tmp_path / "v.zarr" / "raw" / "zarr.json").read_text())["attributes"]["ome"]
    assert meta["version"] == "0.5"
    ms = meta["multiscales"][0]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"] and ms["axes"][0]["unit"] == "nanometer"
    level1 = open_volume(f"{tmp_path}/v.zarr/raw", level=1)
    assert level1.voxel_size == (40.0, 8.0, 8.0) and level1.shape == (6, 10, 12)
    expected = raw.reshape(6, 10, 2, 12, 2).astype(float).mean(axis=(2, 4))
    np.testing.assert_array_equal(level1.data.compute(), np.rint(expected).astype(np.uint8))
    with pytest.raises(ValueError, match="has 3 scale level"):
        open_volume(f"{tmp_path}/v.zarr/raw", level=3)


def test_label_levels_use_mode_and_keep_ids(tmp_path):
    labels = np.zeros((2, 4, 4), np.uint64)
    labels[:, :3, :3] = 7
    labels[:, 3, :] = 2**40
    write_ome_zarr(tmp_path / "l.zarr" / "labels", labels, axes="zyx", voxel_size=(8, 8, 8), chunks=(2, 4, 4))
    add_multiscale_levels(tmp_path / "l.zarr" / "labels", 1, method="mode")
    small = open_volume(f"{tmp_path}/l.zarr/labels", level=1).data.compute()
    assert small.dtype == np.uint64 and small.shape == (1, 2, 2)  # isotropic: z halves too
    assert set(np.unique(small)) <= {0, 7, 2**40}
    assert small[0, 0, 0] == 7
    assert downsample_block(np.array([[1, 1], [2, 3]]), (2, 2), "mode").item() == 1


def test_ngff_04_zarr_v2_group(tmp_path, raw):
    group = zarr.open_group(str(tmp_path / "o.zarr"), mode="w", zarr_format=2)
    group.create_array("s0", data=raw, chunks=(2, 10, 12))
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
            "datasets": [
                {
                    "path": "s0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [0.03, 0.006, 0.006]},
                        {"type": "translation", "translation": [0.03, 0, 0]},
                    ],
                }
            ],
        }
    ]
    vol = open_volume(tmp_path / "o.zarr")
    assert vol.voxel_size == pytest.approx((30.0, 6.0, 6.0)) and vol.offset == pytest.approx((30.0, 0, 0))
    np.testing.assert_array_equal(vol.data.compute(), raw)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plain_zarr_arrays_with_funlib_attributes(tmp_path, raw, zarr_format):
    root = zarr.open_group(str(tmp_path / "f.zarr"), mode="w", zarr_format=zarr_format)
    arr = root.create_array("volumes/raw", data=raw, chunks=(2, 10, 12))
    arr.attrs.update({"resolution": [40, 4, 4], "offset": [0, 40, 40]})
    vol = open_volume(f"{tmp_path}/f.zarr/volumes/raw")
    assert vol.voxel_size == (40.0, 4.0, 4.0) and vol.offset == (0.0, 40.0, 40.0)
    np.testing.assert_array_equal(vol.data.compute(), raw)
    affs = root.create_array("affs", data=np.zeros((3, 6, 20, 24), np.float32), chunks=(3, 2, 10, 12))
    assert affs is not None
    assert open_volume(f"{tmp_path}/f.zarr/affs").axes == ("c", "z", "y", "x")


def test_cremi_hdf5(tmp_path, raw):
    path = tmp_path / "sample_A_20160501.hdf"
    with h5py.File(path, "w") as f:
        f.attrs["file_format"] = "0.2"
        f.create_dataset("volumes/raw", data=raw).attrs["resolution"] = [40.0, 4.0, 4.0]
        labels = f.create_dataset("volumes/labels/neuron_ids", data=raw.astype(np.uint64))
        labels.attrs["resolution"] = [40.0, 4.0, 4.0]
        labels.attrs["offset"] = [0.0, 80.0, 80.0]
    vol = open_volume(f"{path}:volumes/raw", role="raw")
    assert vol.voxel_size == (40.0, 4.0, 4.0)
    np.testing.assert_array_equal(vol.data.compute(), raw)
    lab = open_volume(f"{path}:volumes/labels/neuron_ids", role="labels")
    assert lab.offset == (0.0, 80.0, 80.0) and lab.dtype == np.uint64
    with pytest.raises(KeyError, match=r"no dataset 'volumes/nope'.*volumes/labels/neuron_ids .*volumes/raw"):
        open_volume(f"{path}:volumes/nope")
    with pytest.raises(ValueError, match="name a dataset inside the HDF5 file"):
        open_volume(path)


def test_tiff_stack_with_imagej_spacing(tmp_path, raw):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path,
        raw,
        imagej=True,
        resolution=(1 / 0.004, 1 / 0.004),
        metadata={"spacing": 0.04, "unit": "um", "axes": "ZYX"},
    )
    vol = open_volume(path)
    assert vol.voxel_size == pytest.approx((40.0, 4.0, 4.0))
    assert vol.data.chunksize == (1, 20, 24)
    np.testing.assert_array_equal(vol.data.compute(), raw)
    np.testing.assert_array_equal(vol.data[2:4, 3:5].compute(), raw[2:4, 3:5])


def test_missing_dataset_lists_what_is_there(tmp_path, raw):
    write_ome_zarr(tmp_path / "v.zarr" / "raw", raw, axes="zyx", voxel_size=(1, 1, 1), chunks=(6, 20, 24))
    with pytest.raises(KeyError, match=r"no dataset 'labels' in .*it holds: raw/0 \(6, 20, 24\) uint8"):
        open_volume(f"{tmp_path}/v.zarr/labels")
    with pytest.raises(ValueError, match="group without OME-Zarr 'multiscales' metadata; name one of its arrays"):
        open_volume(f"{tmp_path}/v.zarr")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_volume(f"{tmp_path}/nothing.zarr/raw")


def test_wrong_number_of_axes_and_dtype(tmp_path):
    root = zarr.open_group(str(tmp_path / "b.zarr"), mode="w")
    root.create_array("flat", data=np.zeros((5, 5), np.uint8))
    root.create_array("complex", data=np.zeros((2, 3, 3), np.complex64))
    root.create_array("float_labels", data=np.zeros((2, 3, 3), np.float32))
    root.create_array("affs3d", data=np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"has 2 axes; expected 3 \(plane, row, column\)"):
        open_volume(f"{tmp_path}/b.zarr/flat")
    with pytest.raises(TypeError, match="has dtype complex64; expected an integer"):
        open_volume(f"{tmp_path}/b.zarr/complex")
    with pytest.raises(TypeError, match="labels volume .* must have an integer dtype"):
        open_volume(f"{tmp_path}/b.zarr/float_labels", role="labels")
    with pytest.raises(ValueError, match="affinities volume .* must have 4 axes"):
        open_volume(f"{tmp_path}/b.zarr/affs3d", role="affinities")


def test_nan_in_raw_and_shape_mismatch(tmp_path):
    data = np.zeros((2, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    root = zarr.open_group(str(tmp_path / "n.zarr"), mode="w")
    root.create_array("raw", data=data, chunks=(1, 4, 4))
    root.create_array("labels", data=np.zeros((2, 4, 5), np.uint64))
    with pytest.raises(ValueError, match="contains 1 NaN voxel"):
        open_volume(f"{tmp_path}/n.zarr/raw", role="raw")
    raw = open_volume(f"{tmp_path}/n.zarr/raw")
    labels = open_volume(f"{tmp_path}/n.zarr/labels")
    with pytest.raises(ValueError, match=r"must have the same shape .* \(2, 4, 4\) and \(2, 4, 5\)"):
        check_same_geometry(raw, labels)
    with pytest.raises(ValueError, match="role must be"):
        check_role(raw, "segmentation")
    with pytest.raises(ValueError, match="NaN"):
        normalize_raw(data)


def test_corrupt_and_partial_zarr(tmp_path, raw):
    write_ome_zarr(tmp_path / "c.zarr" / "raw", raw, axes="zyx", voxel_size=(1, 1, 1), chunks=(3, 10, 12))
    chunk = next(p for p in (tmp_path / "c.zarr" / "raw" / "0" / "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"not a compressed chunk")
    vol = open_volume(f"{tmp_path}/c.zarr/raw")
    with pytest.raises(OSError, match="corrupt or unreadable chunk in .*c.zarr/raw"):
        vol.data.compute()
    (tmp_path / "c.zarr" / "zarr.json").write_text("{ broken")
    with pytest.raises(ValueError, match="not a readable zarr container"):
        open_volume(f"{tmp_path}/c.zarr/raw")
    # metadata that lists a level whose array was never written (an interrupted writer)
    write_ome_zarr(tmp_path / "p.zarr" / "raw", raw, axes="zyx", voxel_size=(1, 1, 1), chunks=(6, 20, 24))
    group = zarr.open_group(str(tmp_path / "p.zarr" / "raw"), mode="r+")
    ome = dict(group.attrs["ome"])
    ome["multiscales"][0]["datasets"].append(
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 2, 2]}]}
    )
    group.attrs["ome"] = ome
    with pytest.raises(ValueError, match="array is missing \\(partial write\\?\\)"):
        open_volume(f"{tmp_path}/p.zarr/raw", level=1)


def test_create_never_erases(tmp_path):
    kw = {"shape": (4, 8, 8), "dtype": np.float32, "chunks": (2, 8, 8), "axes": "zyx", "voxel_size": (1, 1, 1)}
    arr = create_ome_zarr_array(tmp_path / "o.zarr" / "affs", **kw)
    arr[0:2] = 1.0
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        create_ome_zarr_array(tmp_path / "o.zarr" / "affs", **kw)
    again = create_ome_zarr_array(tmp_path / "o.zarr" / "affs", exists_ok=True, **kw)
    assert again[0:2].min() == 1.0 and again[2:].max() == 0.0
    with pytest.raises(ValueError, match=r"exists with shape \(4, 8, 8\).*requested shape \(4, 8, 9\)"):
        create_ome_zarr_array(tmp_path / "o.zarr" / "affs", exists_ok=True, **{**kw, "shape": (4, 8, 9)})
    # a sibling image in the same container leaves the first untouched
    create_ome_zarr_array(tmp_path / "o.zarr" / "seg", **{**kw, "dtype": np.uint64})
    assert open_volume(f"{tmp_path}/o.zarr/affs").data[0].compute().min() == 1.0
    with pytest.raises(ValueError, match="expected \\('z', 'y', 'x'\\)"):
        create_ome_zarr_array(tmp_path / "o.zarr" / "bad", **{**kw, "axes": "xyz"})


def test_normalize_raw():
    assert normalize_raw(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert normalize_raw(np.array([65535], np.uint16)).tolist() == [1.0]
    assert normalize_raw(np.array([0.5], np.float64)).dtype == np.float32


# ------------------------------------------------------------------------------------------ label images
def _image_with_levels(path: Path, raw: np.ndarray, n_levels: int = 3) -> str:
    write_ome_zarr(
        path, raw, axes="zyx", voxel_size=(40, 4, 4), offset=(80, 8, 8), chunks=(3, 10, 12), n_levels=n_levels
    )
    return str(path)


def test_label_image_layout_levels_and_metadata(tmp_path, raw):
    image = _image_with_levels(tmp_path / "v.zarr" / "raw", raw)
    ids = np.random.default_rng(1).integers(0, 4, size=raw.shape).astype(np.uint32)
    write_label_image(
        image, "cells", ids, chunks=(3, 10, 12), colors={3: (255, 0, 0, 255)}, properties={3: {"class": "glia"}}
    )
    vol = open_volume(f"{image}/labels/cells", role="labels")
    np.testing.assert_array_equal(vol.data.compute(), ids)
    assert vol.voxel_size == (40.0, 4.0, 4.0) and vol.offset == (80.0, 8.0, 8.0)
    # same number of levels as the image, each the image's shape and scale, downsampled by window mode
    expected = ids
    for level in (1, 2):
        expected = downsample_block(expected, (1, 2, 2), "mode")
        lab, img = open_volume(f"{image}/labels/cells", level=level), open_volume(image, level=level)
        np.testing.assert_array_equal(lab.data.compute(), expected)
        assert lab.shape == img.shape and lab.voxel_size == img.voxel_size and lab.offset == img.offset
    with pytest.raises(ValueError, match="has 3 scale level"):
        open_volume(f"{image}/labels/cells", level=3)
    meta = json.loads((tmp_path / "v.zarr" / "raw" / "labels" / "cells" / "zarr.json").read_text())
    label = meta["attributes"]["ome"]["image-label"]
    assert label["source"] == {"image": "../../"}
    assert label["colors"] == [{"label-value": 0, "rgba": [0, 0, 0, 0]}, {"label-value": 3, "rgba": [255, 0, 0, 255]}]
    assert label["properties"] == [{"label-value": 3, "class": "glia"}]
    labels_meta = json.loads((tmp_path / "v.zarr" / "raw" / "labels" / "zarr.json").read_text())
    assert labels_meta["attributes"]["ome"] == {"version": "0.5", "labels": ["cells"]}


def test_label_images_read_by_ome_zarr_and_valid_per_ome_zarr_models(tmp_path, raw):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Labels, Multiscales, Reader
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel
    from ome_zarr_models.v05.labels import Labels as LabelsGroup

    image = _image_with_levels(tmp_path / "v.zarr" / "raw", raw)
    ids = (raw // 64).astype(np.uint64)
    write_label_image(image, "neuron_ids", ids, chunks=(6, 20, 24), colors={1: (0, 255, 0, 128)})
    write_label_image(image, "labels_mask", (raw > 10).astype(np.uint8), chunks=(6, 20, 24))
    nodes = list(Reader(parse_url(image))())
    kinds = {Path(str(n.zarr.path)).name: {type(s) for s in n.specs} for n in nodes}
    assert kinds == {
        "raw": {Multiscales},
        "labels": {Labels},
        "neuron_ids": {Label, Multiscales},
        "labels_mask": {Label, Multiscales},
    }
    label_node = next(n for n in nodes if str(n.zarr.path).endswith("neuron_ids"))
    assert label_node.metadata["color"] == {0: [0, 0, 0, 0], 1: [0.0, 1.0, 0.0, 128 / 255]}
    assert [d.shape for d in label_node.data] == [(6, 20, 24), (6, 10, 12), (6, 5, 6)]
    np.testing.assert_array_equal(np.asarray(label_node.data[0]), ids)
    # opening the label image finds its source image through source.image = "../../"
    from_label = list(Reader(parse_url(f"{image}/labels/neuron_ids"))())
    assert [Path(str(n.zarr.path)).name for n in from_label][0] == "raw" and not from_label[0].visible
    # ome-zarr-models: each group validates as what it is (a validating parser of the NGFF 0.5 metadata)
    assert isinstance(open_ome_zarr(zarr.open_group(image, mode="r")), Image)
    labels_group = open_ome_zarr(zarr.open_group(f"{image}/labels", mode="r"))
    assert isinstance(labels_group, LabelsGroup) and labels_group.ome_attributes.labels == ["neuron_ids", "labels_mask"]
    label = ImageLabel.from_zarr(zarr.open_group(f"{image}/labels/neuron_ids", mode="r"))
    assert label.ome_attributes.image_label.source.image == "../../"
    # the validator is strict: a label image with fewer levels than its image is rejected
    create_label_image(image, "unfinished", dtype=np.uint8, chunks=(6, 20, 24))
    with pytest.raises(RuntimeError, match="Number of image label multiscale levels"):
        Image.from_zarr(zarr.open_group(image, mode="r"))


def test_label_list_keeps_every_name_under_concurrent_creation(tmp_path, raw):
    from concurrent.futures import ThreadPoolExecutor

    image = _image_with_levels(tmp_path / "v.zarr" / "raw", raw, n_levels=1)
    names = [f"seg_{i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: create_label_image(image, n, dtype=np.uint64, chunks=(6, 20, 24)), names))
    listed = zarr.open_group(f"{image}/labels", mode="r").attrs["ome"]["labels"]
    assert sorted(listed) == names
    create_label_image(image, "seg_0", dtype=np.uint64, chunks=(6, 20, 24), exists_ok=True)
    assert sorted(zarr.open_group(f"{image}/labels", mode="r").attrs["ome"]["labels"]) == names


def test_label_image_bad_input(tmp_path, raw):
    image = _image_with_levels(tmp_path / "v.zarr" / "raw", raw, n_levels=1)
    kw = {"dtype": np.uint32, "chunks": (6, 20, 24)}
    with pytest.raises(TypeError, match="must have an integer dtype"):
        create_label_image(image, "f", **{**kw, "dtype": np.float32})
    with pytest.raises(ValueError, match=r"of shape \(6, 20, 25\) does not match image"):
        create_label_image(image, "s", shape=(6, 20, 25), **kw)
    with pytest.raises(ValueError, match="plain name"):
        create_label_image(image, "a/b", **kw)
    with pytest.raises(ValueError, match="4 integers 0-255"):
        create_label_image(image, "c", colors={1: (0, 0, 300, 0)}, **kw)
    create_label_image(image, "ok", **kw)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        create_label_image(image, "ok", **kw)
    with pytest.raises(KeyError, match="no dataset 'nope'"):
        create_label_image(f"{tmp_path}/v.zarr/nope", "x", **kw)
    write_ome_zarr(
        tmp_path / "v.zarr" / "affs",
        np.zeros((3, 6, 20, 24), np.float32),
        axes="czyx",
        voxel_size=(40, 4, 4),
        chunks=(3, 6, 20, 24),
    )
    with pytest.raises(ValueError, match="need a \\(plane, row, column\\) image"):
        create_label_image(f"{tmp_path}/v.zarr/affs", "x", **kw)


def test_alias_keeps_a_moved_address_readable(tmp_path, raw):
    image = _image_with_levels(tmp_path / "v.zarr" / "raw", raw, n_levels=1)
    write_label_image(image, "neuron_ids", raw.astype(np.uint64), chunks=(6, 20, 24))
    add_alias(tmp_path / "v.zarr", "labels", "raw/labels/neuron_ids")
    np.testing.assert_array_equal(open_volume(f"{tmp_path}/v.zarr/labels").data.compute(), raw)
    with pytest.raises(KeyError, match="no dataset 'other'"):
        open_volume(f"{tmp_path}/v.zarr/other")


def test_aliases_of_a_root_image_and_its_labels_group(tmp_path, raw):
    """The image at the root: ``raw`` names the root, ``raw/...`` what is under it, ``labels`` the label image
    although a labels group of that name exists; members win over aliased prefixes; no chains."""
    root = _image_with_levels(tmp_path / "r.zarr", raw, n_levels=2)
    ids = (raw // 64).astype(np.uint64)
    write_label_image(root, "neuron_ids", ids, chunks=(6, 20, 24))
    write_label_image(root, "labels_mask", (raw > 9).astype(np.uint8), chunks=(6, 20, 24))
    with pytest.raises(
        ValueError,
        match=r"r.zarr/labels is an NGFF labels group; name one of its label images: "
        r".*r.zarr/labels/neuron_ids, .*r.zarr/labels/labels_mask",
    ):
        open_volume(f"{root}/labels")
    add_alias(root, "raw", "")
    add_alias(root, "labels", "labels/neuron_ids")
    add_alias(root, "labels_mask", "labels/labels_mask")
    np.testing.assert_array_equal(open_volume(f"{root}/raw").data.compute(), raw)
    assert open_volume(f"{root}/raw", level=1).shape == (6, 10, 12)
    np.testing.assert_array_equal(open_volume(f"{root}/raw/0").data.compute(), raw)  # an array under the alias
    for address in ("labels", "labels/neuron_ids", "raw/labels/neuron_ids"):
        np.testing.assert_array_equal(open_volume(f"{root}/{address}", role="labels").data.compute(), ids)
    assert open_volume(f"{root}/labels", level=1).shape == (6, 10, 12)
    np.testing.assert_array_equal(open_volume(f"{root}/labels_mask").data.compute(), raw > 9)
    np.testing.assert_array_equal(open_volume(f"{root}/raw/labels/labels_mask").data.compute(), raw > 9)
    assert resolve_address(f"{root}/raw") == root
    assert resolve_address(f"{root}/raw/labels/neuron_ids") == f"{root}/labels/neuron_ids"
    assert resolve_address(f"{root}/labels") == f"{root}/labels/neuron_ids"
    assert resolve_address(f"{root}/labels/labels_mask") == f"{root}/labels/labels_mask"
    assert has_dataset(root, "raw") and has_dataset(root, "labels_mask") and not has_dataset(root, "nope")
    with pytest.raises(KeyError, match="no dataset 'raw/nope'"):
        open_volume(f"{root}/raw/nope")
    add_alias(root, "a", "b")
    add_alias(root, "b", "0")
    with pytest.raises(KeyError, match="no dataset 'a'"):  # followed once: 'a' -> 'b', not on to '0'
        open_volume(f"{root}/a")


def test_segmentation_in_its_own_container_opens_over_its_image(tmp_path, raw):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Labels, Multiscales, Reader
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v05.image_label import ImageLabel
    from ome_zarr_models.v05.labels import Labels as LabelsGroup

    image = _image_with_levels(tmp_path / "sim.zarr", raw, n_levels=1)  # the image is the container root
    write_label_image(image, "neuron_ids", (raw // 64).astype(np.uint64), chunks=(6, 20, 24))
    add_alias(image, "raw", "")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "sim.zarr").rglob("*"))
    seg = create_segmentation_image(
        tmp_path / "seg.zarr",
        "seg_0.5",
        shape=raw.shape,
        dtype=np.uint64,
        chunks=(6, 20, 24),
        source_image=f"{image}/raw",
    )  # an alias of the root
    seg[...] = raw // 50
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "sim.zarr").rglob("*")) == before  # input untouched
    vol = open_volume(f"{tmp_path}/seg.zarr/seg_0.5", role="labels")
    assert vol.voxel_size == (40.0, 4.0, 4.0) and vol.offset == (80.0, 8.0, 8.0)
    meta = ImageLabel.from_zarr(zarr.open_group(f"{tmp_path}/seg.zarr/seg_0.5", mode="r")).ome_attributes
    assert meta.image_label.source.image == "../../sim.zarr/"  # where the image is, for readers without aliases
    nodes = list(Reader(parse_url(f"{tmp_path}/seg.zarr/seg_0.5"))())
    names = [Path(str(n.zarr.path)).name for n in nodes]  # the image (with its own labels), then the segmentation
    assert names == ["sim.zarr", "labels", "neuron_ids", "seg_0.5"] and not nodes[0].visible
    assert Label in {type(s) for s in nodes[-1].specs}
    np.testing.assert_array_equal(np.asarray(nodes[-1].data[0]), raw // 50)
    # without a source image the voxel size must be given; the shape must match the image's
    plain = create_segmentation_image(
        tmp_path / "seg.zarr", "fragments", shape=raw.shape, dtype=np.uint32, chunks=(6, 20, 24), voxel_size=(40, 4, 4)
    )
    assert "source" not in zarr.open_group(f"{tmp_path}/seg.zarr/fragments", mode="r").attrs["ome"]["image-label"]
    assert plain.dtype == np.uint32
    # the container root lists its segmentations: a reader given seg.zarr opens them over the image
    root = open_ome_zarr(zarr.open_group(f"{tmp_path}/seg.zarr", mode="r"))
    assert isinstance(root, LabelsGroup) and root.ome_attributes.labels == ["seg_0.5", "fragments"]
    nodes = list(Reader(parse_url(f"{tmp_path}/seg.zarr"))())
    kinds = {str(Path(str(n.zarr.path)).relative_to(tmp_path)): {type(s) for s in n.specs} for n in nodes}
    assert kinds == {
        "seg.zarr": {Labels},
        "sim.zarr": {Multiscales},
        "sim.zarr/labels": {Labels},
        "sim.zarr/labels/neuron_ids": {Label, Multiscales},
        "seg.zarr/seg_0.5": {Label, Multiscales},
        "seg.zarr/fragments": {Label, Multiscales},
    }
    with pytest.raises(ValueError, match="pass voxel_size"):
        create_segmentation_image(tmp_path / "seg.zarr", "x", shape=raw.shape, dtype=np.uint64, chunks=(6, 20, 24))
    with pytest.raises(ValueError, match="does not match its image"):
        create_segmentation_image(
            tmp_path / "seg.zarr", "y", shape=(6, 20, 25), dtype=np.uint64, chunks=(6, 20, 25), source_image=image
        )
    with pytest.raises(TypeError, match="integer dtype"):
        create_segmentation_image(
            tmp_path / "seg.zarr", "z", shape=raw.shape, dtype=np.float32, chunks=(6, 20, 24), source_image=image
        )
    write_ome_zarr(
        tmp_path / "pred.zarr" / "affs",
        np.zeros((3, *raw.shape), np.float32),
        axes="czyx",
        voxel_size=(40, 4, 4),
        chunks=(3, 6, 20, 24),
    )
    with pytest.raises(ValueError, match="source image must be \\(plane, row, column\\)"):
        create_segmentation_image(
            tmp_path / "seg.zarr",
            "a",
            shape=raw.shape,
            dtype=np.uint64,
            chunks=(6, 20, 24),
            source_image=f"{tmp_path}/pred.zarr/affs",
        )


def test_simulated_container_is_an_image_with_label_images(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v05.image import Image

    from connectomics.simulate import simulate_to_zarr

    path = tmp_path / "sim.zarr"
    simulate_to_zarr(path, "retina", (4, 32, 32), seed=1, chunks=(4, 16, 16), levels=2, progress=False)
    # the container root is the image: a reader given sim.zarr itself finds the image and its labels
    nodes = list(Reader(parse_url(str(path)))())
    assert Path(str(nodes[0].zarr.path)) == path and Multiscales in {type(s) for s in nodes[0].specs}
    labels = [n for n in nodes if Label in {type(s) for s in n.specs}]
    assert [Path(str(n.zarr.path)).name for n in labels] == ["neuron_ids", "labels_mask"]
    for label in labels:
        assert [d.shape for d in label.data] == [d.shape for d in nodes[0].data]
    root = open_ome_zarr(zarr.open_group(str(path), mode="r"))  # validates, label levels included
    assert isinstance(root, Image) and root.labels.ome_attributes.labels == ["neuron_ids", "labels_mask"]
    ids = open_volume(f"{path}/labels/neuron_ids", role="labels")
    assert ids.dtype == np.uint64
    raw = open_volume(str(path), role="raw").data.compute()
    # every address of the layout with the image at sim.zarr/raw opens the same volume
    np.testing.assert_array_equal(open_volume(f"{path}/raw").data.compute(), raw)
    for old in ("labels", "raw/labels/neuron_ids"):
        np.testing.assert_array_equal(open_volume(f"{path}/{old}").data.compute(), ids.data.compute())
    mask = open_volume(f"{path}/labels/labels_mask").data.compute()
    np.testing.assert_array_equal(open_volume(f"{path}/labels_mask").data.compute(), mask)
    np.testing.assert_array_equal(open_volume(f"{path}/raw/labels/labels_mask").data.compute(), mask)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}


def test_tiff_must_be_a_3d_stack_like_zarr(tmp_path):
    """A 4-D TIFF is not read as its pages in a row, and a 2-D TIFF is refused as a 2-D zarr array is."""
    tifffile.imwrite(tmp_path / "four.tif", np.zeros((2, 16, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(2, 16, 64, 64\) \(4 axes\); expected a 3-D stack"):
        open_volume(tmp_path / "four.tif")
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"\(2 axes\)"):
        open_volume(tmp_path / "two.tif")
    zarr.create_array(str(tmp_path / "two.zarr"), shape=(64, 64), dtype="uint8", chunks=(64, 64))
    with pytest.raises(ValueError, match="2 axes"):
        open_volume(tmp_path / "two.zarr")
    for _ in range(3):  # pages appended one at a time still form a stack
        tifffile.imwrite(tmp_path / "pages.tif", np.ones((8, 8), np.uint8), append=True)
    assert open_volume(tmp_path / "pages.tif").data.shape == (3, 8, 8)


def test_affinities_role_refuses_inf_and_values_outside_0_1(tmp_path):
    affs = np.full((3, 4, 8, 8), 0.5, np.float32)
    write_ome_zarr(tmp_path / "ok.zarr/affs", affs, axes="czyx", voxel_size=(1, 1, 1), chunks=(3, 4, 8, 8))
    assert open_volume(tmp_path / "ok.zarr/affs", role="affinities").data.shape == affs.shape
    for name, value in (("inf", np.inf), ("big", 1.5), ("neg", -0.1)):
        bad = affs.copy()
        bad[1, 2, 3, 4] = value
        write_ome_zarr(tmp_path / f"{name}.zarr/affs", bad, axes="czyx", voxel_size=(1, 1, 1), chunks=(3, 4, 8, 8))
        with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
            open_volume(tmp_path / f"{name}.zarr/affs", role="affinities")


# ------------------------------------------------------------------------------- property: IO round trip
VOLUME_DTYPES = [
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.float32,
    np.float64,
]


@st.composite
def volumes(draw, ndims=(3, 4), dtypes=tuple(VOLUME_DTYPES), min_columns=1):
    """A small random array of 3 (plane, row, column) or 4 (channel first) axes and a storage chunking."""
    n = draw(st.sampled_from(ndims))
    shape = tuple(draw(st.integers(1, 3 if (n == 4 and a == 0) else 7)) for a in range(n - 1))
    shape += (draw(st.integers(min_columns, 7)),)
    chunks = tuple(draw(st.integers(1, s)) for s in shape)
    values = draw(hnp.arrays(draw(st.sampled_from(dtypes)), shape))
    voxel_size = tuple(draw(st.sampled_from([1.0, 4.0, 8.0, 40.0])) for _ in range(3))
    return values, chunks, voxel_size


ROUND_TRIP = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_back(address: str, values: np.ndarray) -> None:
    vol = open_volume(address)
    assert vol.shape == values.shape and vol.dtype == values.dtype
    assert vol.axes == ("c", "z", "y", "x")[-values.ndim :]
    np.testing.assert_array_equal(vol.data.compute(), values)
    # a region across chunk borders reads the same voxels as the array
    region = tuple(slice(s // 3, s - s // 4) for s in values.shape)
    np.testing.assert_array_equal(np.asarray(vol.data[region]), values[region])


@ROUND_TRIP
@given(volume=volumes())
def test_ome_zarr_round_trip(volume):
    values, chunks, voxel_size = volume
    with tempfile.TemporaryDirectory() as tmp:
        write_ome_zarr(
            f"{tmp}/v.zarr/img",
            values,
            axes="czyx"[-values.ndim :],
            voxel_size=voxel_size,
            chunks=chunks,
            offset=(8.0, 0.0, 4.0),
        )
        _read_back(f"{tmp}/v.zarr/img", values)
        vol = open_volume(f"{tmp}/v.zarr/img")
        assert vol.voxel_size == voxel_size and vol.offset == (8.0, 0.0, 4.0)
        assert vol.data.chunksize == chunks


@ROUND_TRIP
@given(volume=volumes(), zarr_format=st.sampled_from([2, 3]))
def test_plain_zarr_round_trip(volume, zarr_format):
    values, chunks, _ = volume
    with tempfile.TemporaryDirectory() as tmp:
        array = zarr.create_array(
            f"{tmp}/v.zarr", name="raw", shape=values.shape, dtype=values.dtype, chunks=chunks, zarr_format=zarr_format
        )
        array[...] = values
        _read_back(f"{tmp}/v.zarr/raw", values)


@ROUND_TRIP
@given(volume=volumes())
def test_hdf5_round_trip(volume):
    values, chunks, voxel_size = volume
    with tempfile.TemporaryDirectory() as tmp:
        with h5py.File(f"{tmp}/v.h5", "w") as f:
            f.create_dataset("volumes/raw", data=values, chunks=chunks)
            f["volumes/raw"].attrs["resolution"] = voxel_size
        _read_back(f"{tmp}/v.h5:volumes/raw", values)
        assert open_volume(f"{tmp}/v.h5:volumes/raw").voxel_size == voxel_size


@ROUND_TRIP
@given(volume=volumes(ndims=(3,), dtypes=(np.uint8, np.uint16, np.float32), min_columns=2))
def test_tiff_round_trip(volume):
    # tifffile writes an array whose last axis is 1 as one-sample pixels of the axes before it (a 2-D image),
    # which the reader rightly refuses as not a 3-D stack: one column is left out here
    values, _, _ = volume
    with tempfile.TemporaryDirectory() as tmp:
        tifffile.imwrite(f"{tmp}/v.tif", values, photometric="minisblack")  # not RGB when a side is 3 or 4
        _read_back(f"{tmp}/v.tif", values)
