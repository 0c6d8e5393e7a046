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
``add_multiscale_levels(path, n_levels, *, method)``
    Adds downsampled levels (``"mean"`` for images, ``"mode"`` for labels) and updates the metadata.

Axes are always ordered (channel, plane, row, column) = ``("c", "z", "y", "x")``; voxel sizes and offsets
are in nanometres and list the spatial axes only. Reading never loads a whole volume: every format is
wrapped as a dask array whose chunks are the storage chunks (one plane for TIFF), so memory is bounded by
the chunks a computation touches.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import zarr

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
            dataset = text[cut + 1:].strip("/")
            return Path(text[:cut]), dataset or None
    if lowered.endswith(TIFF_SUFFIXES + HDF5_SUFFIXES):
        return Path(text), None
    parts = Path(text).parts
    for i, part in enumerate(parts):
        if part.lower().endswith(ZARR_SUFFIXES):
            rest = "/".join(parts[i + 1:])
            return Path(*parts[: i + 1]), rest or None
    return Path(text), None


# ------------------------------------------------------------------------------------------- reading
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
            raise OSError(f"corrupt or unreadable chunk in {self.path} at {key}: "
                          f"{type(err).__name__}: {err}") from err


def _as_dask(array: Any, path: str, chunks: Any, lock: Any = None) -> da.Array:
    return da.from_array(_ChunkReader(array, path, lock), chunks=chunks, asarray=False, fancy=False,
                         name=f"volume-{path}-{abs(hash((path, tuple(array.shape))))}", lock=False,
                         meta=np.empty((0,) * len(array.shape), dtype=array.dtype))


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
    return {None: 1.0, "": 1.0, "nanometer": 1.0, "angstrom": 0.1, "micrometer": 1e3, "millimeter": 1e6,
            "meter": 1e9}.get(unit, 1.0)


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


def _open_zarr(container: Path, dataset: str | None, level: int, address: str) -> Volume:
    if not container.exists():
        raise FileNotFoundError(f"volume {address}: {container} does not exist")
    try:
        root = zarr.open(store=str(container), mode="r")
    except Exception as err:
        raise ValueError(f"volume {address}: {container} is not a readable zarr container (missing or "
                         f"corrupt .zarray/.zgroup/zarr.json metadata): {type(err).__name__}: {err}") from err
    node = root
    if dataset:
        try:
            node = root[dataset]
        except KeyError:
            listing = _list_zarr(root) if isinstance(root, zarr.Group) else []
            raise KeyError(f"volume {address}: no dataset {dataset!r} in {container}; it holds: "
                           f"{', '.join(listing) or 'nothing'}") from None
        except Exception as err:
            raise ValueError(f"volume {address}: dataset {dataset!r} in {container} has corrupt metadata: "
                             f"{type(err).__name__}: {err}") from err
    axes: tuple[str, ...] | None = None
    voxel_size: list[float] | None = None
    offset: list[float] | None = None
    if isinstance(node, zarr.Group):
        found = _multiscales(dict(node.attrs))
        if found is None:
            raise ValueError(f"volume {address} is a zarr group without OME-Zarr 'multiscales' metadata; name "
                             f"one of its arrays: {', '.join(_list_zarr(node)) or 'it is empty'}")
        multiscales, _version = found
        ms = multiscales[0]
        datasets = ms["datasets"]
        if not 0 <= level < len(datasets):
            raise ValueError(f"volume {address} has {len(datasets)} scale level(s); level {level} does not "
                             f"exist")
        axes_meta = ms.get("axes", [])
        names = [a["name"] if isinstance(a, dict) else str(a) for a in axes_meta]
        units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
        try:
            array = node[datasets[level]["path"]]
        except KeyError:
            raise ValueError(f"volume {address}: multiscales lists level {datasets[level]['path']!r} but the "
                             f"array is missing (partial write?)") from None
        ndim = len(array.shape)
        scale, translation = _transforms(datasets[level].get("coordinateTransformations", []), ndim)
        top_scale, top_translation = _transforms(ms.get("coordinateTransformations", []), ndim)
        names = names or list(_default_axes(ndim, address))
        units = units or [None] * ndim
        axes = tuple(names)
        spatial = [i for i, n in enumerate(names) if n in SPATIAL_AXES]
        voxel_size = [scale[i] * top_scale[i] * _unit_factor(units[i]) for i in spatial]
        offset = [(translation[i] * top_scale[i] + top_translation[i]) * _unit_factor(units[i])
                  for i in spatial]
        name = f"{address}[level {level}]" if level else address
    else:
        if level != 0:
            raise ValueError(f"volume {address} is a single zarr array; it has no scale level {level}")
        array = node
        attrs = dict(array.attrs)
        dims = getattr(array.metadata, "dimension_names", None) or attrs.get("_ARRAY_DIMENSIONS") \
            or attrs.get("axis_names")
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
    return _volume(data, axes, voxel_size, offset, address)


def _default_axes(ndim: int, address: str) -> tuple[str, ...]:
    if ndim == 3:
        return SPATIAL_AXES
    if ndim == 4:
        return ("c",) + SPATIAL_AXES
    raise ValueError(f"volume {address} has {ndim} axes; expected 3 (plane, row, column) or 4 (channel, "
                     f"plane, row, column)")


def _check_axes(axes: tuple[str, ...], shape: tuple[int, ...], address: str) -> None:
    if len(axes) != len(shape):
        raise ValueError(f"volume {address}: {len(axes)} axis names {axes} for an array of {len(shape)} axes")
    if len(shape) not in (3, 4):
        raise ValueError(f"volume {address} has {len(shape)} axes {axes}; expected 3 (plane, row, column) or "
                         f"4 (channel, plane, row, column)")
    if tuple(axes[-3:]) != SPATIAL_AXES or (len(axes) == 4 and axes[0] != "c"):
        raise ValueError(f"volume {address} has axes {axes}; expected ('z', 'y', 'x') or "
                         f"('c', 'z', 'y', 'x') (time axes and other orders are not supported)")


def _volume(data: da.Array, axes: tuple[str, ...], voxel_size: Sequence[float], offset: Sequence[float],
            address: str) -> Volume:
    if len(voxel_size) != 3 or len(offset) != 3:
        raise ValueError(f"volume {address}: voxel size {tuple(voxel_size)} / offset {tuple(offset)} must "
                         f"have one value per spatial axis (plane, row, column)")
    if any(not math.isfinite(v) or v <= 0 for v in voxel_size):
        raise ValueError(f"volume {address}: voxel size must be positive, got {tuple(voxel_size)}")
    if data.dtype.kind not in "iuf" or data.dtype.itemsize > 8:
        raise TypeError(f"volume {address} has dtype {data.dtype}; expected an integer (labels, raw) or "
                        f"float (raw, affinities) dtype")
    return Volume(data, tuple(axes), tuple(float(v) for v in voxel_size), tuple(float(v) for v in offset),
                  address)


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
    f.visititems(lambda n, obj: listing.append(f"{n} {obj.shape} {obj.dtype}")
                 if isinstance(obj, h5py.Dataset) else None)
    if dataset is None:
        raise ValueError(f"volume {address}: name a dataset inside the HDF5 file as {container}:DATASET, e.g. "
                         f"{container}:volumes/raw; it holds: {', '.join(listing) or 'nothing'}")
    if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
        raise KeyError(f"volume {address}: no dataset {dataset!r} in {container}; it holds: "
                       f"{', '.join(listing) or 'nothing'}")
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
        self.shape = (self.n, *self.page_shape)
        self.ndim = len(self.shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        import tifffile

        zs = range(*key[0].indices(self.n))
        with tifffile.TiffFile(self.path) as tif:
            planes = [tif.pages[z].asarray()[key[1:]] for z in zs]
        return np.stack(planes) if planes else np.empty((0, *self.page_shape), self.dtype)[(slice(None),)
                                                                                           + key[1:]]


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
        raise ValueError(f"volume {address}: TIFF pages have shape {planes.page_shape}; expected 2-D "
                         f"grey-scale pages (one plane each)")
    data = _as_dask(planes, address, chunks=(1, *planes.page_shape))
    return _volume(data, SPATIAL_AXES, planes.voxel_size, [0.0, 0.0, 0.0], address)


def open_volume(path: str | Path, *, level: int = 0,
                role: Literal["raw", "labels", "affinities"] | None = None) -> Volume:
    """Open a volume lazily, with its axes and voxel size.

    Parameters
    ----------
    path : a volume address (see :func:`parse_volume_path`): ``vol.zarr/raw`` (zarr v2 or v3 array, or an
        OME-Zarr image group), ``file.h5:volumes/raw`` (CREMI-style HDF5; the ``resolution`` and ``offset``
        attributes give voxel size and offset in nm), ``stack.tif`` (multi-page TIFF).
    level : scale level of an OME-Zarr multiscale image (0 = full resolution).
    role : optional check of what the volume must be: ``"raw"`` (3 axes, integer or float dtype, no NaN;
        the NaN check reads the volume chunk by chunk), ``"labels"`` (3 axes, integer dtype),
        ``"affinities"`` (4 axes, float or uint8 dtype).

    Returns
    -------
    Volume with ``data`` a dask array of shape (plane, row, column) or (channel, plane, row, column).

    Raises
    ------
    FileNotFoundError, KeyError (missing dataset; the message lists what the container holds),
    ValueError (wrong number of axes, corrupt metadata, NaN in raw), TypeError (unexpected dtype).

    Examples
    --------
    >>> vol = open_volume("sim.zarr/raw")                        # doctest: +SKIP
    >>> vol.data.shape, vol.axes, vol.voxel_size                 # doctest: +SKIP
    ((64, 256, 256), ('z', 'y', 'x'), (40.0, 8.0, 8.0))
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
            raise TypeError(f"labels volume {vol.path} must have an integer dtype (e.g. uint64), got "
                            f"{vol.dtype}")
    elif role == "affinities":
        if vol.data.ndim != 4:
            raise ValueError(f"affinities volume {vol.path} must have 4 axes (channel, plane, row, column), "
                             f"got {vol.axes}")
        if vol.dtype.kind != "f" and vol.dtype != np.uint8:
            raise TypeError(f"affinities volume {vol.path} must be float or uint8, got {vol.dtype}")
    else:
        raise ValueError(f"role must be 'raw', 'labels' or 'affinities'; got {role!r}")


def check_same_geometry(raw: Volume, labels: Volume) -> None:
    """Raise ``ValueError`` if a raw and a labels volume differ in spatial shape."""
    if raw.spatial_shape != labels.spatial_shape:
        raise ValueError(f"raw {raw.path} and labels {labels.path} must have the same shape (plane, row, "
                         f"column), got {raw.spatial_shape} and {labels.spatial_shape}")


# ------------------------------------------------------------------------------------------- writing
def _ngff_axes(axes: Sequence[str]) -> list[dict[str, str]]:
    out = []
    for a in axes:
        if a == "c":
            out.append({"name": "c", "type": "channel"})
        else:
            out.append({"name": a, "type": "space", "unit": "nanometer"})
    return out


def _level_transforms(axes: Sequence[str], voxel_size: Sequence[float], offset: Sequence[float]
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


def create_ome_zarr_array(path: str | Path, *, shape: Sequence[int], dtype: Any, chunks: Sequence[int],
                          axes: Sequence[str], voxel_size: Sequence[float],
                          offset: Sequence[float] | None = None, fill_value: Any = 0,
                          exists_ok: bool = False) -> zarr.Array:
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
            raise FileExistsError(f"{path} already exists; refusing to overwrite it (choose another path, or "
                                  f"delete it yourself)")
        array = group["0"]
        found = (tuple(array.shape), np.dtype(array.dtype), tuple(array.chunks))
        if found != (shape, dtype, chunks):
            raise ValueError(f"{path} exists with shape {found[0]}, dtype {found[1]}, chunks {found[2]}; "
                             f"requested shape {shape}, dtype {dtype}, chunks {chunks}")
        return array
    array = group.create_array("0", shape=shape, dtype=dtype, chunks=chunks, fill_value=fill_value,
                               dimension_names=axes)
    group.attrs["ome"] = {
        "version": NGFF_VERSION,
        "multiscales": [{
            "name": str(path).rstrip("/").split("/")[-1],
            "axes": _ngff_axes(axes),
            "datasets": [{"path": "0", "coordinateTransformations": _level_transforms(axes, voxel_size,
                                                                                      offset)}],
        }],
    }
    return array


def write_ome_zarr(path: str | Path, data: np.ndarray | da.Array, *, axes: Sequence[str],
                   voxel_size: Sequence[float], chunks: Sequence[int], offset: Sequence[float] | None = None,
                   n_levels: int = 1, method: Literal["mean", "mode"] | None = None,
                   exists_ok: bool = False) -> zarr.Array:
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
    array = create_ome_zarr_array(path, shape=data.shape, dtype=data.dtype, chunks=chunks, axes=axes,
                                  voxel_size=voxel_size, offset=offset, exists_ok=exists_ok)
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


def add_multiscale_levels(path: str | Path, n_levels: int, *,
                          method: Literal["mean", "mode"] = "mean") -> list[zarr.Array]:
    """Append ``n_levels`` downsampled levels to an OME-Zarr image whose level 0 is written.

    Each level halves the in-plane resolution (and z when the volume is near-isotropic, see
    :func:`downsample_factors`); odd trailing voxels are dropped. ``"mean"`` averages (images,
    affinities); ``"mode"`` keeps the most frequent label (segmentations: no new ids are invented).
    Levels are written chunk by chunk; the ``multiscales`` metadata is updated after each level so a reader
    never sees a level listed before it is complete.

    Returns
    -------
    list of the new zarr arrays, coarse levels last.
    """
    if method not in ("mean", "mode"):
        raise ValueError(f"method must be 'mean' or 'mode'; got {method!r}")
    group = _open_image_group(path, create=False)
    attrs = dict(group.attrs)
    ome = dict(attrs["ome"])
    ms = dict(ome["multiscales"][0])
    datasets = list(ms["datasets"])
    axes = [a["name"] for a in ms["axes"]]
    n_extra = len(axes) - 3
    made = []
    for _ in range(n_levels):
        group = _open_image_group(path, create=False)  # fresh handles: the previous level is complete
        prev = datasets[-1]
        src_array = group[prev["path"]]
        scale, translation = _transforms(prev["coordinateTransformations"], len(axes))
        factors = (1,) * n_extra + downsample_factors(scale[n_extra:])
        small_shape = tuple(s // f for s, f in zip(src_array.shape, factors))
        if any(s == 0 for s in small_shape):
            raise ValueError(f"{path}: level {prev['path']} of shape {src_array.shape} is too small to "
                             f"downsample by {factors}")
        dtype = np.dtype(src_array.dtype)
        name = str(int(prev["path"]) + 1)
        dst = group.create_array(name, shape=small_shape, dtype=dtype, chunks=src_array.chunks,
                                 fill_value=src_array.fill_value, dimension_names=tuple(axes))
        # one destination chunk at a time: read its source region, reduce, write (memory: one chunk)
        grid = [range(0, s, c) for s, c in zip(small_shape, dst.chunks)]
        for start in itertools.product(*grid):
            out = tuple(slice(b0, min(b0 + c, s)) for b0, c, s in zip(start, dst.chunks, small_shape))
            src = tuple(slice(o.start * f, o.stop * f) for o, f in zip(out, factors))
            dst[out] = downsample_block(np.asarray(src_array[src]), factors, method)
        new_scale = [s * f for s, f in zip(scale, factors)]
        # the centre of a coarse voxel sits at the centre of the fine voxels it summarises
        new_translation = [t + (f - 1) * s / 2 for t, s, f in zip(translation, scale, factors)]
        level: dict[str, Any] = {"path": name, "coordinateTransformations": [{"type": "scale",
                                                                              "scale": new_scale}]}
        if any(new_translation):
            level["coordinateTransformations"].append({"type": "translation", "translation": new_translation})
        datasets.append(level)
        ms["datasets"] = datasets
        ms["type"] = "mode" if method == "mode" else "mean"
        ome["multiscales"] = [ms]
        group.attrs["ome"] = json.loads(json.dumps(ome))
        made.append(dst)
    return made


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
