"""EM volume simulator: neuron-like ground truth and serial-section EM rendering, generated block by block.

Ground truth
------------
Neurites are **skeletons**: persistent random walks in world coordinates (nm) with a per-process calibre
(log-normal radius), varicosities along the walk and side branches. Each skeleton is sampled as spheres
``(centre, radius)``. Every voxel goes to the process whose *sphere surface is nearest* (score
``d(voxel, centre) - radius``, minimised over the K nearest spheres), so processes grow until they touch,
like neuropil; voxels farther than ``ecs_gap`` nm outside every process are extracellular space (label 0).
Glia are clusters of large spheres with their own ids; mitochondria are small spheres inside processes
that only change the rendering (real ground truth does not separate organelles).

Rendering
---------
Membranes are dark where two processes meet (``s2 - s1 < membrane_nm``, with ``s2`` the best score of a
*different* process) or where a process meets extracellular space; cytoplasm gets smooth value-noise
texture, glia are lighter, mitochondria dark and granular. Then in-plane Gaussian blur, contrast, and
intensity-dependent (shot) noise; anisotropic sections come from the source's voxel size. Section defects
are drawn per section: missing sections (black), step misalignments (every later section shifted; the
labels follow the image, as annotators draw on the misaligned data) and blurred sections.

Sources
-------
:data:`SOURCES` holds named acquisition/tissue settings that differ in contrast, noise, resolution and
process statistics (``sstem``, ``sbem``, ``fib``, ``retina``), so the STAR leave-one-source-out protocol can
be run. They are inspired by, not fitted to, CREMI (fly ssTEM), SNEMI3D (mouse cortex SBEM), FIB-25 (fly
FIB-SEM) and the Berson retina volume; voxel sizes are coarser than the real ones to keep CPU runs small.

Blockwise and deterministic
---------------------------
The whole volume is a pure function of (source, seed, shape): every random choice is keyed by a world
position, never by the order of work. Skeletons are drawn per **cell** (a 1 um cube) from a generator
seeded with (seed, source, cell index); a block gathers the cells within reach (the longest half-process
plus the largest radius) of its region, and keeps the spheres within ``M = ecs_gap + membrane + r_max`` of
it: a sphere farther than ``M`` cannot change a label or a membrane there, so the block's labels are
exactly the whole-volume labels. Texture and shot noise are hashes of world / voxel coordinates;
section defects come from a per-section table. The only neighbourhood operation, the in-plane blur, is
computed on the block grown by the blur radius (clipped to the volume, where the whole-volume run reflects
at the same border) and cropped. So a volume written with any chunking is identical voxel for voxel
(tested), and memory is bounded by one block (plus its context), never the volume.

Example
-------
>>> raw, labels = simulate_volume("sstem", shape=(8, 64, 64), seed=0)
>>> raw.dtype, labels.dtype, raw.shape
(dtype('uint8'), dtype('uint64'), (8, 64, 64))
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import math
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from connectomics.morphology import MORPHOLOGIES, Morphology, neuron_labels

__all__ = ["MORPHOLOGIES", "SOURCES", "Morphology", "Source", "neuron_labels", "section_defects",
           "simulate_block", "simulate_to_zarr", "simulate_volume"]

CELL_NM = 1000.0
K_NEAREST = 6
_MAX_IDS_PER_CELL = 4096
_GLIA_ID_BASE = 2048


@dataclass(frozen=True)
class Source:
    """One simulated EM source: acquisition (resolution, contrast, noise, defects) and tissue statistics.

    Geometry is in nm, intensities in [0, 1], densities per cubic micrometre, probabilities per section.
    """

    name: str
    description: str
    voxel_size: tuple[float, float, float]
    # tissue
    process_density: float = 16.0
    radius_median: float = 110.0
    radius_sigma: float = 0.35
    length_range: tuple[float, float] = (800.0, 2400.0)
    tortuosity: float = 0.35
    orientation: tuple[float, float, float] = (1.0, 1.0, 1.0)
    branch_rate: float = 0.4
    varicosity: float = 0.2
    ecs_gap: float = 100.0
    glia_density: float = 0.05
    mito_rate: float = 0.5
    # rendering
    membrane_nm: float = 30.0
    cytoplasm: float = 0.72
    membrane: float = 0.12
    ecs: float = 0.85
    glia: float = 0.85
    mito: float = 0.35
    texture: float = 0.12
    texture_nm: float = 60.0
    contrast: float = 1.0
    noise: float = 0.05
    blur_nm: float = 6.0
    # section defects
    p_missing: float = 0.01
    p_misalign: float = 0.02
    max_misalign_nm: float = 60.0
    p_blur_section: float = 0.02
    blur_section_nm: float = 20.0

    @property
    def max_radius(self) -> float:
        """The largest process radius drawn (3 sigma of the log-normal, with varicosities)."""
        return self.radius_median * math.exp(3 * self.radius_sigma) * (1 + self.varicosity)

    @property
    def reach(self) -> float:
        """How far (nm) an object's spheres can lie from its start point: half a trunk plus the longest
        branch (0.3 length) plus the radius; glia lobes lie within 900 nm per axis and have radius <= 320."""
        return max(0.8 * self.length_range[1] + self.max_radius, 900.0 * math.sqrt(3) + 320.0)

    def blur_context(self) -> int:
        """In-plane context (voxels) the blur needs: scipy's Gaussian radius int(4 sigma + 0.5)."""
        sigma = max(self.blur_nm, math.hypot(self.blur_nm, self.blur_section_nm)) / min(self.voxel_size[1:])
        return int(4.0 * sigma + 0.5) + 1


SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("sstem", "fly neuropil, serial-section TEM (CREMI-like): thin sections far apart, high contrast, "
           "low noise, frequent misalignments", voxel_size=(40.0, 8.0, 8.0), radius_median=100.0,
           p_misalign=0.05, max_misalign_nm=64.0, noise=0.04, contrast=1.1),
    Source("sbem", "mouse cortex, serial block-face SEM (SNEMI3D-like): thick dendrites, more branches, "
           "medium contrast and noise, some missing sections", voxel_size=(30.0, 12.0, 12.0),
           radius_median=150.0, radius_sigma=0.45, branch_rate=0.8, process_density=6.0, noise=0.08,
           contrast=0.85, p_missing=0.03, texture=0.15, mito_rate=0.8, membrane_nm=40.0),
    Source("fib", "fly neuropil, FIB-SEM (FIB-25-like): near-isotropic voxels, thin processes, high noise, "
           "low contrast, blur", voxel_size=(16.0, 16.0, 16.0), radius_median=80.0, radius_sigma=0.3,
           process_density=16.0, noise=0.12, contrast=0.7, blur_nm=12.0, p_misalign=0.0,
           p_missing=0.0, membrane_nm=36.0, ecs_gap=70.0),
    Source("retina", "mouse retina, SBEM (Berson-like): processes running along z, dense thin neurites, "
           "lighter membranes, blurred sections", voxel_size=(25.0, 10.0, 10.0), radius_median=70.0,
           radius_sigma=0.4, process_density=20.0, orientation=(3.0, 0.6, 0.6), tortuosity=0.2,
           membrane=0.25, cytoplasm=0.65, noise=0.07, p_blur_section=0.05, branch_rate=0.2),
]}


def get_source(source: str | Source) -> Source:
    """Look a source up by name; ``ValueError`` listing the names for an unknown one."""
    if isinstance(source, Source):
        return source
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    return SOURCES[source]


@functools.lru_cache(maxsize=256)
def _source_key(spec: Source) -> int:
    """A stable 31-bit key of the source's settings (not Python's salted ``hash``)."""
    text = repr(dataclasses.astuple(spec)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little") & 0x7FFFFFFF


# ------------------------------------------------------------------------------- ground-truth geometry
@dataclass(frozen=True)
class _Grid:
    """The cell grid covering the volume plus a margin of cells whose processes can reach into it."""

    lo: tuple[int, int, int]
    dims: tuple[int, int, int]

    @classmethod
    def for_volume(cls, spec: Source, shape: Sequence[int]) -> _Grid:
        margin = int(math.ceil(spec.reach / CELL_NM)) + 1
        extent = [s * v for s, v in zip(shape, spec.voxel_size)]
        n = [int(math.ceil(e / CELL_NM)) for e in extent]
        return cls((-margin,) * 3, tuple(k + 2 * margin for k in n))  # type: ignore[arg-type]

    def linear(self, cell: tuple[int, int, int]) -> int:
        i = [c - lo for c, lo in zip(cell, self.lo)]
        return (i[0] * self.dims[1] + i[1]) * self.dims[2] + i[2]

    def cells_near(self, begin_nm: np.ndarray, end_nm: np.ndarray, reach: float) -> list[tuple[int, int, int]]:
        lo = [max(int(math.floor((b - reach) / CELL_NM)), g) for b, g in zip(begin_nm, self.lo)]
        hi = [min(int(math.floor((e + reach) / CELL_NM)), g + d - 1)
              for e, g, d in zip(end_nm, self.lo, self.dims)]
        return [(z, y, x) for z in range(lo[0], hi[0] + 1) for y in range(lo[1], hi[1] + 1)
                for x in range(lo[2], hi[2] + 1)]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _walks(rng: np.random.Generator, starts: np.ndarray, directions: np.ndarray, lengths: np.ndarray,
           radii: np.ndarray, spec: Source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Persistent random walks, all at once: sphere centres and radii sampled every half radius.

    Parameters
    ----------
    starts, directions : (m, 3) start points (nm) and initial unit directions, axes (plane, row, column).
    lengths, radii : (m,) walk lengths and mean radii (nm).

    Returns
    -------
    centres (n, 3), radii (n,), walk (n,) index of the walk each sphere belongs to.
    """
    m = len(starts)
    if m == 0:
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.int64)
    step = np.maximum(radii * 0.5, 12.0)
    n = np.maximum((lengths / step).astype(np.int64), 2)
    n_max = int(n.max())
    drift = np.cumsum(rng.normal(size=(m, n_max, 3)), axis=1) * (spec.tortuosity * np.sqrt(step / 1000.0)
                                                                 )[:, None, None]
    orient = np.asarray(spec.orientation) / max(spec.orientation)
    dirs = _unit(directions[:, None] + drift * orient)
    centres = starts[:, None] + np.cumsum(dirs * step[:, None, None], axis=1)
    wobble = ndimage.gaussian_filter1d(rng.normal(size=(m, n_max)), sigma=4.0, axis=1, mode="nearest")
    wobble /= np.maximum(np.abs(wobble).max(axis=1, keepdims=True), 1e-9)
    r = np.maximum(radii[:, None] * (1.0 + spec.varicosity * wobble), 15.0)
    valid = np.arange(n_max)[None] < n[:, None]
    walk = np.broadcast_to(np.arange(m)[:, None], (m, n_max))
    return centres[valid], r[valid], walk[valid]


@functools.lru_cache(maxsize=1024)  # ~100 kB per cell: bounded, independent of the volume size
def _cell_objects(spec: Source, seed: int, cell: tuple[int, int, int], cell_id: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Spheres of every process and glia cell started in ``cell``, and that cell's mitochondria.

    Returns (centres (n, 3) nm, radii (n,), ids (n,) uint64, mito centres (m, 3), mito radii (m,)). Cached:
    neighbouring blocks share cells.
    """
    rng = np.random.default_rng([seed, _source_key(spec), *(c + (1 << 20) for c in cell)])
    origin = np.asarray(cell, dtype=np.float64) * CELL_NM
    cell_um3 = (CELL_NM / 1000.0) ** 3
    orient = np.asarray(spec.orientation)
    n_proc = min(int(rng.poisson(spec.process_density * cell_um3)), _GLIA_ID_BASE - 1)
    proc_ids = (np.uint64(cell_id) * np.uint64(_MAX_IDS_PER_CELL) + np.arange(1, n_proc + 1, dtype=np.uint64))
    starts = origin + rng.uniform(0, CELL_NM, size=(n_proc, 3))
    directions = _unit(rng.normal(size=(n_proc, 3)) * orient)
    radius = spec.radius_median * np.exp(spec.radius_sigma * np.clip(rng.normal(size=n_proc), -3, 3))
    length = rng.uniform(*spec.length_range, size=n_proc)
    # two half-walks from each start point, in opposite directions
    c_tr, r_tr, w_tr = _walks(rng, np.r_[starts, starts], np.r_[directions, -directions],
                              np.r_[length, length] / 2, np.r_[radius, radius], spec)
    owner = np.r_[np.arange(n_proc), np.arange(n_proc)]
    centres, radii, ids = [c_tr], [r_tr], [proc_ids[owner[w_tr]]] if n_proc else [np.zeros(0, np.uint64)]
    # side branches start at random points of their trunk, thinner and shorter
    n_br = np.minimum(rng.poisson(spec.branch_rate * length / 1000.0), 4)
    br_owner = np.repeat(np.arange(n_proc), n_br)
    if len(br_owner) and len(c_tr):
        # a random sphere of a random half-trunk of the owner (w_tr is sorted by walk)
        counts = np.bincount(w_tr, minlength=2 * n_proc)
        first = np.r_[0, np.cumsum(counts)[:-1]]
        walk = br_owner + n_proc * rng.integers(0, 2, size=len(br_owner))
        pick = first[walk] + (rng.random(len(br_owner)) * counts[walk]).astype(np.int64)
        c_br, r_br, w_br = _walks(rng, c_tr[pick], _unit(rng.normal(size=(len(pick), 3)) * orient),
                                  length[br_owner] * rng.uniform(0.15, 0.3, size=len(pick)),
                                  radius[br_owner] * rng.uniform(0.4, 0.7, size=len(pick)), spec)
        centres.append(c_br)
        radii.append(r_br)
        ids.append(proc_ids[br_owner[w_br]])
    # mitochondria: short chains of small spheres inside trunks (rendering only)
    n_mito = int(rng.poisson(spec.mito_rate * float(length.sum()) / 1000.0)) if n_proc else 0
    mito_c, mito_r = np.zeros((0, 3)), np.zeros(0)
    if n_mito and len(c_tr) > 3:
        at = rng.integers(0, len(c_tr) - 3, size=n_mito)
        r_m = np.minimum(0.45 * r_tr[at], 70.0)
        shift = _unit(rng.normal(size=(n_mito, 3))) * (0.3 * r_tr[at])[:, None]
        mito_c = np.concatenate([c_tr[at + j] + shift for j in range(3)])
        mito_r = np.concatenate([r_m] * 3)
    # glia: clusters of large lobes, own ids
    n_glia = int(rng.poisson(spec.glia_density * cell_um3))
    for g in range(n_glia):
        n_lobes = int(rng.integers(5, 14))
        centre = origin + rng.uniform(0, CELL_NM, size=3)
        centres.append(centre[None] + np.clip(rng.normal(scale=300.0, size=(n_lobes, 3)), -900, 900))
        radii.append(rng.uniform(150.0, 320.0, size=n_lobes))
        ids.append(np.full(n_lobes, cell_id * _MAX_IDS_PER_CELL + _GLIA_ID_BASE + g + 1, dtype=np.uint64))
    return (np.concatenate(centres), np.concatenate(radii), np.concatenate(ids).astype(np.uint64), mito_c,
            mito_r)


# ------------------------------------------------------------------------------- deterministic noise
def _hash(*keys: np.ndarray) -> np.ndarray:
    """splitmix64 of combined integer keys -> uniform float64 in [0, 1). Vectorised, platform independent."""
    h = np.zeros(np.broadcast(*keys).shape, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            h = h ^ (np.asarray(k).astype(np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
                     + (h << np.uint64(6)) + (h >> np.uint64(2)))
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
                w = (f[:, 0] if dz else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) \
                    * (f[:, 2] if dx else 1 - f[:, 2])
                out += w * _hash(np.int64(key), b[:, 0] + dz, b[:, 1] + dy, b[:, 2] + dx)
    return out


def _gaussian(*keys: np.ndarray) -> np.ndarray:
    """Standard normal values keyed by integers (Box-Muller on two hashes)."""
    u1 = np.maximum(_hash(np.int64(1), *keys), 1e-12)
    u2 = _hash(np.int64(2), *keys)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@dataclass(frozen=True)
class SectionDefects:
    """Per-section defects of a whole volume (arrays of length n_sections), drawn from the seed alone."""

    shift_nm: np.ndarray     # (n_sections, 2) cumulative in-plane displacement (row, column)
    missing: np.ndarray      # (n_sections,) bool
    blurred: np.ndarray      # (n_sections,) bool


@functools.lru_cache(maxsize=64)
def section_defects(spec: Source, seed: int, n_sections: int) -> SectionDefects:
    """The section-defect table of a volume (O(planes) memory; cached)."""
    rng = np.random.default_rng([seed, _source_key(spec), 7])
    steps = rng.random(n_sections) < spec.p_misalign
    steps[0] = False
    jumps = rng.uniform(-spec.max_misalign_nm, spec.max_misalign_nm, size=(n_sections, 2)) * steps[:, None]
    missing = rng.random(n_sections) < spec.p_missing
    blurred = (rng.random(n_sections) < spec.p_blur_section) & ~missing
    return SectionDefects(np.cumsum(jumps, axis=0), missing, blurred)


# ----------------------------------------------------------------------------------- one block
def simulate_block(source: str | Source, seed: int, volume_shape: Sequence[int], begin: Sequence[int],
                   shape: Sequence[int], *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
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
    r_end = (begin[0] + shape[0], min(begin[1] + shape[1] + ctx, volume_shape[1]),
             min(begin[2] + shape[2] + ctx, volume_shape[2]))
    r_shape = tuple(e - b for b, e in zip(r_begin, r_end))
    vs = np.asarray(spec.voxel_size)
    defects = section_defects(spec, seed, volume_shape[0])
    key = _source_key(spec)

    # spheres that can matter here: from cells within reach, then within M of the (displaced) region
    shifts = defects.shift_nm[r_begin[0]:r_end[0]]
    lo_nm = np.asarray(r_begin) * vs + np.r_[0.0, shifts.min(0)]
    hi_nm = np.asarray(r_end) * vs + np.r_[0.0, shifts.max(0)]
    grid = _Grid.for_volume(spec, volume_shape)
    objs = [_cell_objects(spec, seed, c, grid.linear(c)) for c in grid.cells_near(lo_nm, hi_nm, spec.reach)]
    centres = np.concatenate([o[0] for o in objs])
    radii = np.concatenate([o[1] for o in objs])
    ids = np.concatenate([o[2] for o in objs])
    r_max = float(radii.max()) if len(radii) else 0.0
    margin = spec.ecs_gap + spec.membrane_nm + r_max + 1.0
    keep = np.all((centres > lo_nm - margin) & (centres < hi_nm + margin), axis=1)
    centres, radii, ids = centres[keep], radii[keep], ids[keep]
    mito_c = np.concatenate([o[3] for o in objs])
    mito_r = np.concatenate([o[4] for o in objs])
    tree = cKDTree(centres) if len(centres) else None
    mito_tree = cKDTree(mito_c) if len(mito_c) else None
    k = min(K_NEAREST, max(len(centres), 1))

    labels = np.zeros(r_shape, dtype=np.uint64)
    image = np.empty(r_shape, dtype=np.float64)
    yy, xx = np.meshgrid(np.arange(r_begin[1], r_end[1]), np.arange(r_begin[2], r_end[2]), indexing="ij")
    yy, xx = yy.ravel(), xx.ravel()
    for iz in range(r_shape[0]):
        z = r_begin[0] + iz
        pts = np.stack([np.full(yy.shape, z * vs[0]), yy * vs[1] + defects.shift_nm[z, 0],
                        xx * vs[2] + defects.shift_nm[z, 1]], axis=1)
        lab, strength, kind = _label_section(pts, tree, radii, ids, k, margin, spec, threads)
        if mito_tree is not None:
            d_m, i_m = mito_tree.query(pts, k=1, distance_upper_bound=200.0)
            in_mito = (d_m < mito_r[np.minimum(i_m, len(mito_r) - 1)]) & (kind == 1)
        else:
            in_mito = np.zeros(len(pts), bool)
        tex = _value_noise(pts, spec.texture_nm, key)
        fine = _value_noise(pts, spec.texture_nm / 3.0, key + 1)
        val = np.where(kind == 0, spec.ecs + 0.3 * spec.texture * (tex - 0.5),
                       np.where(kind == 2, spec.glia + 0.5 * spec.texture * (tex - 0.5),
                                spec.cytoplasm + spec.texture * (0.6 * tex + 0.4 * fine - 0.5)))
        val = np.where(in_mito, spec.mito + 0.25 * (fine - 0.5), val)
        val = val + strength * (spec.membrane - val)
        labels[iz] = lab.reshape(r_shape[1:])
        image[iz] = val.reshape(r_shape[1:])

    # in-plane blur (per section; blurred sections more), contrast, shot noise, missing sections
    for iz in range(r_shape[0]):
        z = r_begin[0] + iz
        sigma_nm = math.hypot(spec.blur_nm, spec.blur_section_nm) if defects.blurred[z] else spec.blur_nm
        image[iz] = ndimage.gaussian_filter(image[iz], sigma=(sigma_nm / vs[1], sigma_nm / vs[2]),
                                            mode="reflect", truncate=4.0)
    crop = (slice(0, shape[0]), slice(begin[1] - r_begin[1], begin[1] - r_begin[1] + shape[1]),
            slice(begin[2] - r_begin[2], begin[2] - r_begin[2] + shape[2]))
    image, labels = image[crop], labels[crop]
    image = 0.5 + (image - 0.5) * spec.contrast
    gz, gy, gx = np.meshgrid(np.arange(begin[0], begin[0] + shape[0]), np.arange(begin[1], begin[1] + shape[1]),
                             np.arange(begin[2], begin[2] + shape[2]), indexing="ij")
    image = image + spec.noise * np.sqrt(np.clip(image, 0.02, None) / 0.5) * _gaussian(np.int64(key), gz, gy, gx)
    missing = defects.missing[begin[0]:begin[0] + shape[0]]
    image[missing] = 0.0
    raw = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return raw, labels


def _label_section(pts: np.ndarray, tree: cKDTree | None, radii: np.ndarray, ids: np.ndarray, k: int,
                   margin: float, spec: Source, threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, membrane strength in [0, 1] and kind (0 ECS, 1 neurite, 2 glia) of points (n, 3) nm."""
    n = len(pts)
    if tree is None:
        return np.zeros(n, np.uint64), np.zeros(n), np.zeros(n, np.int8)
    d, idx = tree.query(pts, k=k, distance_upper_bound=margin, workers=threads)
    if k == 1:
        d, idx = d[:, None], idx[:, None]
    valid = idx < len(radii)
    safe = np.where(valid, idx, 0)
    score = np.where(valid, d - radii[safe], np.inf)
    cand = np.where(valid, ids[safe], np.uint64(0))
    best = np.argmin(score, axis=1)
    rows = np.arange(n)
    s1 = score[rows, best]
    id1 = cand[rows, best]
    other = np.where(cand != id1[:, None], score, np.inf).min(axis=1)
    inside = s1 <= spec.ecs_gap
    labels = np.where(inside, id1, np.uint64(0))
    gap = np.where(inside, other - np.where(inside, s1, 0.0), np.inf)
    between = np.clip(1.0 - gap / spec.membrane_nm, 0.0, 1.0)
    to_ecs = np.clip(1.0 - (spec.ecs_gap - s1) / (0.5 * spec.membrane_nm), 0.0, 1.0)
    strength = np.where(inside, np.maximum(between, to_ecs), 0.0)
    kind = np.where(inside, np.where((id1 % np.uint64(_MAX_IDS_PER_CELL)) > _GLIA_ID_BASE, 2, 1), 0)
    return labels, strength, kind.astype(np.int8)


# ----------------------------------------------------------------------------------- whole volumes
def simulate_volume(source: str | Source, shape: Sequence[int], seed: int = 0, *, threads: int = -1
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A whole simulated volume in memory: (raw uint8, labels uint64), each of shape (plane, row, column)."""
    shape = _check_shape(shape)
    return simulate_block(source, seed, shape, (0, 0, 0), shape, threads=threads)


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be 3 positive ints (plane, row, column), got {shape}")
    return shape  # type: ignore[return-value]


def simulate_to_zarr(path: str | Path, source: str | Source, shape: Sequence[int], *, seed: int = 0,
                     chunks: Sequence[int] = (32, 128, 128), workers: int = 1, levels: int = 1,
                     progress: bool = True, resume: bool = False) -> Path:
    """Write a simulated volume as OME-Zarr, chunk by chunk: image ``path/raw`` (uint8) and its NGFF label
    image ``path/raw/labels/neuron_ids`` (uint64; also readable as ``path/labels``, see connectomics.io).

    Parameters
    ----------
    path : the zarr container to create, e.g. ``sim.zarr``.
    source, seed : see :data:`SOURCES`; the output is a pure function of (source, seed, shape).
    shape, chunks : volume and storage-chunk shape (plane, row, column); each chunk is one block of work.
    workers : threads generating blocks in parallel.
    levels : OME-Zarr scale levels to write (1 = full resolution only).
    progress : show a progress bar.
    resume : if the container exists from an interrupted run with the same settings, regenerate only the
        chunks not yet recorded as done (recorded in ``path/.simulate_done/``, written after each block).

    Returns
    -------
    Path of the container.
    """
    import json

    from tqdm.auto import tqdm

    from connectomics.io import (
        add_alias,
        add_multiscale_levels,
        create_label_image,
        create_ome_zarr_array,
        match_image_levels,
    )

    spec = get_source(source)
    shape = _check_shape(shape)
    chunks = _check_shape(chunks)
    path = Path(path)
    settings = {"source": spec.name, "seed": int(seed), "shape": list(shape), "chunks": list(chunks),
                "source_settings": dataclasses.asdict(spec)}
    done_dir = path / ".simulate_done"
    if path.exists():
        if not resume:
            raise FileExistsError(f"{path} already exists; refusing to overwrite it (pass resume=True / "
                                  f"--resume to finish an interrupted run, or choose another path)")
        manifest = path / "simulate.json"
        if not manifest.exists() or json.loads(manifest.read_text()) != json.loads(json.dumps(settings)):
            raise ValueError(f"{path} was written with other settings than requested; refusing to resume "
                             f"(compare {manifest})")
    else:
        path.mkdir(parents=True)
        (path / "simulate.json").write_text(json.dumps(settings, indent=2))
    done_dir.mkdir(exist_ok=True)
    common = {"shape": shape, "chunks": chunks, "axes": ("z", "y", "x"), "voxel_size": spec.voxel_size,
              "exists_ok": resume}
    raw = create_ome_zarr_array(path / "raw", dtype=np.uint8, **common)
    labels = create_label_image(path / "raw", "neuron_ids", dtype=np.uint64, chunks=chunks, exists_ok=resume)
    add_alias(path, "labels", "raw/labels/neuron_ids")
    import zarr

    zarr.open_group(str(path), mode="a").attrs.update({"simulator": {k: v for k, v in settings.items()
                                                                     if k != "source_settings"}})
    starts = [(z, y, x) for z in range(0, shape[0], chunks[0]) for y in range(0, shape[1], chunks[1])
              for x in range(0, shape[2], chunks[2])]

    def work(start: tuple[int, int, int]) -> None:
        marker = done_dir / "_".join(map(str, start))
        if marker.exists():
            return
        size = tuple(min(c, s - b) for b, c, s in zip(start, chunks, shape))
        r, lab = simulate_block(spec, seed, shape, start, size)
        sl = tuple(slice(b, b + s) for b, s in zip(start, size))
        raw[sl] = r
        labels[sl] = lab
        marker.touch()  # only after both chunks are written

    with ThreadPoolExecutor(max_workers=max(int(workers), 1)) as pool:
        # consume the results as they finish so the bar advances and a failed block raises here
        collections.deque(tqdm(pool.map(work, starts), total=len(starts), desc=f"simulate {spec.name}",
                               unit="block", disable=not progress), maxlen=0)
    if levels > 1:
        add_multiscale_levels(path / "raw", levels - 1, method="mean")
    match_image_levels(path / "raw", "neuron_ids")
    return path


def cli(argv: list[str]) -> int:
    """``connectomics simulate OUT.zarr``: write a simulated EM volume."""
    from shared.cli import subcommand_parser

    listing = "\n".join(f"  {s.name:<7} {s.voxel_size} nm: {s.description}" for s in SOURCES.values())
    parser = subcommand_parser(
        "connectomics simulate",
        f"""Write a simulated serial-section EM volume as OME-Zarr: OUT/raw (uint8) and OUT/labels (uint64,
0 = extracellular space). Neuron-like processes (branching, touching, varied calibre), glia, mitochondria,
dark membranes, texture, blur, shot noise and section defects. Deterministic by seed; generated chunk by
chunk, so any size fits in memory.

sources:
{listing}

examples:
  connectomics simulate sim.zarr --source sstem --shape 64,256,256 --seed 0
  connectomics simulate big.zarr --source fib --shape 512,2048,2048 --chunks 64,256,256 --workers 2""")
    parser.add_argument("out", type=Path, help="zarr container to create (never overwritten)")
    parser.add_argument("--source", default="sstem", choices=list(SOURCES), help="simulated EM source")
    parser.add_argument("--shape", default="32,128,128", help="volume shape plane,row,column (voxels)")
    parser.add_argument("--chunks", default="32,128,128", help="storage chunk = block of work")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--workers", type=int, default=1, help="parallel threads")
    parser.add_argument("--levels", type=int, default=1, help="OME-Zarr scale levels")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted run with the same settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        shape = tuple(int(v) for v in args.shape.split(","))
        chunks = tuple(int(v) for v in args.chunks.split(","))
        simulate_to_zarr(args.out, args.source, shape, seed=args.seed, chunks=chunks, workers=args.workers,
                         levels=args.levels, progress=not args.quiet, resume=args.resume)
    except (ValueError, FileExistsError) as err:
        print(f"connectomics simulate: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}/raw and {args.out}/labels")
    return 0
