"""EM volume simulator: neural tissue and serial-section EM rendering, generated block by block.

Ground truth
------------
Each source's tissue is a :class:`~connectomics.morphology.Morphology` (see :mod:`connectomics.morphology`
for the geometry and its sources): thin axons with vesicle-filled boutons, tapering dendrites with spines
(necks ~50-200 nm, heads ~0.3-0.6 um), somata, glia that fill the gaps, and extracellular space (label
0) at a tunable volume fraction. At 40x8x8 nm an axon is a few voxels across in-plane and often thinner
than one section. Mitochondria and vesicles only change the rendering (real ground truth does not separate
organelles).

Rendering
---------
Membranes are dark within ``membrane_nm / 2`` of a cell's edge (against another cell or ECS), the edge
being the nearer of the geometric surface and the nearest in-plane label change of the label image itself,
so every boundary between two objects or an object and ECS is drawn (the block's label image is computed
on the box grown by the blur and membrane reach, so blocks still agree with the whole); cytoplasm
gets smooth value-noise texture, glia and ECS are lighter, mitochondria dark and granular, boutons carry
dark vesicle dots (~40 nm, on a jittered 45 nm lattice). Then in-plane Gaussian blur, contrast with a slow
in-plane staining gradient, and intensity-dependent (shot) noise; anisotropic sections come from the
source's voxel size. Section artefacts are drawn per section: missing sections (black), step
misalignments (every later section shifted; the labels follow the image, as annotators draw on the
misaligned data), blurred sections and contrast drift (gain and offset that wander from section to
section, as with charging or staining changes).

Labels
------
Dense by default (``labels_mask`` all 1). With ``label_fraction < 1`` only that fraction of the objects is
annotated (chosen by a hash of the object id, so chunk-independent): other objects *and* ECS are
unlabelled, 0 in ``labels`` and 0 in ``labels_mask``. Unlabelled is not background: training masks the
affinities that touch it (:func:`connectomics.affinities.compute_affinities`).

Sources
-------
:data:`SOURCES` holds named acquisition/tissue settings that differ in tissue statistics, contrast, noise,
resolution and artefacts (``sstem``, ``sbem``, ``fib``, ``retina``), so the STAR leave-one-source-out
protocol can be run. They are inspired by, not fitted to, CREMI (fly ssTEM), SNEMI3D (mouse cortex SBEM),
FIB-25 (fly FIB-SEM) and the Berson retina volume; voxel sizes are coarser than the real ones (CREMI is
40x4x4 nm) to keep CPU runs small.

Blockwise and deterministic
---------------------------
The whole volume is a pure function of (source, seed, shape): every random choice is keyed by a world
position, never by the order of work. Objects are drawn per cell of a grid from a generator seeded with
(seed, tissue, layer, cell); a block gathers the cells within reach of its region and labels each voxel
by the pointwise rule of :class:`~connectomics.morphology.Tissue`, so the block's labels are exactly the
whole-volume labels. Texture and shot noise are hashes of world / voxel coordinates; section artefacts
come from a per-section table. The only neighbourhood operation, the in-plane blur, is computed on the
block grown by the blur radius (clipped to the volume, where the whole-volume run reflects at the same
border) and cropped. So a volume written with any chunking is identical voxel for voxel (tested), and
memory is bounded by one block (plus its context), never the volume.

Example
-------
>>> raw, labels = simulate_volume("sstem", shape=(8, 64, 64), seed=0)
>>> raw.dtype, labels.dtype, raw.shape
(dtype('uint8'), dtype('uint64'), (8, 64, 64))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from connectomics.blocks import DoneMarkers, Roi, block_grid, parse_coordinate, run_blockwise
from connectomics.morphology import (
    BOUTON,
    ECS,
    GLIA,
    MITO_REACH,
    MORPHOLOGIES,
    SOMA,
    Morphology,
    Tissue,
    lookup_settings,
    neuron_labels,
    settings_key,
)

__all__ = [
    "MORPHOLOGIES",
    "SOURCES",
    "Morphology",
    "Source",
    "neuron_labels",
    "section_defects",
    "simulate_block",
    "simulate_to_zarr",
    "simulate_volume",
    "sparse_labels",
]


@dataclass(frozen=True)
class Source:
    """One simulated EM source: tissue, acquisition (resolution, contrast, noise) and artefacts.

    Geometry is in nm, intensities in [0, 1], probabilities per section.
    """

    name: str
    description: str
    voxel_size: tuple[float, float, float]
    tissue: Morphology = MORPHOLOGIES["dense"]
    # rendering
    membrane_nm: float = 30.0
    cytoplasm: float = 0.72
    membrane: float = 0.12
    ecs: float = 0.85
    glia: float = 0.8
    mito: float = 0.35
    vesicle: float = 0.4
    texture: float = 0.12
    texture_nm: float = 60.0
    contrast: float = 1.0
    stain_gradient: float = 0.08
    noise: float = 0.05
    blur_nm: float = 6.0
    # section artefacts
    p_missing: float = 0.01
    p_misalign: float = 0.02
    max_misalign_nm: float = 60.0
    p_blur_section: float = 0.02
    blur_section_nm: float = 20.0
    contrast_drift: float = 0.03

    def membrane_reach(self) -> int:
        """In-plane voxels from a label change that its membrane can darken (``membrane_nm / 2``, rounded up)."""
        return int(math.ceil(0.5 * self.membrane_nm / min(self.voxel_size[1:]))) + 1

    def blur_context(self) -> int:
        """In-plane context (voxels) a block needs: scipy's Gaussian radius int(4 sigma + 0.5) plus the
        membrane reach, since membranes are drawn from the label image of the grown box."""
        sigma = max(self.blur_nm, math.hypot(self.blur_nm, self.blur_section_nm)) / min(self.voxel_size[1:])
        return int(4.0 * sigma + 0.5) + 1 + self.membrane_reach()


_CORTEX = MORPHOLOGIES["dense"]
SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        # fly neuropil: fine neurites (< 200 nm), few thick dendrites, no spines or somata (cell bodies sit in
        # the cortex rind, outside neuropil); chemically fixed, so little ECS
        Source(
            "sstem",
            "fly neuropil, serial-section TEM (CREMI-like): fine neurites, thin sections far apart, "
            "high contrast, low noise, frequent misalignments",
            voxel_size=(40.0, 8.0, 8.0),
            tissue=dataclasses.replace(
                _CORTEX,
                name="fly-neuropil",
                axon_density=60.0,
                axon_radius=45.0,
                dendrite_density=0.25,
                dendrite_radius=300.0,
                spine_rate=0.3,
                soma_density=0.0,
                glia_density=1.0,
                ecs_fraction=0.07,
            ),
            p_misalign=0.05,
            max_misalign_nm=64.0,
            noise=0.04,
            contrast=1.1,
        ),
        Source(
            "sbem",
            "mouse cortex, serial block-face SEM (SNEMI3D-like): spiny dendrites, boutons, somata, "
            "medium contrast and noise, some missing sections, contrast drift",
            voxel_size=(30.0, 12.0, 12.0),
            tissue=_CORTEX,
            noise=0.08,
            contrast=0.85,
            p_missing=0.03,
            texture=0.15,
            membrane_nm=40.0,
            contrast_drift=0.06,
        ),
        Source(
            "fib",
            "fly neuropil, FIB-SEM (FIB-25-like): near-isotropic voxels, very thin processes, high "
            "noise, low contrast, blur",
            voxel_size=(16.0, 16.0, 16.0),
            tissue=dataclasses.replace(
                MORPHOLOGIES["thin"],
                name="fly-fine",
                axon_density=60.0,
                glia_density=1.0,
                glia_grow=150.0,
                ecs_fraction=0.07,
            ),
            noise=0.12,
            contrast=0.7,
            blur_nm=12.0,
            p_misalign=0.0,
            p_missing=0.0,
            membrane_nm=36.0,
        ),
        Source(
            "retina",
            "mouse retina, SBEM (Berson-like): processes running along z, dense thin neurites, "
            "lighter membranes, blurred sections",
            voxel_size=(25.0, 10.0, 10.0),
            tissue=dataclasses.replace(
                _CORTEX,
                name="retina-ipl",
                axon_density=30.0,
                axon_radius=50.0,
                orientation=(3.0, 0.6, 0.6),
                tortuosity=0.2,
                spine_rate=0.5,
                soma_density=0.0,
                ecs_fraction=0.12,
            ),
            membrane=0.25,
            cytoplasm=0.65,
            noise=0.07,
            p_blur_section=0.05,
        ),
    ]
}


def get_source(source: str | Source) -> Source:
    """Look a source up by name; ``ValueError`` listing the names for an unknown one."""
    return lookup_settings(source, SOURCES, "source")


# ------------------------------------------------------------------------------- deterministic noise
def _hash(*keys: np.ndarray) -> np.ndarray:
    """splitmix64 of combined integer keys -> uniform float64 in [0, 1). Vectorised, platform independent."""
    h = np.zeros(np.broadcast(*keys).shape, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            h = h ^ (
                np.asarray(k).astype(np.int64).astype(np.uint64)
                + np.uint64(0x9E3779B97F4A7C15)
                + (h << np.uint64(6))
                + (h >> np.uint64(2))
            )
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _value_noise(points: np.ndarray, scale: float, key: int) -> np.ndarray:
    """Smooth noise in [0, 1] at world positions (n, 3) nm: hashed lattice values, smoothstep-interpolated."""
    p = points / scale
    base = np.floor(p)
    f = p - base
    f = f * f * (3 - 2 * f)
    b = base.astype(np.int64)
    out = np.zeros(len(points))
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                w = (
                    (f[:, 0] if dz else 1 - f[:, 0])
                    * (f[:, 1] if dy else 1 - f[:, 1])
                    * (f[:, 2] if dx else 1 - f[:, 2])
                )
                out += w * _hash(np.int64(key), b[:, 0] + dz, b[:, 1] + dy, b[:, 2] + dx)
    return out


def _gaussian(*keys: np.ndarray) -> np.ndarray:
    """Standard normal values keyed by integers (Box-Muller on two hashes)."""
    u1 = np.maximum(_hash(np.int64(1), *keys), 1e-12)
    u2 = _hash(np.int64(2), *keys)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@dataclass(frozen=True)
class SectionDefects:
    """Per-section artefacts of a whole volume (arrays of length n_sections), drawn from the seed alone."""

    shift_nm: np.ndarray  # (n_sections, 2) cumulative in-plane displacement (row, column)
    missing: np.ndarray  # (n_sections,) bool
    blurred: np.ndarray  # (n_sections,) bool
    gain: np.ndarray  # (n_sections,) contrast multiplier (drifts from section to section)
    offset: np.ndarray  # (n_sections,) brightness offset (drifts likewise)


@functools.lru_cache(maxsize=64)
def section_defects(spec: Source, seed: int, n_sections: int) -> SectionDefects:
    """The section-artefact table of a volume (O(planes) memory; cached)."""
    rng = np.random.default_rng([seed, settings_key(spec), 7])
    steps = rng.random(n_sections) < spec.p_misalign
    steps[0] = False
    jumps = rng.uniform(-spec.max_misalign_nm, spec.max_misalign_nm, size=(n_sections, 2)) * steps[:, None]
    missing = rng.random(n_sections) < spec.p_missing
    blurred = (rng.random(n_sections) < spec.p_blur_section) & ~missing
    # contrast drift: a mean-reverting (AR(1), 0.9) walk of gain and offset, stationary sd = contrast_drift
    kicks = rng.normal(scale=spec.contrast_drift * math.sqrt(1 - 0.9**2), size=(n_sections, 2))
    drift = np.zeros((n_sections, 2))
    for z in range(n_sections):
        drift[z] = (0.9 * drift[z - 1] if z else 0.0) + kicks[z]
    return SectionDefects(np.cumsum(jumps, axis=0), missing, blurred, np.exp(drift[:, 0]), drift[:, 1])


def sparse_labels(labels: np.ndarray, label_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep only an annotated subset of the objects: (labels, labels_mask uint8, 1 = labelled).

    An object is annotated when a hash of (seed, id) falls below ``label_fraction``, so every block makes
    the same choice. ``label_fraction >= 1`` keeps everything (mask all 1, ECS included); otherwise the
    other objects and ECS are unlabelled (0 in both arrays).
    """
    if label_fraction >= 1.0:
        return labels, np.ones(labels.shape, np.uint8)
    chosen = (labels > 0) & (_hash(np.int64(seed), np.int64(0x1AB), labels.astype(np.int64)) < label_fraction)
    return np.where(chosen, labels, np.uint64(0)), chosen.astype(np.uint8)


# ----------------------------------------------------------------------------------- one block
def simulate_block(
    source: str | Source,
    seed: int,
    volume_shape: Sequence[int],
    begin: Sequence[int],
    shape: Sequence[int],
    *,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw and labels of one box of a simulated volume, identical to the same box of the whole volume.

    Parameters
    ----------
    source : a name in :data:`SOURCES` or a :class:`Source`.
    seed : the volume's seed.
    volume_shape : shape (plane, row, column) of the whole volume.
    begin, shape : the box (voxels, plane, row, column).
    threads : threads for the nearest-sphere queries (-1: all cores); the result does not depend on it.

    Returns
    -------
    raw : uint8 ndarray of shape ``shape``.
    labels : uint64 ndarray of shape ``shape``; 0 is extracellular space.
    """
    spec = get_source(source)
    volume_shape = tuple(int(s) for s in volume_shape)
    begin, shape = tuple(int(b) for b in begin), tuple(int(s) for s in shape)
    ctx = spec.blur_context()
    r_begin = (begin[0], max(begin[1] - ctx, 0), max(begin[2] - ctx, 0))
    r_end = (
        begin[0] + shape[0],
        min(begin[1] + shape[1] + ctx, volume_shape[1]),
        min(begin[2] + shape[2] + ctx, volume_shape[2]),
    )
    r_shape = tuple(e - b for b, e in zip(r_begin, r_end))
    vs = np.asarray(spec.voxel_size)
    defects = section_defects(spec, seed, volume_shape[0])
    key = settings_key(spec)

    # the objects that can reach the (displaced) region
    shifts = defects.shift_nm[r_begin[0] : r_end[0]]
    lo_nm = np.asarray(r_begin) * vs + np.r_[0.0, shifts.min(0)]
    hi_nm = np.asarray(r_end) * vs + np.r_[0.0, shifts.max(0)]
    tissue = Tissue(spec.tissue, seed, np.asarray(volume_shape) * vs, lo_nm, hi_nm)
    mito_tree = cKDTree(tissue.mito_centres) if len(tissue.mito_centres) else None

    labels = np.zeros(r_shape, dtype=np.uint64)
    image = np.empty(r_shape, dtype=np.float64)
    yy, xx = np.meshgrid(np.arange(r_begin[1], r_end[1]), np.arange(r_begin[2], r_end[2]), indexing="ij")
    yy, xx = yy.ravel(), xx.ravel()
    for iz in range(r_shape[0]):
        z = r_begin[0] + iz
        pts = np.stack(
            [
                np.full(yy.shape, (z + 0.5) * vs[0]),
                (yy + 0.5) * vs[1] + defects.shift_nm[z, 0],
                (xx + 0.5) * vs[2] + defects.shift_nm[z, 1],
            ],
            axis=1,
        )
        lab, kind, boundary = tissue.label(pts, threads)
        labels[iz] = lab.reshape(r_shape[1:])
        # every label change is a membrane, also where the geometric distance (nearest spheres only) misses it
        boundary = np.minimum(boundary, _label_boundary_nm(labels[iz], vs[1:]).ravel())
        image[iz] = _render(pts, kind, boundary, mito_tree, tissue.mito_radii, spec, key).reshape(r_shape[1:])

    # in-plane blur (per section; blurred sections more), contrast with drift, shot noise, missing sections
    for iz in range(r_shape[0]):
        z = r_begin[0] + iz
        sigma_nm = math.hypot(spec.blur_nm, spec.blur_section_nm) if defects.blurred[z] else spec.blur_nm
        image[iz] = ndimage.gaussian_filter(
            image[iz], sigma=(sigma_nm / vs[1], sigma_nm / vs[2]), mode="reflect", truncate=4.0
        )
    crop = (
        slice(0, shape[0]),
        slice(begin[1] - r_begin[1], begin[1] - r_begin[1] + shape[1]),
        slice(begin[2] - r_begin[2], begin[2] - r_begin[2] + shape[2]),
    )
    image, labels = image[crop], labels[crop]
    sections = slice(begin[0], begin[0] + shape[0])
    gain, offset = defects.gain[sections, None, None], defects.offset[sections, None, None]
    image = 0.5 + (image - 0.5) * spec.contrast * gain + offset
    gz, gy, gx = np.meshgrid(
        np.arange(begin[0], begin[0] + shape[0]),
        np.arange(begin[1], begin[1] + shape[1]),
        np.arange(begin[2], begin[2] + shape[2]),
        indexing="ij",
    )
    # staining gradient: a slow in-plane intensity variation (scale 2 um), fixed through the stack
    plane = np.stack([np.zeros(gy[0].size), gy[0].ravel() * vs[1], gx[0].ravel() * vs[2]], axis=1)
    stain = 1.0 + spec.stain_gradient * (2.0 * _value_noise(plane, 2000.0, key + 2) - 1.0)
    image = image * stain.reshape(shape[1:])[None]
    image = image + spec.noise * np.sqrt(np.clip(image, 0.02, None) / 0.5) * _gaussian(np.int64(key), gz, gy, gx)
    image[defects.missing[sections]] = 0.0
    raw = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return raw, labels


def _label_boundary_nm(section: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """In-plane distance (nm) from each labelled pixel of a section to the nearest label change.

    Parameters
    ----------
    section : uint64 (row, column) labels, 0 = ECS.
    spacing : (row, column) pixel size in nm.

    Returns
    -------
    float64 (row, column): half a pixel on a labelled pixel with a 4-neighbour of another label (object or
    ECS), growing inwards; inf on ECS and where no change lies in the section.

    Example
    -------
    >>> _label_boundary_nm(np.array([[1, 1, 2]], np.uint64), np.array([8.0, 8.0]))
    array([[12.,  4.,  4.]])
    """
    edge = np.zeros(section.shape, bool)
    for axis in (0, 1):
        change = np.diff(section, axis=axis) != 0
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        edge[tuple(lo)] |= change
        edge[tuple(hi)] |= change
    edge &= section > 0
    if not edge.any():
        return np.full(section.shape, np.inf)
    dist = ndimage.distance_transform_edt(~edge, sampling=spacing) + 0.5 * float(min(spacing))
    return np.where(section > 0, dist, np.inf)


def _render(
    pts: np.ndarray,
    kind: np.ndarray,
    boundary: np.ndarray,
    mito_tree: cKDTree | None,
    mito_radii: np.ndarray,
    spec: Source,
    key: int,
) -> np.ndarray:
    """Noise-free intensity in [0, 1] of points (n, 3) nm of one section, before blur and contrast."""
    inside = (kind != ECS) & (kind != GLIA)
    if mito_tree is not None:
        d_m, i_m = mito_tree.query(pts, k=1, distance_upper_bound=MITO_REACH)
        in_mito = (d_m < mito_radii[np.minimum(i_m, len(mito_radii) - 1)]) & inside
    else:
        in_mito = np.zeros(len(pts), bool)
    tex = _value_noise(pts, spec.texture_nm, key)
    fine = _value_noise(pts, spec.texture_nm / 3.0, key + 1)
    val = np.where(
        kind == ECS,
        spec.ecs + 0.3 * spec.texture * (tex - 0.5),
        np.where(
            kind == GLIA,
            spec.glia + 0.5 * spec.texture * (tex - 0.5),
            spec.cytoplasm + spec.texture * (0.6 * tex + 0.4 * fine - 0.5),
        ),
    )
    val = np.where(kind == SOMA, val + 0.05, val)
    # vesicles: ~40 nm dark dots on a jittered 45 nm lattice, in about half the lattice cells of a bouton
    cell = np.floor(pts / 45.0).astype(np.int64)
    jitter = np.stack([_hash(np.int64(key + 10 + a), cell[:, 0], cell[:, 1], cell[:, 2]) for a in range(3)], 1)
    d_ves = np.linalg.norm(pts - (cell + 0.25 + 0.5 * jitter) * 45.0, axis=1)
    occupied = _hash(np.int64(key + 13), cell[:, 0], cell[:, 1], cell[:, 2]) < 0.5
    val = np.where((kind == BOUTON) & occupied & (d_ves < 20.0), spec.vesicle, val)
    val = np.where(in_mito, spec.mito + 0.25 * (fine - 0.5), val)
    # fully dark at the edge, fading out ``membrane_nm / 2`` inside (a stained bilayer plus its blur)
    strength = np.clip(1.5 - boundary / (0.33 * spec.membrane_nm), 0.0, 1.0)
    return val + strength * (spec.membrane - val)


# ----------------------------------------------------------------------------------- whole volumes
def simulate_volume(
    source: str | Source, shape: Sequence[int], seed: int = 0, *, threads: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """A whole simulated volume in memory: (raw uint8, labels uint64), each of shape (plane, row, column)."""
    shape = _check_shape(shape)
    return simulate_block(source, seed, shape, (0, 0, 0), shape, threads=threads)


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be 3 positive ints (plane, row, column), got {shape}")
    return shape  # type: ignore[return-value]


JOB_COMMAND = "connectomics simulate"
BOOKKEEPING = "0/.job"
"""Where a simulation keeps its bookkeeping, relative to the container: inside the level-0 array of the image,
which is the container root (zarr warns about unknown folders at group level, not inside an array)."""
LEGACY_IMAGE = "raw"
"""Where the image lived in containers written before it moved to the root (bookkeeping in ``raw/0/.job``);
such a container keeps that layout when it is resumed or overwritten, so a cache of them stays valid."""


def _image_folder(path: Path) -> str:
    """The image's folder inside the container: ``""`` (the root), or ``"raw"`` in an older container."""
    return LEGACY_IMAGE if (path / LEGACY_IMAGE / BOOKKEEPING).is_dir() else ""


def simulate_to_zarr(
    path: str | Path,
    source: str | Source,
    shape: Sequence[int],
    *,
    seed: int = 0,
    chunks: Sequence[int] = (32, 128, 128),
    workers: int = 1,
    levels: int = 1,
    progress: bool = True,
    label_fraction: float = 1.0,
    overwrite: bool = False,
    wait: bool = False,
) -> Path:
    """Write a simulated volume as OME-Zarr, chunk by chunk: the container root is the image (uint8, scale
    levels ``path/0``, ``path/1``, ...), so OME-Zarr readers given ``path`` open it, with its NGFF label
    images ``path/labels/neuron_ids`` (uint64) and ``path/labels/labels_mask`` (uint8, 1 = labelled).
    The addresses used before the image moved to the root still open the same volumes (aliases, see
    :func:`connectomics.io.add_alias`): ``path/raw`` (the image), ``path/raw/labels/<name>``,
    ``path/labels`` (the neuron ids, not the NGFF labels group) and ``path/labels_mask``.

    The run is a resumable job (:mod:`shared.jobs`) whose bookkeeping lives in the container
    (``path/0/.job/``: the settings, a done-marker per chunk, failure records, the lock), so calling it
    again with the same settings finishes an interrupted run (after ``kill -9`` too) or, if it finished,
    does nothing; other settings are refused naming each that differs; a second run into the same
    container refuses naming the first (or waits); a container this function did not write is refused.

    Parameters
    ----------
    path : the zarr container to create (or resume), e.g. ``sim.zarr``.
    source, seed : see :data:`SOURCES`; the output is a pure function of (source, seed, shape).
    shape, chunks : volume and storage-chunk shape (plane, row, column); each chunk is one block of work.
    workers : threads generating blocks in parallel.
    levels : OME-Zarr scale levels to write (1 = full resolution only).
    progress : show a progress bar.
    label_fraction : fraction of the objects that are annotated (:func:`sparse_labels`); 1 = dense labels.
    overwrite : write into a container this function did not write, or restart one written with other
        settings (arrays of the same shape, dtype and chunks are rewritten in place).
    wait : wait for another run holding the container's lock instead of refusing.

    A container written before the image moved to the root (image at ``path/raw``, bookkeeping in
    ``path/raw/0/.job/``) keeps that layout when resumed or overwritten.

    Returns
    -------
    Path of the container.

    Raises
    ------
    shared.jobs.OutputExistsError, JobConfigError, JobLockedError : see above (one-line messages);
    shared.jobs.JobIncompleteError : blocks failed (after the others were written and marked).
    """
    from connectomics.io import (
        add_alias,
        add_multiscale_levels,
        create_label_image,
        create_ome_zarr_array,
        match_image_levels,
    )
    from shared.jobs import OutputExistsError, check_output_folder, open_job

    spec = get_source(source)
    shape = _check_shape(shape)
    chunks = _check_shape(chunks)
    if not 0.0 < label_fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1 (1 = full resolution only), got {levels}")
    path = check_output_folder(path, name="output")
    settings = {
        "source": spec.name,
        "seed": int(seed),
        "shape": list(shape),
        "chunks": list(chunks),
        "label_fraction": float(label_fraction),
        "source_settings": dataclasses.asdict(spec),
    }
    folder = _image_folder(path)
    image, inside = path / folder, f"{folder}/" if folder else ""  # Path("sim.zarr") / "" is the root
    if path.is_dir() and any(path.iterdir()) and not (image / BOOKKEEPING).is_dir() and not overwrite:
        raise OutputExistsError(
            f"{path} exists and was not written by `{JOB_COMMAND}` (no bookkeeping in "
            f"{image / BOOKKEEPING}); pass --overwrite to write into it, or choose another path"
        )
    with open_job(
        path,
        JOB_COMMAND,
        {**settings, "levels": int(levels)},
        overwrite=overwrite,
        wait=wait,
        bookkeeping=inside + BOOKKEEPING,
    ) as job:
        job.claim(
            *dict.fromkeys(
                [
                    "zarr.json",
                    f"{inside}zarr.json",
                    f"{inside}0/zarr.json",
                    f"{inside}0/c",
                    f"{inside}labels",
                    *[f"{inside}{level}" for level in range(1, levels)],
                ]
            )
        )
        common = {
            "shape": shape,
            "chunks": chunks,
            "axes": ("z", "y", "x"),
            "voxel_size": spec.voxel_size,
            "exists_ok": True,
        }
        raw = create_ome_zarr_array(image, dtype=np.uint8, **common)
        labels = create_label_image(image, "neuron_ids", dtype=np.uint64, chunks=chunks, exists_ok=True)
        # NGFF requires properties and colours to name the same label values (ome-zarr-models checks it)
        labels_mask = create_label_image(
            image,
            "labels_mask",
            dtype=np.uint8,
            chunks=chunks,
            exists_ok=True,
            colors={0: (0, 0, 0, 0), 1: (255, 255, 0, 96)},
            properties={0: {"meaning": "unlabelled"}, 1: {"meaning": "labelled"}},
        )
        if not folder:  # the address of the image before it moved to the root (an older container has it)
            add_alias(path, LEGACY_IMAGE, "")
        # the addresses of the ground truth before label images; `labels` is also the NGFF labels group
        add_alias(path, "labels", f"{inside}labels/neuron_ids")
        add_alias(path, "labels_mask", f"{inside}labels/labels_mask")
        import zarr

        zarr.open_group(str(path), mode="a").attrs.update(
            {"simulator": {k: v for k, v in settings.items() if k != "source_settings"}}
        )

        def work(block) -> None:
            r, lab = simulate_block(spec, seed, shape, block.write_roi.begin, block.write_roi.shape)
            lab, mask = sparse_labels(lab, label_fraction, seed)
            sl = block.write_roi.to_slices()
            raw[sl] = r
            labels[sl] = lab
            labels_mask[sl] = mask

        blocks = block_grid(Roi((0, 0, 0), shape), chunks)
        run_blockwise(
            work,
            blocks,
            DoneMarkers.of_job(job, "block"),
            workers=max(int(workers), 1),
            desc=f"simulate {spec.name}",
            progress=progress,
        ).raise_for_failures("simulate", records=job.folder / "failed")
        if not job.is_done("levels"):
            if levels > 1:
                add_multiscale_levels(image, levels - 1, method="mean")
            match_image_levels(image, "neuron_ids")
            match_image_levels(image, "labels_mask")
            job.mark_done("levels")
    return path


def cli(argv: list[str]) -> int:
    """``connectomics simulate OUT.zarr``: write a simulated EM volume."""
    from shared.cli import add_output_arguments, subcommand_parser

    listing = "\n".join(f"  {s.name:<7} {s.voxel_size} nm: {s.description}" for s in SOURCES.values())
    parser = subcommand_parser(
        "connectomics simulate",
        f"""Write a simulated serial-section EM volume as OME-Zarr: OUT is the image (uint8; also
addressed as OUT/raw), with NGFF label images OUT/labels/neuron_ids (uint64, 0 = extracellular space or
unlabelled; also OUT/labels) and OUT/labels/labels_mask (uint8, 1 = labelled; also OUT/labels_mask), so
napari or neuroglancer opened on OUT show the image and its labels. Neural tissue (thin
axons with boutons, spiny tapering dendrites, somata, glia, extracellular space), mitochondria, vesicles,
dark membranes, texture, blur, shot noise and section artefacts (missing, misaligned, blurred sections,
contrast drift). Deterministic by seed; generated chunk by chunk, so any size fits in memory.
Rerunning the same command finishes an interrupted run (after kill -9 too; bookkeeping in
OUT/0/.job/, which travels with the container) or, if it finished, does nothing; other settings are
refused naming each that differs; a container this command did not write is never written into
(--overwrite does); a second run into the same OUT refuses naming the first (--wait waits).

sources:
{listing}

examples:
  connectomics simulate sim.zarr --source sstem --shape 64,256,256 --seed 0
  connectomics simulate big.zarr --source fib --shape 512,2048,2048 --chunks 64,256,256 --workers 2""",
    )
    parser.add_argument("out", type=Path, help="zarr container to create, or to resume")
    parser.add_argument("--source", default="sstem", choices=list(SOURCES), help="simulated EM source")
    parser.add_argument("--shape", default="32,128,128", help="volume shape plane,row,column (voxels)")
    parser.add_argument("--chunks", default="32,128,128", help="storage chunk = block of work")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--workers", type=int, default=1, help="parallel threads")
    parser.add_argument("--levels", type=int, default=1, help="OME-Zarr scale levels")
    parser.add_argument(
        "--label-fraction",
        type=float,
        default=1.0,
        help="fraction of objects annotated (sparse labels; the rest is unlabelled, masked)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted run with the same settings (kept for old scripts: the same command always resumes)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    from shared.startup import announce_slow_import

    # dask and zarr load only now that the options are parsed; a terminal sees a status line meanwhile
    io = announce_slow_import("connectomics simulate", "connectomics.io:resolve_address")
    simulate_to_zarr(
        args.out,
        args.source,
        parse_coordinate(args.shape, name="--shape"),
        seed=args.seed,
        chunks=parse_coordinate(args.chunks, name="--chunks"),
        workers=args.workers,
        levels=args.levels,
        progress=not args.quiet,
        label_fraction=args.label_fraction,
        overwrite=args.overwrite,
        wait=args.wait,
    )
    image, ids, mask = (io.resolve_address(args.out / name) for name in ("raw", "labels", "labels_mask"))
    print(f"wrote the image {image} with its label images {ids} and {mask}")
    return 0
