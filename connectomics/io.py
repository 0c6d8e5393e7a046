"""Volume IO: open zarr / OME-Zarr / CREMI HDF5 / TIFF volumes lazily, write OME-Zarr chunk by chunk.

Contract (other modules code against exactly these names)
---------------------------------------------------------
``parse_volume_path(path) -> (container, dataset | None)``
    ``"vol.zarr/raw"`` -> ``(Path("vol.zarr"), "raw")``; ``"file.h5:volumes/raw"`` ->
    ``(Path("file.h5"), "volumes/raw")``; ``"stack.tif"`` -> ``(Path("stack.tif"), None)``.
:class:`Volume`
    ``data`` (lazy ``dask.array.Array``), ``axes`` (``("z", "y", "x")`` or ``("c", "z", "y", "x")``),
    ``voxel_size`` (nm, one float per spatial axis), ``offset`` (nm), ``path`` (str).
``open_volume(path, *, level=0, role=None) -> Volume``
    zarr v2/v3 arrays and groups, OME-Zarr multiscales (NGFF 0.4 and 0.5), CREMI HDF5, TIFF stacks.
``create_ome_zarr_array(path, *, shape, dtype, chunks, axes, voxel_size, offset=None, fill_value=0,
exists_ok=False) -> zarr.Array``
    Creates (never erases) an NGFF 0.5 image group with scale level ``"0"`` and returns that array.
``write_ome_zarr(path, data, *, axes, voxel_size, chunks, ...)``
    Writes a whole numpy or dask array chunk by chunk.
``add_multiscale_levels(path, n_levels, *, method, factors=None)``
    Adds downsampled levels (``"mean"`` for images, ``"mode"`` for labels) and updates the metadata.
``create_label_image(image_path, name, *, dtype, chunks, ...) -> zarr.Array`` / ``write_label_image(...)``
    NGFF label images ``<image>/labels/<name>`` (segmentations, ground truth, masks) that OME-Zarr viewers
    show as labels over the image; ``match_image_levels`` gives them the parent image's scale levels.
``create_segmentation_image(container, name, *, shape, dtype, chunks, source_image=None, ...)``
    A segmentation in its own container (``seg.zarr/seg_0.5``) read as a label image of ``source_image``.
``add_alias(container, alias, target)`` / ``resolve_address(path)`` / ``has_dataset(container, dataset)``
    Addresses that moved keep opening (``sim.zarr/raw`` -> ``sim.zarr``); the address an alias names.

Label images (NGFF 0.5, https://ngff.openmicroscopy.org/0.5/#labels-md)
------------------------------------------------------------------------
A label image lives in the ``labels`` group of the image it annotates, e.g. ``sim.zarr/labels/neuron_ids``
beside the scale arrays ``sim.zarr/0``, ``sim.zarr/1``. The ``labels`` group lists its label images
(``ome.labels``); each label image is a multiscale image with the same number of levels as its parent
(downsampled by mode, so no new ids appear) plus ``ome.image-label``: ``colors`` (``label-value`` -> RGBA
0-255; 0 is transparent), optional ``properties`` and ``source.image = "../../"`` (the parent). Any
address of such an image opens with :func:`open_volume` like any other image. We write NGFF 0.5 (zarr v3)
because our stores are zarr v3 and both ``ome_zarr.reader`` (ome-zarr 0.18) and ``ome-zarr-models`` 1.7
read and validate it (tests/test_connectomics_io.py).

Container roots. A reader pointed at a container opens only what its root's metadata says: ome-zarr's
``Reader`` (and so napari-ome-zarr) recognises a root with ``multiscales`` (an image; it then opens the
image's ``labels`` group), ``labels`` (a labels group), ``plate`` or ``well``; it does not follow a
``bioformats2raw.layout`` root to its series (only ``ome_zarr.utils``' finder does), and neuroglancer's zarr
source needs ``multiscales`` at the address it is given. A plate (HCS wells) does not describe a volume. So
the simulator's container root *is* the image: ``sim.zarr`` holds ``ome.multiscales`` and the levels
``sim.zarr/0``, ``sim.zarr/1``, ..., with ``sim.zarr/labels/{neuron_ids,labels_mask}``, and
``napari sim.zarr`` or neuroglancer on ``sim.zarr`` show the image with its labels. A segmentation container
(``seg.zarr``) holds no image of its own: its root is a labels group listing its ``seg_<t>`` (NGFF places a
labels group inside its image; a root that is one is our use of the spec, which ``ome_zarr.reader`` and
``ome-zarr-models`` accept, tested), each linked to the raw image by ``source.image``, so a reader opening
``seg.zarr`` shows every segmentation over the raw image.

Viewing. napari with the ``napari-ome-zarr`` plugin: ``napari --plugin napari-ome-zarr sim.zarr`` opens the
raw image and every listed label image as a labels layer, hidden at first as ome-zarr adds an image's labels
(NGFF 0.5 needs ome-zarr >= 0.12); ``napari --plugin napari-ome-zarr seg.zarr`` opens each segmentation
and, through its ``source.image``, the raw image and its ground truth (hidden at first).
Neuroglancer (zarr data source, OME-Zarr 0.5 over zarr v3): serve the folder with CORS (e.g.
``npx http-server --cors -p 8000``), add the image as ``http://localhost:8000/sim.zarr/|zarr3:`` and each
label image as ``http://localhost:8000/sim.zarr/labels/neuron_ids/|zarr3:`` (older releases:
``zarr3://http://localhost:8000/sim.zarr/labels/neuron_ids``) with layer type *segmentation*;
neuroglancer reads the multiscales of a label image but not ``image-label`` or the ``labels`` list
(google/neuroglancer src/datasource/zarr; not checked in a browser here), so each label image is added by
its address. Neuroglancer reads uint8/16/32/64 and int8/16/32 but not int64: write labels as unsigned
integers (the simulator writes uint64 ids and a uint8 mask).

Old addresses. A container can record aliases (:func:`add_alias`, root attribute ``aliases``): the
simulator records ``raw -> ""`` (the root), ``labels -> labels/neuron_ids`` and ``labels_mask ->
labels/labels_mask``, so ``sim.zarr/raw``, ``sim.zarr/raw/labels/neuron_ids``, ``sim.zarr/labels`` and
``sim.zarr/labels_mask`` (the addresses of earlier layouts) open what they opened before. ``labels`` is
both the NGFF labels group and an alias: :func:`open_volume` follows the alias (a labels group is not a
volume; opening a labels group without one names its label images), while readers that know no aliases
(ome-zarr, napari, neuroglancer) see the NGFF group. Give those readers :func:`resolve_address` of an
address (the segmenter does so for ``source.image``). Containers written before the image moved to the
root (image at ``sim.zarr/raw``) keep their layout and stay readable and resumable.

Axes are always ordered (channel, plane, row, column) = ``("c", "z", "y", "x")``; voxel sizes and offsets
are in nanometres and list the spatial axes only. Reading never loads a whole volume: every format is
wrapped as a dask array whose chunks are the storage chunks (one plane for TIFF), so memory is bounded by
the chunks a computation touches.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import zarr

from shared.cli import UserError

SPATIAL_AXES = ("z", "y", "x")
ZARR_SUFFIXES = (".zarr", ".n5")
HDF5_SUFFIXES = (".h5", ".hdf", ".hdf5")
TIFF_SUFFIXES = (".tif", ".tiff")
NGFF_VERSION = "0.5"


@dataclass
class Volume:
    """A lazily read volume with its geometry.

    Attributes
    ----------
    data : dask.array.Array of shape (plane, row, column) or (channel, plane, row, column).
    axes : axis names, ``("z", "y", "x")`` or ``("c", "z", "y", "x")``.
    voxel_size : nm per voxel along (plane, row, column).
    offset : world position (nm) of the first voxel along (plane, row, column).
    path : the address it was opened from.
    """

    data: da.Array
    axes: tuple[str, ...]
    voxel_size: tuple[float, ...]
    offset: tuple[float, ...]
    path: str
    stored: Any = None
    """The zarr array read (None for HDF5 and TIFF): where :meth:`missing_chunks` looks."""

    def missing_chunks(self) -> int:
        """How many storage chunks of a zarr volume are absent (they read as the fill value).

        zarr leaves a chunk out when it was never written, or when it held only the fill value (zarr 3
        does not store such chunks by default), so a nonzero count may be a partial copy or an empty region.
        0 for HDF5 and TIFF.
        """
        if self.stored is None:
            return 0
        return int(self.stored.nchunks - self.stored.nchunks_initialized)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape[-3:])  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype


# ----------------------------------------------------------------------------------------------- paths
def parse_volume_path(path: str | Path) -> tuple[Path, str | None]:
    """Split a volume address into its container and the dataset inside it.

    Parameters
    ----------
    path : ``"vol.zarr/raw"`` (zarr container + dataset path), ``"file.h5:volumes/raw"`` (HDF5 file +
        dataset), ``"stack.tif"`` (TIFF stack), or a bare container (``"vol.zarr"``).

    Returns
    -------
    container : Path of the zarr root folder, HDF5 file or TIFF file.
    dataset : path inside the container, or None when the address names the container itself.

    Examples
    --------
    >>> parse_volume_path("vol.zarr/raw")
    (PosixPath('vol.zarr'), 'raw')
    >>> parse_volume_path("sample_A.hdf:volumes/labels/neuron_ids")
    (PosixPath('sample_A.hdf'), 'volumes/labels/neuron_ids')
    >>> parse_volume_path("stack.tif")
    (PosixPath('stack.tif'), None)
    """
    text = str(path)
    if "\x00" in text:
        raise ValueError(f"volume path contains a NUL byte: {text!r}")
    lowered = text.lower()
    for suffix in HDF5_SUFFIXES:
        marker = lowered.find(suffix + ":")
        if marker >= 0:
            cut = marker + len(suffix)
            dataset = text[cut + 1 :].strip("/")
            return Path(text[:cut]), dataset or None
    if lowered.endswith(TIFF_SUFFIXES + HDF5_SUFFIXES):
        return Path(text), None
    parts = Path(text).parts
    for i, part in enumerate(parts):
        if part.lower().endswith(ZARR_SUFFIXES):
            rest = "/".join(parts[i + 1 :])
            return Path(*parts[: i + 1]), rest or None
    return Path(text), None


# ------------------------------------------------------------------------------------------- reading
class MissingDatasetError(UserError, KeyError):
    """A volume address names a dataset its container does not hold (the message lists what it holds).

    A ``KeyError`` for callers that catch one, and a one-line user error (exit 2) on the command line.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class _ChunkReader:
    """Array-like wrapper used by ``dask.array.from_array``: reads a region and names the culprit on error.

    zarr and h5py raise bare codec errors for a corrupt chunk; the message here says which volume and which
    region could not be read.
    """

    def __init__(self, array: Any, path: str, lock: Any = None) -> None:
        self.array, self.path, self.lock = array, path, lock
        self.shape, self.dtype, self.ndim = tuple(array.shape), np.dtype(array.dtype), len(array.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            if self.lock is not None:
                with self.lock:
                    return np.asarray(self.array[key])
            return np.asarray(self.array[key])
        except Exception as err:
            raise OSError(f"corrupt or unreadable chunk in {self.path} at {key}: {type(err).__name__}: {err}") from err


def _as_dask(array: Any, path: str, chunks: Any, lock: Any = None) -> da.Array:
    return da.from_array(
        _ChunkReader(array, path, lock),
        chunks=chunks,
        asarray=False,
        fancy=False,
        name=f"volume-{path}-{abs(hash((path, tuple(array.shape))))}",
        lock=False,
        meta=np.empty((0,) * len(array.shape), dtype=array.dtype),
    )


def _multiscales(attrs: dict[str, Any]) -> tuple[list[dict[str, Any]], str] | None:
    """The NGFF ``multiscales`` list and its version from group attributes (0.5 nests it under ``ome``)."""
    if isinstance(attrs.get("ome"), dict) and "multiscales" in attrs["ome"]:
        return attrs["ome"]["multiscales"], str(attrs["ome"].get("version", "0.5"))
    if "multiscales" in attrs:
        ms = attrs["multiscales"]
        return ms, str(ms[0].get("version", "0.4")) if ms else "0.4"
    return None


def _transforms(transforms: list[dict[str, Any]], ndim: int) -> tuple[list[float], list[float]]:
    scale, translation = [1.0] * ndim, [0.0] * ndim
    for t in transforms or []:
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation":
            translation = [float(v) for v in t["translation"]]
    return scale, translation


def _unit_factor(unit: str | None) -> float:
    """Multiply by this to get nanometres."""
    return {
        None: 1.0,
        "": 1.0,
        "nanometer": 1.0,
        "angstrom": 0.1,
        "micrometer": 1e3,
        "millimeter": 1e6,
        "meter": 1e9,
    }.get(unit, 1.0)


def _list_zarr(node: Any, prefix: str = "") -> list[str]:
    """Every array path under a zarr group (for 'what is there' messages)."""
    found = []
    for name, member in sorted(node.members(), key=lambda kv: kv[0]):
        path = f"{prefix}{name}"
        if isinstance(member, zarr.Array):
            found.append(f"{path} {tuple(member.shape)} {member.dtype}")
        else:
            found.extend(_list_zarr(member, path + "/"))
    return found


def _resolve_alias(root: Any, dataset: str) -> str:
    """The path inside the container that ``dataset`` names, following the root's ``aliases`` attribute.

    An alias that is the whole address wins over a member of the same name (the NGFF ``labels`` group of a
    root image is not a volume; the alias ``labels`` names the label image the address meant before); a
    member wins over an alias that is only a prefix (``labels/neuron_ids`` is itself); an address that is
    not there has its longest aliased prefix replaced (``raw/labels/x`` -> ``labels/x`` when ``raw`` is an
    alias of the root, ``""``). Aliases are followed once, never chained.
    """
    aliases = root.attrs.get("aliases", {}) if isinstance(root, zarr.Group) else {}
    if not isinstance(aliases, dict) or not aliases:
        return dataset
    dataset = dataset.strip("/")
    if dataset in aliases:
        return str(aliases[dataset]).strip("/")
    if dataset in root:
        return dataset
    parts = dataset.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = "/".join(parts[:cut])
        if prefix in aliases:
            return "/".join(p for p in (str(aliases[prefix]).strip("/"), *parts[cut:]) if p)
    return dataset


def _member(root: Any, inner: str) -> Any:
    """``root[inner]``, the root itself for ``""``."""
    return root[inner] if inner else root


def _open_zarr(container: Path, dataset: str | None, level: int, address: str) -> Volume:
    if not container.exists():
        raise FileNotFoundError(f"volume {address}: {container} does not exist")
    try:
        root = zarr.open(store=str(container), mode="r")
    except Exception as err:
        raise ValueError(
            f"volume {address}: {container} is not a readable zarr container (missing or "
            f"corrupt .zarray/.zgroup/zarr.json metadata): {type(err).__name__}: {err}"
        ) from err
    node = root
    if dataset:
        try:
            node = _member(root, _resolve_alias(root, dataset))
        except KeyError:
            listing = _list_zarr(root) if isinstance(root, zarr.Group) else []
            raise MissingDatasetError(
                f"volume {address}: no dataset {dataset!r} in {container}; it holds: {', '.join(listing) or 'nothing'}"
            ) from None
        except Exception as err:
            raise ValueError(
                f"volume {address}: dataset {dataset!r} in {container} has corrupt metadata: "
                f"{type(err).__name__}: {err}"
            ) from err
    axes: tuple[str, ...] | None = None
    voxel_size: list[float] | None = None
    offset: list[float] | None = None
    if isinstance(node, zarr.Group):
        found = _multiscales(dict(node.attrs))
        if found is None:
            attrs = dict(node.attrs)
            listed = attrs["ome"].get("labels") if isinstance(attrs.get("ome"), dict) else attrs.get("labels")
            if listed:  # an NGFF labels group: say which label images it holds, not their arrays
                images = ", ".join(f"{address.rstrip('/')}/{n}" for n in listed)
                raise ValueError(f"volume {address} is an NGFF labels group; name one of its label images: {images}")
            raise ValueError(
                f"volume {address} is a zarr group without OME-Zarr 'multiscales' metadata; name "
                f"one of its arrays: {', '.join(_list_zarr(node)) or 'it is empty'}"
            )
        multiscales, _version = found
        ms = multiscales[0]
        datasets = ms["datasets"]
        if not 0 <= level < len(datasets):
            raise ValueError(f"volume {address} has {len(datasets)} scale level(s); level {level} does not exist")
        axes_meta = ms.get("axes", [])
        names = [a["name"] if isinstance(a, dict) else str(a) for a in axes_meta]
        units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
        try:
            array = node[datasets[level]["path"]]
        except KeyError:
            raise ValueError(
                f"volume {address}: multiscales lists level {datasets[level]['path']!r} but the "
                f"array is missing (partial write?)"
            ) from None
        ndim = len(array.shape)
        scale, translation = _transforms(datasets[level].get("coordinateTransformations", []), ndim)
        top_scale, top_translation = _transforms(ms.get("coordinateTransformations", []), ndim)
        names = names or list(_default_axes(ndim, address))
        units = units or [None] * ndim
        axes = tuple(names)
        spatial = [i for i, n in enumerate(names) if n in SPATIAL_AXES]
        voxel_size = [scale[i] * top_scale[i] * _unit_factor(units[i]) for i in spatial]
        offset = [(translation[i] * top_scale[i] + top_translation[i]) * _unit_factor(units[i]) for i in spatial]
        name = f"{address}[level {level}]" if level else address
    else:
        if level != 0:
            raise ValueError(f"volume {address} is a single zarr array; it has no scale level {level}")
        array = node
        attrs = dict(array.attrs)
        dims = (
            getattr(array.metadata, "dimension_names", None)
            or attrs.get("_ARRAY_DIMENSIONS")
            or attrs.get("axis_names")
        )
        if dims and all(d for d in dims):
            axes = tuple(str(d) for d in dims)
        for key in ("voxel_size", "resolution"):
            if key in attrs:
                voxel_size = [float(v) for v in attrs[key]]
        if "offset" in attrs:
            offset = [float(v) for v in attrs["offset"]]
        name = address
    if axes is None:
        axes = _default_axes(len(array.shape), address)
    _check_axes(axes, tuple(array.shape), address)
    n_spatial = 3
    voxel_size = voxel_size or [1.0] * n_spatial
    offset = offset or [0.0] * n_spatial
    data = _as_dask(array, name, chunks=tuple(array.chunks))
    vol = _volume(data, axes, voxel_size, offset, address)
    vol.stored = array
    return vol


def _default_axes(ndim: int, address: str) -> tuple[str, ...]:
    if ndim == 3:
        return SPATIAL_AXES
    if ndim == 4:
        return ("c",) + SPATIAL_AXES
    raise ValueError(
        f"volume {address} has {ndim} axes; expected 3 (plane, row, column) or 4 (channel, plane, row, column)"
    )


def _check_axes(axes: tuple[str, ...], shape: tuple[int, ...], address: str) -> None:
    if len(axes) != len(shape):
        raise ValueError(f"volume {address}: {len(axes)} axis names {axes} for an array of {len(shape)} axes")
    if len(shape) not in (3, 4):
        raise ValueError(
            f"volume {address} has {len(shape)} axes {axes}; expected 3 (plane, row, column) or "
            f"4 (channel, plane, row, column)"
        )
    if tuple(axes[-3:]) != SPATIAL_AXES or (len(axes) == 4 and axes[0] != "c"):
        raise ValueError(
            f"volume {address} has axes {axes}; expected ('z', 'y', 'x') or "
            f"('c', 'z', 'y', 'x') (time axes and other orders are not supported)"
        )


def _volume(
    data: da.Array, axes: tuple[str, ...], voxel_size: Sequence[float], offset: Sequence[float], address: str
) -> Volume:
    if len(voxel_size) != 3 or len(offset) != 3:
        raise ValueError(
            f"volume {address}: voxel size {tuple(voxel_size)} / offset {tuple(offset)} must "
            f"have one value per spatial axis (plane, row, column)"
        )
    if any(not math.isfinite(v) or v <= 0 for v in voxel_size):
        raise ValueError(f"volume {address}: voxel size must be positive, got {tuple(voxel_size)}")
    if data.dtype.kind not in "iuf" or data.dtype.itemsize > 8:
        raise TypeError(
            f"volume {address} has dtype {data.dtype}; expected an integer (labels, raw) or "
            f"float (raw, affinities) dtype"
        )
    return Volume(data, tuple(axes), tuple(float(v) for v in voxel_size), tuple(float(v) for v in offset), address)


def _open_hdf5(container: Path, dataset: str | None, address: str) -> Volume:
    import threading

    import h5py

    if not container.is_file():
        raise FileNotFoundError(f"volume {address}: {container} does not exist")
    try:
        f = h5py.File(container, "r")
    except OSError as err:
        raise ValueError(f"volume {address}: {container} is not a readable HDF5 file: {err}") from err
    listing: list[str] = []
    f.visititems(
        lambda n, obj: listing.append(f"{n} {obj.shape} {obj.dtype}") if isinstance(obj, h5py.Dataset) else None
    )
    if dataset is None:
        raise ValueError(
            f"volume {address}: name a dataset inside the HDF5 file as {container}:DATASET, e.g. "
            f"{container}:volumes/raw; it holds: {', '.join(listing) or 'nothing'}"
        )
    if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
        raise MissingDatasetError(
            f"volume {address}: no dataset {dataset!r} in {container}; it holds: {', '.join(listing) or 'nothing'}"
        )
    ds = f[dataset]
    axes = _default_axes(ds.ndim, address)
    attrs = dict(ds.attrs)
    voxel_size = [float(v) for v in attrs.get("resolution", [1.0, 1.0, 1.0])]
    offset = [float(v) for v in attrs.get("offset", [0.0, 0.0, 0.0])]
    chunks = ds.chunks or tuple(min(s, c) for s, c in zip(ds.shape, (1,) * (ds.ndim - 2) + (1024, 1024)))
    data = _as_dask(ds, address, chunks=chunks, lock=threading.Lock())  # h5py is not thread-safe
    return _volume(data, axes, voxel_size, offset, address)


class _TiffPlanes:
    """Reads a multi-page TIFF stack one page (plane) at a time."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = path
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            first = pages[0]
            self.n = len(pages)
            self.page_shape = tuple(first.shape)
            self.dtype = np.dtype(first.dtype)
            self.voxel_size = _tiff_voxel_size(tif)
            # the shape the writer declared (pages may hold a 4-D image); pages appended one by one form
            # one 2-D series each
            series = tif.series
            self.series_shape = (
                tuple(series[0].shape)
                if len(series) == 1 or any(len(s.shape) != 2 for s in series)
                else (len(series), *self.page_shape)
            )
        self.shape = (self.n, *self.page_shape)
        self.ndim = len(self.shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        import tifffile

        zs = range(*key[0].indices(self.n))
        with tifffile.TiffFile(self.path) as tif:
            planes = [tif.pages[z].asarray()[key[1:]] for z in zs]
        return np.stack(planes) if planes else np.empty((0, *self.page_shape), self.dtype)[(slice(None),) + key[1:]]


def _tiff_voxel_size(tif: Any) -> list[float]:
    """(plane, row, column) nm from ImageJ metadata (``spacing`` + resolution tags, unit um/nm), else ones."""
    meta = tif.imagej_metadata or {}
    try:
        page = tif.pages[0]
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
        unit_scale = {"micron": 1e3, "um": 1e3, "\\u00B5m": 1e3, "µm": 1e3, "nm": 1.0}.get(meta.get("unit"), None)
        if unit_scale is None:
            return [1.0, 1.0, 1.0]
        x = xres[1] / xres[0] * unit_scale
        y = yres[1] / yres[0] * unit_scale
        z = float(meta.get("spacing", 1.0)) * unit_scale
        return [z, y, x]
    except (KeyError, ZeroDivisionError, TypeError, IndexError):
        return [1.0, 1.0, 1.0]


def _open_tiff(container: Path, address: str) -> Volume:
    if not container.is_file():
        raise FileNotFoundError(f"volume {address}: {container} does not exist")
    try:
        planes = _TiffPlanes(container)
    except Exception as err:
        raise ValueError(f"volume {address}: {container} is not a readable TIFF: {err}") from err
    if len(planes.page_shape) != 2:
        raise ValueError(
            f"volume {address}: TIFF pages have shape {planes.page_shape}; expected 2-D "
            f"grey-scale pages (one plane each)"
        )
    if len(planes.series_shape) != 3 or planes.series_shape != planes.shape:
        # a 2-D image is refused like a 2-D zarr array; a 4-D stack must not be read as its pages in a row
        raise ValueError(
            f"volume {address}: the TIFF holds an image of shape {planes.series_shape} "
            f"({len(planes.series_shape)} axes); expected a 3-D stack (plane, row, column) of "
            "2-D grey-scale pages"
        )
    data = _as_dask(planes, address, chunks=(1, *planes.page_shape))
    return _volume(data, SPATIAL_AXES, planes.voxel_size, [0.0, 0.0, 0.0], address)


def open_volume(
    path: str | Path, *, level: int = 0, role: Literal["raw", "labels", "affinities"] | None = None
) -> Volume:
    """Open a volume lazily, with its axes and voxel size.

    Parameters
    ----------
    path : a volume address (see :func:`parse_volume_path`): ``vol.zarr/raw`` (zarr v2 or v3 array, or an
        OME-Zarr image group), ``file.h5:volumes/raw`` (CREMI-style HDF5; the ``resolution`` and ``offset``
        attributes give voxel size and offset in nm), ``stack.tif`` (multi-page TIFF).
    level : scale level of an OME-Zarr multiscale image (0 = full resolution).
    role : optional check of what the volume must be: ``"raw"`` (3 axes, integer or float dtype, no NaN;
        the NaN check reads the volume chunk by chunk), ``"labels"`` (3 axes, integer dtype),
        ``"affinities"`` (4 axes, float or uint8 dtype; float values finite and in [0, 1], read chunk by
        chunk).

    Returns
    -------
    Volume with ``data`` a dask array of shape (plane, row, column) or (channel, plane, row, column).

    Raises
    ------
    FileNotFoundError, KeyError (missing dataset; the message lists what the container holds),
    ValueError (wrong number of axes, corrupt metadata, NaN in raw), TypeError (unexpected dtype).

    Examples
    --------
    >>> import tempfile; tmp = tempfile.mkdtemp()
    >>> _ = write_ome_zarr(f"{tmp}/sim.zarr/raw", np.zeros((8, 32, 32), np.uint8), axes="zyx",
    ...                    voxel_size=(40, 8, 8), chunks=(8, 32, 32))
    >>> vol = open_volume(f"{tmp}/sim.zarr/raw")
    >>> vol.data.shape, vol.axes, vol.voxel_size
    ((8, 32, 32), ('z', 'y', 'x'), (40.0, 8.0, 8.0))
    """
    address = str(path)
    container, dataset = parse_volume_path(address)
    suffix = container.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        vol = _open_hdf5(container, dataset, address)
    elif suffix in TIFF_SUFFIXES:
        vol = _open_tiff(container, address)
    else:
        vol = _open_zarr(container, dataset, level, address)
    if role is not None:
        check_role(vol, role)
    return vol


def check_role(vol: Volume, role: str) -> None:
    """Raise a clear error unless ``vol`` can serve as ``role`` (``raw``, ``labels`` or ``affinities``)."""
    if role == "raw":
        if vol.data.ndim != 3:
            raise ValueError(f"raw volume {vol.path} must have 3 axes (plane, row, column), got {vol.axes}")
        if vol.dtype.kind == "f":
            n_nan = int(da.isnan(vol.data).sum().compute())
            if n_nan:
                raise ValueError(f"raw volume {vol.path} contains {n_nan} NaN voxel(s)")
    elif role == "labels":
        if vol.data.ndim != 3:
            raise ValueError(f"labels volume {vol.path} must have 3 axes (plane, row, column), got {vol.axes}")
        if vol.dtype.kind not in "iu":
            raise TypeError(f"labels volume {vol.path} must have an integer dtype (e.g. uint64), got {vol.dtype}")
    elif role == "affinities":
        if vol.data.ndim != 4:
            raise ValueError(
                f"affinities volume {vol.path} must have 4 axes (channel, plane, row, column), got {vol.axes}"
            )
        if vol.dtype.kind != "f" and vol.dtype != np.uint8:
            raise TypeError(f"affinities volume {vol.path} must be float or uint8, got {vol.dtype}")
        if vol.dtype.kind == "f":  # probabilities: inf, NaN or values outside [0, 1] are not affinities
            low, high, n_bad = da.compute(da.nanmin(vol.data), da.nanmax(vol.data), (~da.isfinite(vol.data)).sum())
            if n_bad or low < 0 or high > 1:
                raise ValueError(
                    f"affinities volume {vol.path} must hold probabilities in [0, 1]; it has "
                    f"{int(n_bad)} non-finite value(s) and range [{float(low)}, {float(high)}]"
                )
    else:
        raise ValueError(f"role must be 'raw', 'labels' or 'affinities'; got {role!r}")


def check_same_geometry(raw: Volume, labels: Volume) -> None:
    """Raise ``ValueError`` if a raw and a labels volume differ in spatial shape."""
    if raw.spatial_shape != labels.spatial_shape:
        raise ValueError(
            f"raw {raw.path} and labels {labels.path} must have the same shape (plane, row, "
            f"column), got {raw.spatial_shape} and {labels.spatial_shape}"
        )


# ------------------------------------------------------------------------------------------- writing
def _ngff_axes(axes: Sequence[str]) -> list[dict[str, str]]:
    out = []
    for a in axes:
        if a == "c":
            out.append({"name": "c", "type": "channel"})
        else:
            out.append({"name": a, "type": "space", "unit": "nanometer"})
    return out


def _level_transforms(
    axes: Sequence[str], voxel_size: Sequence[float], offset: Sequence[float]
) -> list[dict[str, Any]]:
    n_extra = len(axes) - 3
    scale = [1.0] * n_extra + [float(v) for v in voxel_size]
    translation = [0.0] * n_extra + [float(v) for v in offset]
    out: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
    if any(translation):
        out.append({"type": "translation", "translation": translation})
    return out


def _split_group_path(path: str | Path) -> tuple[Path, str]:
    """Container root and the group path inside it (``"."``-free; empty string for the root itself)."""
    container, dataset = parse_volume_path(path)
    if container.suffix.lower() in HDF5_SUFFIXES + TIFF_SUFFIXES:
        raise ValueError(f"OME-Zarr output must be a zarr path like out.zarr/affs, got {path}")
    return container, dataset or ""


def _open_image_group(path: str | Path, *, create: bool) -> zarr.Group:
    container, inner = _split_group_path(path)
    if create:
        root = zarr.open_group(store=str(container), mode="a", zarr_format=3)
        return root.require_group(inner) if inner else root
    root = zarr.open_group(store=str(container), mode="r+")
    return root[inner] if inner else root


def create_ome_zarr_array(
    path: str | Path,
    *,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    axes: Sequence[str],
    voxel_size: Sequence[float],
    offset: Sequence[float] | None = None,
    fill_value: Any = 0,
    exists_ok: bool = False,
) -> zarr.Array:
    """Create an empty OME-Zarr (NGFF 0.5, zarr v3) image at ``path`` and return its level-0 array.

    Nothing existing is ever erased: the container and parent groups are opened in append mode.

    Parameters
    ----------
    path : image group address, e.g. ``out.zarr/affs``.
    shape, chunks : array shape and storage chunks, one value per axis in ``axes`` order.
    dtype : numpy dtype of the array.
    axes : ``("z", "y", "x")`` or ``("c", "z", "y", "x")``.
    voxel_size, offset : nm along (plane, row, column); ``offset`` defaults to zeros.
    fill_value : value of never-written chunks.
    exists_ok : open an existing image instead of raising, if its shape, dtype and chunks match.

    Returns
    -------
    zarr.Array, the level ``"0"`` array, ready for chunkwise writes (``array[slices] = block``).

    Raises
    ------
    FileExistsError if the image exists and ``exists_ok`` is False; ValueError if it exists with another
    shape, dtype or chunks.
    """
    axes = tuple(axes)
    shape, chunks = tuple(int(s) for s in shape), tuple(int(c) for c in chunks)
    if len(shape) != len(axes) or len(chunks) != len(axes):
        raise ValueError(f"shape {shape} and chunks {chunks} need one value per axis of {axes}")
    _check_axes(axes, shape, str(path))
    offset = tuple(offset) if offset is not None else (0.0, 0.0, 0.0)
    dtype = np.dtype(dtype)
    group = _open_image_group(path, create=True)
    if "0" in group:
        if not exists_ok:
            raise FileExistsError(
                f"{path} already exists; refusing to overwrite it (choose another path, or delete it yourself)"
            )
        array = group["0"]
        found = (tuple(array.shape), np.dtype(array.dtype), tuple(array.chunks))
        if found != (shape, dtype, chunks):
            raise ValueError(
                f"{path} exists with shape {found[0]}, dtype {found[1]}, chunks {found[2]}; "
                f"requested shape {shape}, dtype {dtype}, chunks {chunks}"
            )
        return array
    array = group.create_array(
        "0", shape=shape, dtype=dtype, chunks=chunks, fill_value=fill_value, dimension_names=axes
    )
    group.attrs["ome"] = {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": str(path).rstrip("/").split("/")[-1],
                "axes": _ngff_axes(axes),
                "datasets": [{"path": "0", "coordinateTransformations": _level_transforms(axes, voxel_size, offset)}],
            }
        ],
    }
    return array


def write_ome_zarr(
    path: str | Path,
    data: np.ndarray | da.Array,
    *,
    axes: Sequence[str],
    voxel_size: Sequence[float],
    chunks: Sequence[int],
    offset: Sequence[float] | None = None,
    n_levels: int = 1,
    method: Literal["mean", "mode"] | None = None,
    exists_ok: bool = False,
) -> zarr.Array:
    """Write a whole array as an OME-Zarr image, chunk by chunk (dask stores one chunk at a time).

    Parameters
    ----------
    path : image group address, e.g. ``out.zarr/labels``.
    data : numpy or dask array of shape (plane, row, column) or (channel, plane, row, column).
    axes, voxel_size, chunks, offset, exists_ok : as in :func:`create_ome_zarr_array`.
    n_levels : total number of scale levels to write (1 = full resolution only).
    method : downsampling for extra levels, ``"mean"`` (images) or ``"mode"`` (labels); default ``"mode"``
        for 32/64-bit integers (label ids), ``"mean"`` otherwise (uint8/uint16 images, floats).

    Returns
    -------
    zarr.Array, the level-0 array.
    """
    array = create_ome_zarr_array(
        path,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        axes=axes,
        voxel_size=voxel_size,
        offset=offset,
        exists_ok=exists_ok,
    )
    src = data if isinstance(data, da.Array) else da.from_array(data, chunks=array.chunks)
    src.rechunk(array.chunks).store(array, lock=False)
    if n_levels > 1:
        dtype = np.dtype(data.dtype)
        method = method or ("mode" if dtype.kind in "iu" and dtype.itemsize >= 4 else "mean")
        add_multiscale_levels(path, n_levels - 1, method=method)
    return array


def downsample_block(block: np.ndarray, factors: Sequence[int], method: Literal["mean", "mode"]) -> np.ndarray:
    """Downsample one array whose shape is a multiple of ``factors`` by window mean or window mode.

    ``"mode"`` keeps the most frequent value of each window (ties: the smallest), so label ids survive;
    ``"mean"`` averages in float64 and casts back (rounding for integer dtypes).
    """
    split = []
    for s, f in zip(block.shape, factors):
        split.extend([s // f, f])
    windows = block.reshape(split)
    n = block.ndim
    windows = windows.transpose([2 * i for i in range(n)] + [2 * i + 1 for i in range(n)])
    windows = windows.reshape(windows.shape[:n] + (-1,))
    if method == "mean":
        mean = windows.mean(axis=-1, dtype=np.float64)
        return (np.rint(mean) if block.dtype.kind in "iu" else mean).astype(block.dtype)
    windows = np.sort(windows, axis=-1)
    counts = (windows[..., :, None] == windows[..., None, :]).sum(-1)
    best = np.argmax(counts, axis=-1)
    return np.take_along_axis(windows, best[..., None], axis=-1)[..., 0]


def downsample_factors(voxel_size: Sequence[float]) -> tuple[int, int, int]:
    """Per-level factors (plane, row, column): 2 in-plane; 2 in z only when z is at most ~1.5x coarser."""
    z, y, x = voxel_size
    return (2 if z <= 1.5 * min(y, x) else 1, 2, 2)


def add_multiscale_levels(
    path: str | Path,
    n_levels: int,
    *,
    method: Literal["mean", "mode"] = "mean",
    factors: Sequence[Sequence[int]] | None = None,
) -> list[zarr.Array]:
    """Append ``n_levels`` downsampled levels to an OME-Zarr image whose level 0 is written.

    Each level halves the in-plane resolution (and z when the volume is near-isotropic, see
    :func:`downsample_factors`) unless ``factors`` gives each new level's (plane, row, column) factors
    relative to the level before; odd trailing voxels are dropped. ``"mean"`` averages (images,
    affinities); ``"mode"`` keeps the most frequent label (segmentations: no new ids are invented).
    Levels are written chunk by chunk; the ``multiscales`` metadata is updated after each level so a reader
    never sees a level listed before it is complete.

    Returns
    -------
    list of the new zarr arrays, coarse levels last.
    """
    if method not in ("mean", "mode"):
        raise ValueError(f"method must be 'mean' or 'mode'; got {method!r}")
    if factors is not None and len(factors) != n_levels:
        raise ValueError(f"factors lists {len(factors)} level(s) for {n_levels} new level(s)")
    group = _open_image_group(path, create=False)
    attrs = dict(group.attrs)
    ome = dict(attrs["ome"])
    ms = dict(ome["multiscales"][0])
    datasets = list(ms["datasets"])
    axes = [a["name"] for a in ms["axes"]]
    n_extra = len(axes) - 3
    made = []
    for i in range(n_levels):
        group = _open_image_group(path, create=False)  # fresh handles: the previous level is complete
        prev = datasets[-1]
        src_array = group[prev["path"]]
        scale, translation = _transforms(prev["coordinateTransformations"], len(axes))
        spatial = downsample_factors(scale[n_extra:]) if factors is None else tuple(int(f) for f in factors[i])
        level_factors = (1,) * n_extra + spatial
        small_shape = tuple(s // f for s, f in zip(src_array.shape, level_factors))
        if any(s == 0 for s in small_shape):
            raise ValueError(
                f"{path}: level {prev['path']} of shape {src_array.shape} is too small to downsample by {level_factors}"
            )
        dtype = np.dtype(src_array.dtype)
        name = str(int(prev["path"]) + 1)
        dst = group.create_array(
            name,
            shape=small_shape,
            dtype=dtype,
            chunks=src_array.chunks,
            fill_value=src_array.fill_value,
            dimension_names=tuple(axes),
        )
        # one destination chunk at a time: read its source region, reduce, write (memory: one chunk)
        grid = [range(0, s, c) for s, c in zip(small_shape, dst.chunks)]
        for start in itertools.product(*grid):
            out = tuple(slice(b0, min(b0 + c, s)) for b0, c, s in zip(start, dst.chunks, small_shape))
            src = tuple(slice(o.start * f, o.stop * f) for o, f in zip(out, level_factors))
            dst[out] = downsample_block(np.asarray(src_array[src]), level_factors, method)
        new_scale = [s * f for s, f in zip(scale, level_factors)]
        # the centre of a coarse voxel sits at the centre of the fine voxels it summarises
        new_translation = [t + (f - 1) * s / 2 for t, s, f in zip(translation, scale, level_factors)]
        level: dict[str, Any] = {"path": name, "coordinateTransformations": [{"type": "scale", "scale": new_scale}]}
        if any(new_translation):
            level["coordinateTransformations"].append({"type": "translation", "translation": new_translation})
        datasets.append(level)
        ms["datasets"] = datasets
        ms["type"] = "mode" if method == "mode" else "mean"
        ome["multiscales"] = [ms]
        group.attrs["ome"] = json.loads(json.dumps(ome))
        made.append(dst)
    return made


# ------------------------------------------------------------------------------------------ label images
LABELS_GROUP = "labels"
BACKGROUND_COLOR = (0, 0, 0, 0)  # label 0 drawn transparent, so the image shows through


def _check_label_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ValueError(f"label image name must be a plain name like 'neuron_ids', got {name!r}")


def _image_label_metadata(
    colors: Mapping[int, Sequence[int]] | None,
    properties: Mapping[int, Mapping[str, Any]] | None,
    source: str | None = "../../",
) -> dict[str, Any]:
    """The NGFF 0.5 ``image-label`` object: colours (label 0 transparent unless given), properties, source
    (a path relative to the label image; None: no source)."""
    palette = {0: BACKGROUND_COLOR, **(colors or {})}
    entries = []
    for value, rgba in sorted(palette.items()):
        rgba = [int(c) for c in rgba]
        if len(rgba) != 4 or not all(0 <= c <= 255 for c in rgba):
            raise ValueError(f"colour of label {value} must be 4 integers 0-255 (RGBA), got {rgba}")
        entries.append({"label-value": int(value), "rgba": rgba})
    meta: dict[str, Any] = {"colors": entries}
    if properties:
        meta["properties"] = [{"label-value": int(v), **dict(p)} for v, p in sorted(properties.items())]
    if source is not None:
        meta["source"] = {"image": source}
    return meta


def _register_label(labels_group: str, name: str) -> None:
    """Add ``name`` to the ``labels`` list of the labels group ``labels_group`` (``<image>/labels``, or a
    segmentation container's root), keeping every name already listed.

    The read-modify-write runs under an exclusive ``flock`` on the group's directory, so label images
    created concurrently (e.g. by two processes) are all listed; zarr writes ``zarr.json`` by atomic rename,
    so a reader sees the old list or the new one, never a partial file.
    """
    container, inner = _split_group_path(labels_group)
    fd = os.open(container / inner, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        root = zarr.open_group(store=str(container), mode="r+")
        group = _member(root, inner)
        ome = dict(group.attrs.get("ome", {}))
        names = [str(n) for n in ome.get("labels", [])]
        if name not in names:
            group.attrs["ome"] = {"version": NGFF_VERSION, **ome, "labels": [*names, name]}
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def create_label_image(
    image_path: str | Path,
    name: str,
    *,
    dtype: Any,
    chunks: Sequence[int],
    shape: Sequence[int] | None = None,
    colors: Mapping[int, Sequence[int]] | None = None,
    properties: Mapping[int, Mapping[str, Any]] | None = None,
    exists_ok: bool = False,
) -> zarr.Array:
    """Create an empty NGFF label image ``<image>/labels/<name>`` for an existing image; return level 0.

    The label image takes the parent's level-0 shape, voxel size and offset, gets ``image-label`` metadata
    (colours, properties, ``source.image = "../../"``) and is added to the ``labels`` list of
    ``<image>/labels`` without removing other names. Write it chunk by chunk, then call
    :func:`match_image_levels` to give it the parent's scale levels (or use :func:`write_label_image`).

    Parameters
    ----------
    image_path : address of the annotated OME-Zarr image group, e.g. ``sim.zarr/raw``; its axes must be
        (plane, row, column).
    name : label image name, e.g. ``"neuron_ids"``.
    dtype : integer dtype of the ids; prefer unsigned (neuroglancer does not read int64).
    chunks : storage chunks (plane, row, column).
    shape : optional check: must equal the image's (plane, row, column) shape.
    colors : label value -> RGBA (4 ints 0-255); label 0 is transparent unless given.
    properties : label value -> dict of free-form properties (e.g. ``{"meaning": "unlabelled"}``).
    exists_ok : open an existing label image of the same shape, dtype and chunks instead of raising.

    Returns
    -------
    zarr.Array of shape (plane, row, column), the label image's level ``"0"``.

    Raises
    ------
    TypeError for a non-integer dtype; ValueError for a bad name, shape or colour; FileExistsError if the
    label image exists and ``exists_ok`` is False.

    Examples
    --------
    >>> import tempfile; tmp = tempfile.mkdtemp()
    >>> _ = write_ome_zarr(f"{tmp}/sim.zarr/raw", np.zeros((8, 32, 32), np.uint8), axes="zyx",
    ...                    voxel_size=(40, 8, 8), chunks=(8, 32, 32), n_levels=2)
    >>> ids = create_label_image(f"{tmp}/sim.zarr/raw", "neuron_ids", dtype="uint64", chunks=(8, 32, 32))
    >>> ids[:] = 7
    >>> [level.shape for level in match_image_levels(f"{tmp}/sim.zarr/raw", "neuron_ids")]  # levels written
    [(8, 16, 16)]
    """
    image = str(image_path).rstrip("/")
    _check_label_name(name)
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise TypeError(f"label image {name} must have an integer dtype (NGFF labels), got {dtype}")
    parent = open_volume(image)
    if parent.axes != SPATIAL_AXES:
        raise ValueError(f"label images need a (plane, row, column) image; {image} has axes {parent.axes}")
    if shape is not None and tuple(int(s) for s in shape) != parent.shape:
        raise ValueError(
            f"label image {name} of shape {tuple(shape)} does not match image {image} of shape {parent.shape}"
        )
    path = f"{image}/{LABELS_GROUP}/{name}"
    array = create_ome_zarr_array(
        path,
        shape=parent.shape,
        dtype=dtype,
        chunks=chunks,
        axes=SPATIAL_AXES,
        voxel_size=parent.voxel_size,
        offset=parent.offset,
        exists_ok=exists_ok,
    )
    group = _open_image_group(path, create=False)
    group.attrs["ome"] = {**dict(group.attrs["ome"]), "image-label": _image_label_metadata(colors, properties)}
    _register_label(f"{image}/{LABELS_GROUP}", name)
    return array


def _level_factors(datasets: list[dict[str, Any]], ndim: int) -> list[tuple[int, ...]]:
    """Integer downsampling factor of each level relative to the level before, from the scale transforms."""
    scales = [_transforms(d.get("coordinateTransformations", []), ndim)[0] for d in datasets]
    factors = []
    for fine, coarse in zip(scales, scales[1:]):
        ratio = [c / f for f, c in zip(fine, coarse)]
        if any(abs(r - round(r)) > 1e-6 or round(r) < 1 for r in ratio):
            raise ValueError(f"scale levels {fine} -> {coarse} are not an integer downsampling")
        factors.append(tuple(int(round(r)) for r in ratio))
    return factors


def match_image_levels(image_path: str | Path, name: str) -> list[zarr.Array]:
    """Give label image ``<image>/labels/<name>`` the same scale levels as its image (NGFF requires as many).

    Missing levels are downsampled by window mode (no new ids) with the factors the image's levels use, so
    level ``k`` of the labels has the shape and scale of level ``k`` of the image. Call it after level 0 is
    written and after the image's own levels exist.

    Returns
    -------
    list of the label levels added (empty when they already match).
    """
    image = str(image_path).rstrip("/")
    image_group = _open_image_group(image, create=False)
    image_datasets = _multiscales(dict(image_group.attrs))[0][0]["datasets"]  # type: ignore[index]
    path = f"{image}/{LABELS_GROUP}/{name}"
    label_group = _open_image_group(path, create=False)
    n_have = len(_multiscales(dict(label_group.attrs))[0][0]["datasets"])  # type: ignore[index]
    if n_have >= len(image_datasets):
        return []
    factors = _level_factors(image_datasets, len(SPATIAL_AXES))[n_have - 1 :]
    return add_multiscale_levels(path, len(factors), method="mode", factors=factors)


def write_label_image(
    image_path: str | Path,
    name: str,
    data: np.ndarray | da.Array,
    *,
    chunks: Sequence[int],
    colors: Mapping[int, Sequence[int]] | None = None,
    properties: Mapping[int, Mapping[str, Any]] | None = None,
    exists_ok: bool = False,
) -> zarr.Array:
    """Write a whole label volume as ``<image>/labels/<name>``, chunk by chunk, with the image's levels.

    Parameters
    ----------
    image_path, name, chunks, colors, properties, exists_ok : as in :func:`create_label_image`.
    data : integer numpy or dask array of shape (plane, row, column), the image's shape.

    Returns
    -------
    zarr.Array, the level-0 array.

    Examples
    --------
    >>> raw = np.zeros((4, 16, 16), np.uint8)
    >>> import tempfile; tmp = tempfile.mkdtemp()
    >>> _ = write_ome_zarr(f"{tmp}/v.zarr/raw", raw, axes="zyx", voxel_size=(40, 4, 4), chunks=(4, 16, 16),
    ...                    n_levels=2)
    >>> _ = write_label_image(f"{tmp}/v.zarr/raw", "cells", np.ones((4, 16, 16), np.uint32), chunks=(4, 16, 16))
    >>> open_volume(f"{tmp}/v.zarr/raw/labels/cells", level=1).shape
    (4, 8, 8)
    """
    array = create_label_image(
        image_path,
        name,
        dtype=data.dtype,
        chunks=chunks,
        shape=data.shape,
        colors=colors,
        properties=properties,
        exists_ok=exists_ok,
    )
    src = data if isinstance(data, da.Array) else da.from_array(data, chunks=array.chunks)
    src.rechunk(array.chunks).store(array, lock=False)
    match_image_levels(image_path, name)
    return array


def create_segmentation_image(
    container: str | Path,
    name: str,
    *,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    source_image: str | Path | None = None,
    voxel_size: Sequence[float] | None = None,
    offset: Sequence[float] | None = None,
    colors: Mapping[int, Sequence[int]] | None = None,
    exists_ok: bool = False,
) -> zarr.Array:
    """Create an empty segmentation ``<container>/<name>`` that OME-Zarr readers open as a label image.

    For outputs written into their own container (``connectomics segment`` -> ``seg.zarr/seg_0.5``), whose
    image lives elsewhere (``sim.zarr``): an NGFF 0.5 multiscale image (level ``"0"``, add levels with
    :func:`add_multiscale_levels` ``method="mode"``) with ``image-label`` metadata whose ``source.image`` is
    the relative path from the segmentation to ``source_image`` (aliases followed, :func:`resolve_address`),
    so ``ome_zarr``/napari open the raw image underneath it. The name is added to the ``labels`` list of
    the container root (unless the root is itself an image), so a reader given ``seg.zarr`` opens every
    segmentation. The source container is never written to (its ``labels`` group is not touched); use
    :func:`create_label_image` when the image and its labels share a container.

    Parameters
    ----------
    container : output zarr container, e.g. ``seg.zarr``.
    name : dataset name, e.g. ``"seg_0.5"``.
    shape, chunks : (plane, row, column).
    dtype : integer dtype of the ids; prefer unsigned (neuroglancer does not read int64).
    source_image : address of the image segmented (an OME-Zarr image group), or None. When given, its shape
        must equal ``shape`` and its voxel size and offset are the defaults.
    voxel_size, offset : nm along (plane, row, column); required without ``source_image``.
    colors : label value -> RGBA (4 ints 0-255); label 0 is transparent unless given.
    exists_ok : as in :func:`create_ome_zarr_array` (resuming a blockwise job).

    Returns
    -------
    zarr.Array of shape (plane, row, column), ready for chunkwise writes.

    Examples
    --------
    >>> import tempfile; tmp = tempfile.mkdtemp()
    >>> _ = write_ome_zarr(f"{tmp}/sim.zarr", np.zeros((8, 32, 32), np.uint8), axes="zyx",
    ...                    voxel_size=(40, 8, 8), chunks=(8, 32, 32))
    >>> seg = create_segmentation_image(f"{tmp}/seg.zarr", "seg_0.5", shape=(8, 32, 32), dtype="uint64",
    ...                                 chunks=(8, 16, 16), source_image=f"{tmp}/sim.zarr")
    >>> seg.shape, seg.dtype == np.uint64
    ((8, 32, 32), True)
    >>> zarr.open_group(f"{tmp}/seg.zarr", mode="r").attrs["ome"]["labels"]
    ['seg_0.5']
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise TypeError(f"segmentation {name} must have an integer dtype, got {dtype}")
    _check_label_name(name.split("/")[-1])
    shape = tuple(int(s) for s in shape)
    path = Path(container) / name
    source = None
    if source_image is not None:
        image = open_volume(source_image)
        if image.axes != SPATIAL_AXES:
            raise ValueError(
                f"segmentation {path}: its source image must be (plane, row, column), e.g. the raw "
                f"volume; {source_image} has axes {image.axes}"
            )
        if image.spatial_shape != shape:
            raise ValueError(
                f"segmentation {path} of shape {shape} does not match its image {source_image} of "
                f"shape {image.spatial_shape}"
            )
        voxel_size = image.voxel_size if voxel_size is None else voxel_size
        offset = image.offset if offset is None else offset
        image_dir = Path(resolve_address(source_image).rstrip("/"))  # readers of the link know no aliases
        source = os.path.relpath(image_dir.resolve(), path.resolve()) + "/"
    if voxel_size is None:
        raise ValueError(f"segmentation {path}: pass voxel_size (nm) or a source_image to take it from")
    array = create_ome_zarr_array(
        path,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        axes=SPATIAL_AXES,
        voxel_size=voxel_size,
        offset=offset,
        exists_ok=exists_ok,
    )
    group = _open_image_group(path, create=False)
    group.attrs["ome"] = {**dict(group.attrs["ome"]), "image-label": _image_label_metadata(colors, None, source)}
    root = zarr.open_group(store=str(container), mode="r")
    if _multiscales(dict(root.attrs)) is None:  # a root that is an image lists its labels in root/labels
        _register_label(str(container), name)
    return array


def has_dataset(container: str | Path, dataset: str) -> bool:
    """Whether a zarr container holds ``dataset``, directly or through its ``aliases`` (see :func:`add_alias`).

    >>> has_dataset("no-such.zarr", "labels")
    False
    """
    try:
        root = zarr.open_group(store=str(container), mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
        return False
    inner = _resolve_alias(root, dataset)
    return not inner or inner in root


def resolve_address(path: str | Path) -> str:
    """The address ``path`` names with its container's aliases followed (see :func:`add_alias`).

    What to give a reader that knows no aliases (ome-zarr's ``source.image`` link, neuroglancer, napari):
    ``sim.zarr/raw`` of a simulated container is ``sim.zarr`` (the image is the root), and
    ``sim.zarr/raw/labels/neuron_ids`` is ``sim.zarr/labels/neuron_ids``. Addresses without an alias, and
    HDF5, TIFF or missing containers, come back as given.

    >>> resolve_address("stack.tif")
    'stack.tif'
    """
    container, dataset = parse_volume_path(path)
    if not dataset or container.suffix.lower() not in ZARR_SUFFIXES:
        return str(path)
    try:
        root = zarr.open_group(store=str(container), mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
        return str(path)
    inner = _resolve_alias(root, dataset)
    return str(container / inner) if inner else str(container)


def add_alias(container: str | Path, alias: str, target: str) -> None:
    """Record in a zarr container's root attributes (``aliases``) that ``container/alias`` means
    ``container/target`` (``""``: the root itself); :func:`open_volume` follows it (rules in
    :func:`_resolve_alias`: the whole alias wins over a member of that name, an aliased prefix applies to
    addresses that are not there).

    Used to keep addresses that moved readable, e.g. ``add_alias("sim.zarr", "raw", "")`` (the image moved to
    the root) and ``add_alias("sim.zarr", "labels", "labels/neuron_ids")``.
    """
    root = zarr.open_group(store=str(container), mode="r+")
    root.attrs["aliases"] = {**dict(root.attrs.get("aliases", {})), alias: target}


def read_region(vol: Volume, slices: tuple[slice, ...]) -> np.ndarray:
    """Read one region of a volume into memory (a thin helper so callers need no dask knowledge)."""
    return np.asarray(vol.data[slices].compute(scheduler="synchronous"))


def normalize_raw(raw: np.ndarray) -> np.ndarray:
    """Raw intensities as float32 in [0, 1], the input every affinity model expects.

    Integer images are divided by their dtype's maximum (uint8 / 255, uint16 / 65535); floating images are
    assumed to be in [0, 1] already and only cast. NaN raises ``ValueError``.

    Parameters
    ----------
    raw : ndarray of any shape, e.g. (plane, row, column).

    Returns
    -------
    float32 ndarray of the same shape.
    """
    raw = np.asarray(raw)
    if raw.dtype.kind == "u":
        return raw.astype(np.float32) / np.float32(np.iinfo(raw.dtype).max)
    if raw.dtype.kind == "i":
        return np.clip(raw, 0, None).astype(np.float32) / np.float32(np.iinfo(raw.dtype).max)
    if raw.dtype.kind == "f":
        out = raw.astype(np.float32)
        if np.isnan(out).any():
            raise ValueError(f"raw contains {int(np.isnan(out).sum())} NaN voxel(s)")
        return out
    raise TypeError(f"raw must have an integer or float dtype, got {raw.dtype}")
