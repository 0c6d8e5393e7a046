"""Human importance maps (and images) from disk, and the split-half human ceiling.

Formats read by :func:`load_maps`:

* a folder of ``.png`` / ``.npy`` files, one map per file, taken in sorted file-name order (the names are
  returned so maps can be matched to images); RGB(A) PNGs are averaged over colour channels (alpha
  dropped), as the published evaluation averages a trailing channel axis;
* an ``.npz`` file (the array named ``key``, or its only array);
* a zarr array, or the array ``key`` of a zarr group;
* ClickMe TFRecord shards (:func:`load_clickme_tfrecords`, read without TensorFlow by
  :mod:`shared.alignment.tfrecord`).

Nothing is resized or blurred on load; :func:`shared.alignment.processing.process_clickme_maps` applies the
published processing when wanted.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.alignment.tfrecord import parse_example, read_tfrecord
from shared.validation import check_existing_path, check_finite, check_ndim

IMAGE_SUFFIXES = (".png", ".npy")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im)
    return arr


def _read_file(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    return _read_png(path)


def _readable(read):
    """Turn a reader's low-level failure (corrupt file, pickled objects, not an array) into one
    ``ValueError`` naming the file; a missing key keeps its own message."""

    def guarded(path: Path, *args) -> np.ndarray:
        import zipfile

        try:
            return read(path, *args)
        except _KeyNotFound:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            detail = " ".join(str(err).split())[:200] or type(err).__name__
            raise ValueError(f"cannot read {path} as an array: {detail}") from err

    return guarded


class _KeyNotFound(KeyError, ValueError):
    """``key`` names no array in the file; a ValueError too, so command lines report it as bad input."""

    def __str__(self) -> str:
        return str(self.args[0])


@_readable
def _read_array_file(path: Path, key: str | None) -> np.ndarray:
    if path.is_file() and path.suffix.lower() not in (".npz", ".npy"):
        raise ValueError(
            f"{path} is neither a .npy/.npz file nor a zarr array (nor a folder of {'/'.join(IMAGE_SUFFIXES)} files)"
        )
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if key is None:
                if len(names) != 1:
                    raise ValueError(f"{path} holds arrays {names}; pass key= to choose one")
                key = names[0]
            if key not in names:
                raise _KeyNotFound(f"{path} has no array {key!r}; it holds {names}")
            return z[key]
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Group):
        names = sorted(node.array_keys())
        if key is None:
            if len(names) != 1:
                raise ValueError(f"zarr group {path} holds arrays {names}; pass key= to choose one")
            key = names[0]
        if key not in names:
            raise _KeyNotFound(f"zarr group {path} has no array {key!r}; it holds {names}")
        node = node[key]
    return np.asarray(node[...])


def load_stack(path: str | Path, *, key: str | None = None, name: str = "maps path") -> tuple[np.ndarray, list[str]]:
    """Load a stack of arrays from a folder of PNG/NPY files, an NPY/NPZ file or a zarr array/group.

    Returns
    -------
    stack : ndarray of shape (n, ...), as stored (a folder's files must share one shape).
    names : list of n names (file stems for a folder; ``"0", "1", ...`` otherwise).

    Raises
    ------
    FileNotFoundError : no such path. ValueError : anything unreadable, named (``name`` in messages).
    """
    p = check_existing_path(path, name=name)
    if p.is_dir() and not (p / "zarr.json").exists() and not (p / ".zarray").exists() and not (p / ".zgroup").exists():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"folder {p} holds no {'/'.join(IMAGE_SUFFIXES)} files")
        arrays = [_readable(_read_file)(f) for f in files]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"files in {p} differ in shape: {sorted(shapes)}")
        return np.stack(arrays), [f.stem for f in files]
    arr = _read_array_file(p, key)
    if arr.ndim == 0 or len(arr) == 0:
        raise ValueError(f"{name} {p} holds no images (shape {arr.shape})")
    return arr, [str(i) for i in range(len(arr))]


def _check_real(stack: np.ndarray, name: str) -> None:
    if stack.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got dtype {stack.dtype}")


def load_maps(path: str | Path, *, key: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Load human maps as float64 (n_images, rows, columns).

    A trailing colour axis (..., 3 or 4) from RGB(A) PNGs is averaged (alpha dropped); a singleton channel
    axis (n, 1, rows, columns) or (n, rows, columns, 1) is squeezed.

    Returns
    -------
    maps : ndarray of shape (n_images, rows, columns), float64.
    names : list of n_images names.

    Raises
    ------
    ValueError
        For any other shape, or NaN/inf values.
    """
    stack, names = load_stack(path, key=key, name="maps path")
    _check_real(stack, f"human maps from {path}")
    maps = np.asarray(stack, dtype=np.float64)
    if maps.ndim == 4 and maps.shape[-1] in (3, 4) and maps.shape[1] not in (1, 3):
        maps = maps[..., :3].mean(axis=-1)
    elif maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    elif maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    check_ndim(maps, 3, name=f"human maps from {path}", axes="(n_images, rows, columns)")
    check_finite(maps, name=f"human maps from {path}")
    return maps, names


def load_images(path: str | Path, *, key: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Load model inputs as float32 (n_images, channels, rows, columns).

    Grey images (n, rows, columns) gain a channel axis; channels-last stacks (n, rows, columns, 1|3|4)
    (e.g. RGB PNGs) are moved to channels-first. Values are kept as stored (PNG: 0-255); scale them as
    your model expects.
    """
    stack, names = load_stack(path, key=key, name="images path")
    _check_real(stack, f"images from {path}")
    images = np.asarray(stack, dtype=np.float32)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3):
        images = np.moveaxis(images, -1, 1)
    check_ndim(images, 4, name=f"images from {path}", axes="(n_images, channels, rows, columns)")
    check_finite(images, name=f"images from {path}")
    return images, names


@dataclass
class ClickMeData:
    """ClickMe records as loaded from TFRecord shards.

    Attributes
    ----------
    images : ndarray of shape (n, rows, columns, 3), uint8 (JPEG) or float32 (raw records).
    heatmaps : ndarray of shape (n, rows, columns), float32 (unprocessed).
    labels : ndarray of shape (n,), int64 ImageNet class indices.
    """

    images: np.ndarray
    heatmaps: np.ndarray
    labels: np.ndarray


def _decode_field(value: bytes, shape: Sequence[int], name: str) -> np.ndarray:
    if len(value) == int(np.prod(shape)) * 4:  # raw float32 (Adversarial-Alignment subset)
        return np.frombuffer(value, "<f4").reshape(shape)
    from PIL import Image

    with Image.open(io.BytesIO(value)) as im:
        arr = np.asarray(im)
    if name == "heatmap" and arr.ndim == 3:
        arr = arr.mean(axis=-1)
    return arr


def load_clickme_tfrecords(
    shards: str | Path | Sequence[str | Path],
    *,
    image_shape=(256, 256, 3),
    heatmap_shape=(256, 256),
    check_crc: bool = True,
    limit: int | None = None,
) -> ClickMeData:
    """Read ClickMe TFRecord shards (fields ``image``, ``heatmap``, ``label``) without TensorFlow.

    ``image`` and ``heatmap`` are JPEG bytes (the released train/val shards) or raw float32 arrays (the
    Adversarial-Alignment ``clickme_test_1000`` subset: pass ``image_shape=(224, 224, 3)``,
    ``heatmap_shape=(224, 224)``); raw records are recognised by their byte length.

    Parameters
    ----------
    shards : one path or a sequence of paths, read in order.
    image_shape, heatmap_shape : the stored shapes (used for raw records and checked for JPEGs).
    check_crc : verify the TFRecord checksums.
    limit : stop after this many records.

    Returns
    -------
    data : :class:`ClickMeData`.
    """
    paths = [shards] if isinstance(shards, (str, Path)) else list(shards)
    images, heatmaps, labels = [], [], []
    for path in paths:
        for i, record in enumerate(read_tfrecord(path, check_crc=check_crc)):
            ex = parse_example(record)
            missing = {"image", "heatmap", "label"} - set(ex)
            if missing:
                raise ValueError(f"{path} record {i} lacks ClickMe field(s) {sorted(missing)}; has {sorted(ex)}")
            img = _decode_field(ex["image"][0], image_shape, "image")
            hm = _decode_field(ex["heatmap"][0], heatmap_shape, "heatmap")
            if img.shape != tuple(image_shape) or hm.shape != tuple(heatmap_shape):
                raise ValueError(
                    f"{path} record {i}: image {img.shape} / heatmap {hm.shape} differ from the "
                    f"expected {tuple(image_shape)} / {tuple(heatmap_shape)}"
                )
            images.append(img)
            heatmaps.append(hm.astype(np.float32))
            labels.append(int(ex["label"][0]))
            if limit is not None and len(labels) >= limit:
                break
        if limit is not None and len(labels) >= limit:
            break
    if not labels:
        raise ValueError(f"no records in {paths}")
    return ClickMeData(np.stack(images), np.stack(heatmaps), np.asarray(labels, np.int64))


@dataclass
class SplitHalfResult:
    """Result of :func:`map_split_half_ceiling`: ``ceiling`` and ``floor`` (means over images) and the
    per-image values, shape (n_images,)."""

    ceiling: float
    floor: float
    per_image_ceiling: np.ndarray
    per_image_floor: np.ndarray


def map_split_half_ceiling(
    participant_maps: Sequence[np.ndarray],
    *,
    n_iterations: int = 50,
    blur: Callable[[np.ndarray], np.ndarray] | None = None,
    seed: int = 0,
) -> SplitHalfResult:
    """Human ceiling and floor of map alignment by split halves of participants.

    Per image and iteration: shuffle the participants, split them into two halves, resample each half with
    replacement back to the full participant count, average and ``blur`` each half, and take the Spearman
    rho between the halves. The ceiling is the mean over iterations, then over images. The floor is the
    same with the second half taken from a different (random) image.

    Parameters
    ----------
    participant_maps : sequence of n_images arrays of shape (n_participants, rows, columns) (counts may
        differ between images; at least 2 participants; every image the same rows x columns).
    n_iterations : random splits per image (50 in serre-lab/human_clickme_data_processing).
    blur : function applied to (n, rows, columns) half-means, e.g.
        :func:`shared.alignment.processing.blur_maps`; ``None`` for no blur.
    seed : random seed.

    Returns
    -------
    result : :class:`SplitHalfResult`.

    Notes
    -----
    Reconstructed from the ClickMe-2 processing description (not from running it): the bootstrap to full
    size and the different-image floor follow it; ClickMe-2 blurs with a flat disc and requires >= 5
    participants, which are left to the caller (``blur`` and the input).
    """
    from shared.alignment.scores import spearman_per_image

    if len(participant_maps) < 2:
        raise ValueError("map_split_half_ceiling needs at least 2 images (the floor pairs different images)")
    maps = [np.asarray(m, dtype=np.float64) for m in participant_maps]
    for i, m in enumerate(maps):
        check_ndim(m, 3, name=f"participant_maps[{i}]", axes="(n_participants, rows, columns)")
        if m.shape[0] < 2:
            raise ValueError(f"participant_maps[{i}] has {m.shape[0]} participant(s); need at least 2")
        if m.shape[1:] != maps[0].shape[1:]:
            raise ValueError(f"participant_maps[{i}] is {m.shape[1:]}, expected {maps[0].shape[1:]}")
    rng = np.random.default_rng(seed)
    n = len(maps)
    ceil = np.zeros((n, n_iterations))
    floor = np.zeros((n, n_iterations))

    def halves(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = m.shape[0]
        perm = rng.permutation(k)
        a, b = perm[: k // 2], perm[k // 2 :]
        return m[rng.choice(a, k)].mean(0), m[rng.choice(b, k)].mean(0)

    for it in range(n_iterations):
        first, second = zip(*(halves(m) for m in maps))
        first, second = np.stack(first), np.stack(second)
        other = (np.arange(n) + rng.integers(1, n, size=n)) % n
        if blur is not None:
            first, second = blur(first), blur(second)
        ceil[:, it] = spearman_per_image(first, second)
        floor[:, it] = spearman_per_image(first, second[other])
    pc, pf = np.nanmean(ceil, axis=1), np.nanmean(floor, axis=1)
    return SplitHalfResult(float(np.nanmean(pc)), float(np.nanmean(pf)), pc, pf)
