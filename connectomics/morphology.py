"""Neuron morphology for the EM simulator: thin branching tubes, spines, somata, glia and extracellular space.

Why
---
Real neuropil is not a tiling of convex blobs. Axons and spine necks are tubes a few voxels across at
8 nm in-plane and often thinner than one 40 nm section; they run among thick dendrites, somata and glia,
with extracellular space (ECS) between membranes. This module draws such tissue as a pure, pointwise
function of world position (nm), so any block of any volume can be labelled independently.

Geometry (nm; sources; "unverified" marks numbers we could not check against a primary source)
-------------------------------------------------------------------------------------------------
* **Axons**: log-normal radius, median 60 nm (diameter ~120 nm, 10-90 % range ~80-200 nm), clipped to
  diameters 50-400 nm. Neurites span ~20-1000 nm (bioRxiv 10.1101/653188); the smallest CNS axons are
  ~0.1 um (BioNumbers 110608), axons and spine necks can be <= 50 nm (BioNumbers 112022). Axons branch
  (collaterals, ~0.3 per um of trunk, 0.8 of its calibre; unverified) and carry
  **boutons** (varicosities, diameter 0.4-0.7 um, ~0.3 per um; unverified) filled with vesicles.
* **Dendrites**: shaft diameter 0.5-2 um (log-normal, median 0.8 um; unverified), tapering to ``taper``
  of the base radius, with **spines** (~1.5 per um; unverified): necks of diameter 50-200 nm (median
  90 nm; BioNumbers 112022 for <= 50 nm necks; cryo-fixed necks are >30 % thinner, eLife 56384), neck
  length 0.3-0.9 um and heads of diameter 0.3-0.6 um (mean head volume 0.03 um^3 = diameter 0.39 um,
  base-tip length 0.85 um: PMC4595661 fig. 4). A spine has its dendrite's id, as in real ground truth.
* **Somata**: spheres of diameter 5-12 um (textbook range 5-15 um, unverified; ~1e5 neurons per mm^3
  of cortex, unverified), so a small volume holds at most part of one.
* **Glia**: irregular processes that *fill* the space left between neurites up to ``glia_grow`` nm from
  their core (astrocytic sheets wrap neuropil; shape statistics unverified).
* **ECS**: sheets between neighbouring cells and gaps around neurites, plus all space no cell reaches. Its
  volume fraction is ``ecs_fraction``: ~20 % in vivo, 16.3 % cryo-fixed, 7.4 % after conventional
  chemical fixation (PMID 6987773; litmetric 7976529); default 0.10. The sheet width that yields the
  requested fraction is found once per morphology on a probe volume (:func:`probe_sheet_width`; tabulated
  for the named classes and sources), so a small
  volume varies around it (``dense`` at 32x128x128: 0.065-0.13 over seeds); where the cells leave more
  space unreached than requested (``sparse`` ~0.4-0.7, ``thin`` ~0.3), the fraction is larger.
* Length densities (um of neurite per um^3) are chosen for the packing, not measured: ``dense`` has
  30 um/um^3 of axon so that axons fill roughly a third of the volume (the neuropil split of Chklovskii
  et al. 2002, from memory, unverified); that is above the ~4 um/um^3 cortical figure we recall from
  Braitenberg & Schüz (unverified) because our axons are thinner than theirs.

Sampling: spheres lie about 0.7 local radius apart along each walk (6 % surface ripple).

Labelling rule (pointwise)
--------------------------
Every object is a union of spheres ``(centre, radius)`` sampled along persistent random walks; its
signed surface distance at ``p`` is ``s = |p - c| - r`` minimised over its spheres. Neurites and somata
are *cores*: ``p`` belongs to the core with the smallest ``s <= 0``. Elsewhere ``p`` belongs to the glial
process with the smallest ``s <= glia_grow``, or to ECS. ``p`` is ECS too when it lies within the sheet
half-width ``w`` of another cell: inside a core, ``(s_other - s) / 2 < w`` for another core; in glia,
the gap to the nearest core surface or half the gap to another glial cell is below ``w``. Spheres are found per radius
class with k-d trees (k nearest centres within the reach of that class), so a spine neck's many small
spheres never hide the dendrite it sits on. Spheres are kept and queried within a reach fixed per class,
so every block sees the same candidates for a point and blocks agree voxel for voxel with the whole.

Example
-------
>>> labels = neuron_labels("thin", (8, 64, 64), seed=0)
>>> labels.dtype, labels.shape
(dtype('uint64'), (8, 64, 64))
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

#: object kinds (``kind`` arrays): what a voxel is, for rendering
ECS, NEURITE, GLIA, SOMA, BOUTON = 0, 1, 2, 3, 4
_W_MIN, _W_MAX = 0.5, 60.0  # nm, bounds of the ECS sheet half-width
_REACH_EXTRA = 2 * (_W_MAX + 50.0)  # nm beyond radius + growth where a sphere can still change a point
_IDS_PER_CELL = 1 << 12
MITO_REACH = 300.0  # nm: mitochondria (radius <= 150) are looked up within this distance
# spheres every 0.7 radius along a tube: the surface ripples by 1 - sqrt(1 - 0.35^2) = 6 %, and the k
# nearest centres span enough of the own tube that a touching neighbour is among them
_STEP = 0.7


@dataclass(frozen=True)
class Morphology:
    """Tissue statistics: lengths and radii in nm, densities per um^3 (neurites: um of length per um^3).

    See the module docstring for the sources of the defaults.
    """

    name: str
    axon_density: float = 4.0
    axon_radius: float = 60.0
    axon_sigma: float = 0.4
    axon_length: tuple[float, float] = (1500.0, 3000.0)
    bouton_rate: float = 0.3
    axon_branch_rate: float = 0.3
    bouton_radius: tuple[float, float] = (200.0, 350.0)
    dendrite_density: float = 0.0
    dendrite_radius: float = 400.0
    dendrite_sigma: float = 0.3
    dendrite_length: tuple[float, float] = (4000.0, 8000.0)
    taper: float = 0.5
    spine_rate: float = 1.5
    neck_radius: float = 45.0
    neck_sigma: float = 0.3
    neck_length: tuple[float, float] = (300.0, 900.0)
    head_radius: tuple[float, float] = (150.0, 300.0)
    soma_density: float = 0.0
    soma_radius: tuple[float, float] = (2500.0, 6000.0)
    glia_density: float = 0.0
    glia_grow: float = 0.0
    ecs_fraction: float = 0.10
    tortuosity: float = 0.35
    orientation: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mito_rate: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.ecs_fraction < 1.0:
            raise ValueError(f"ecs_fraction must be in [0, 1), got {self.ecs_fraction}")


MORPHOLOGIES: dict[str, Morphology] = {
    m.name: m
    for m in [
        # neuropil: thin axons and spiny dendrites among somata and space-filling glia, little ECS
        Morphology(
            "dense",
            axon_density=30.0,
            dendrite_density=0.4,
            soma_density=1e-4,
            glia_density=2.0,
            glia_grow=800.0,
            ecs_fraction=0.10,
        ),
        # branching processes in large unlabelled-looking gaps: few cells, nothing fills the space
        Morphology(
            "sparse", axon_density=12.0, dendrite_density=0.05, spine_rate=1.0, glia_density=0.0, ecs_fraction=0.07
        ),
        # only thin processes (axons, spine-neck calibre), packed with moderate ECS: 160 um/um^3 of ~45 nm
        # radius tubes fill ~70 % of the volume (80 left ~0.52 ECS unreached)
        Morphology("thin", axon_density=160.0, axon_radius=45.0, axon_sigma=0.35, bouton_rate=0.0, ecs_fraction=0.07),
    ]
}


def lookup_settings(value: Any, table: dict[str, Any], what: str) -> Any:
    """``value`` itself if it is a settings object, else ``table[value]``; ``ValueError`` listing the names."""
    if not isinstance(value, str):
        return value
    if value not in table:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(table)}")
    return table[value]


def get_morphology(morphology: str | Morphology) -> Morphology:
    """Look a morphology class up by name; ``ValueError`` listing the names for an unknown one."""
    return lookup_settings(morphology, MORPHOLOGIES, "morphology")


@functools.lru_cache(maxsize=256)
def settings_key(settings: Any) -> int:
    """A stable 31-bit key of a frozen settings dataclass (not Python's salted ``hash``); seeds its RNGs."""
    return (
        int.from_bytes(hashlib.sha256(repr(dataclasses.astuple(settings)).encode()).digest()[:4], "little") & 0x7FFFFFFF
    )


# ----------------------------------------------------------------------------------- object layers
@dataclass
class Spheres:
    """Objects as spheres: centres (n, 3) nm (plane, row, column), radii (n,), ids (n,) uint64, kinds (n,)
    int8, plus render-only mitochondria (m, 3) / (m,)."""

    centres: np.ndarray
    radii: np.ndarray
    ids: np.ndarray
    kinds: np.ndarray
    mito_centres: np.ndarray
    mito_radii: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[Spheres]) -> Spheres:
        if not parts:
            return cls(
                np.zeros((0, 3)),
                np.zeros(0),
                np.zeros(0, np.uint64),
                np.zeros(0, np.int8),
                np.zeros((0, 3)),
                np.zeros(0),
            )
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))

    def select(self, keep: np.ndarray) -> Spheres:
        return dataclasses.replace(
            self, centres=self.centres[keep], radii=self.radii[keep], ids=self.ids[keep], kinds=self.kinds[keep]
        )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _walks(
    rng: np.random.Generator,
    starts: np.ndarray,
    directions: np.ndarray,
    lengths: np.ndarray,
    steps: np.ndarray,
    tortuosity: float,
    orientation: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Persistent random walks, all at once.

    Parameters
    ----------
    starts, directions : (m, 3) start points (nm) and unit directions, axes (plane, row, column).
    lengths, steps : (m,) walk lengths and sampling steps (nm).

    Returns
    -------
    centres (n, 3) nm, walk (n,) index of each sample's walk, arc (n,) position along it in nm.
    """
    m = len(starts)
    if m == 0:
        return np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0)
    n = np.maximum(np.ceil(lengths / steps).astype(np.int64), 2)
    # the draws of every walk are padded to the longest one (the stream, hence the tissue, depends on it);
    # the padding is drawn but not used
    normals = rng.normal(size=(m, int(n.max()), 3))
    orient = np.asarray(orientation, dtype=np.float64) / max(orientation)
    from connectomics.morphology_kernels import walk_samples  # numba: not imported by --help

    return walk_samples(
        normals,
        n,
        np.asarray(starts, np.float64),
        np.asarray(directions, np.float64),
        np.asarray(steps, np.float64),
        tortuosity * np.sqrt(steps / 1000.0),
        orient,
    )


def _centre_on_start(centres: np.ndarray, walk: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Move each walk so its middle sample sits at its start point: an object then reaches half its length
    from its cell, which halves the cells a block must gather."""
    if len(walk) == 0:
        return centres
    counts = np.bincount(walk, minlength=len(starts))
    first = np.r_[0, np.cumsum(counts)[:-1]]
    mid = centres[first + counts // 2]
    return centres + (np.asarray(starts) - mid)[walk]


def _thin(walk: np.ndarray, arc: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Which samples to keep so that spheres lie about ``_STEP`` local radii apart (walks are sampled at
    their thinnest radius; boutons and tapering shafts would otherwise be oversampled, and the k nearest
    centres would all be of one object)."""
    if len(walk) == 0:
        return np.zeros(0, bool)
    new = np.r_[True, walk[1:] != walk[:-1]]
    last = np.r_[walk[1:] != walk[:-1], True]
    step = np.where(new, 0.0, np.diff(arc, prepend=arc[0]))
    phase = np.floor(np.cumsum(step / (_STEP * radii)))
    return new | last | (phase != np.r_[phase[0], phase[:-1]])


def _wobble(rng: np.random.Generator, walk: np.ndarray, amount: float) -> np.ndarray:
    """Smooth calibre variation in [1 - amount, 1 + amount] along each walk."""
    w = ndimage.gaussian_filter1d(rng.normal(size=len(walk)), sigma=4.0, mode="nearest")
    return 1.0 + amount * np.tanh(w / max(float(np.std(w)), 1e-9) if len(w) > 1 else w)


def _lognormal(rng: np.random.Generator, median: float, sigma: float, size: int, lo: float, hi: float) -> np.ndarray:
    return np.clip(median * np.exp(sigma * rng.normal(size=size)), lo, hi)


def _mito(
    rng: np.random.Generator, centres: np.ndarray, radii: np.ndarray, rate_per_nm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Render-only mitochondria: short chains of spheres inside thick parts of a process."""
    thick = np.flatnonzero(radii >= 90.0)
    n = int(rng.poisson(rate_per_nm * len(thick) * float(np.median(radii[thick]) * 0.5))) if len(thick) else 0
    if n == 0 or len(thick) < 4:
        return np.zeros((0, 3)), np.zeros(0)
    at = thick[rng.integers(0, len(thick) - 3, size=n)]
    r = np.minimum(0.4 * radii[at], 150.0)
    shift = _unit(rng.normal(size=(n, 3))) * (0.35 * radii[at])[:, None]
    return (np.concatenate([centres[np.minimum(at + j, len(centres) - 1)] + shift for j in range(3)]), np.tile(r, 3))


@dataclass(frozen=True)
class _Layer:
    """One kind of object, drawn per cubic cell of side ``cell_nm`` from a generator keyed by the cell."""

    index: int
    cell_nm: float

    def reach(self, m: Morphology) -> float:
        """How far (nm) from its cell an object's spheres can still be looked up: the farthest sphere centre
        plus the query reach of the widest radius class the layer uses (:func:`_class_reach`)."""
        if self.index == 0:  # half a trunk (centred on its start) and a collateral (<= 0.4 trunk); r <= 500
            return 0.9 * m.axon_length[1] + _class_reach(m, 1)
        if self.index == 1:  # half a shaft, a branch (0.4 shaft), a spine from the shaft surface (r <= 1200)
            spine = 1.2 * m.neck_length[1] + 1100.0 + m.head_radius[1]
            return 0.9 * m.dendrite_length[1] + spine + _class_reach(m, 2)
        if self.index == 2:  # a glial walk (<= 2500 nm) centred on its start; r <= 500
            return 1250.0 + _class_reach(m, 5)
        return _class_reach(m, 3)

    def active(self, m: Morphology) -> bool:
        return (m.axon_density, m.dendrite_density, m.glia_density, m.soma_density)[self.index] > 0


_RADIUS_EDGES = (120.0, 500.0, 1200.0)  # radius classes; dendrites stay below 1200, somata above


def _class_reach(m: Morphology, cls: int) -> float:
    """Query reach (nm) of a radius class (4-7: glia): its largest radius + growth + sheet/membrane reach."""
    upper = (*_RADIUS_EDGES, max(_RADIUS_EDGES[-1], m.soma_radius[1]))[cls % 4]
    return upper + (m.glia_grow if cls >= 4 else 0.0) + _REACH_EXTRA


_LAYERS = (_Layer(0, 2000.0), _Layer(1, 4000.0), _Layer(2, 2000.0), _Layer(3, 16000.0))


def _axons(rng: np.random.Generator, m: Morphology, origin: np.ndarray, cell_nm: float) -> list[tuple]:
    vol = (cell_nm / 1000.0) ** 3
    n = int(rng.poisson(m.axon_density * vol / (np.mean(m.axon_length) / 1000.0)))
    radius = _lognormal(rng, m.axon_radius, m.axon_sigma, n, 25.0, 200.0)
    length = rng.uniform(*m.axon_length, size=n)
    starts = origin + rng.uniform(0, cell_nm, size=(n, 3))
    c, w, arc = _walks(
        rng,
        starts,
        _unit(rng.normal(size=(n, 3)) * m.orientation),
        length,
        np.maximum(_STEP * radius, 10.0),
        m.tortuosity,
        m.orientation,
    )
    c = _centre_on_start(c, w, starts)
    r = radius[w] * _wobble(rng, w, 0.15)
    kind = np.full(len(r), NEURITE, np.int8)
    n_b = rng.poisson(m.bouton_rate * length / 1000.0)
    counts = np.bincount(w, minlength=n)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    for a in np.flatnonzero(n_b):  # boutons: vesicle-filled swellings along the axon
        on = np.arange(first[a], first[a] + counts[a])
        for t in rng.uniform(0, length[a], size=n_b[a]):
            rb = rng.uniform(*m.bouton_radius)
            bump = rb * np.exp(-(((arc[on] - t) / rb) ** 2))
            grow = bump > r[on]
            r[on] = np.maximum(r[on], bump)
            kind[on[grow & (bump > 1.5 * radius[a])]] = BOUTON
    mc, mr = _mito(rng, c, r, m.mito_rate / 1000.0 * 0.3)
    keep = _thin(w, arc, r)
    # collaterals: thinner side branches from random points of the trunk, same id
    n_br = np.minimum(rng.poisson(m.axon_branch_rate * length / 1000.0), 3)
    owner = np.repeat(np.arange(n), n_br)
    at = _pick_in_walk(rng, w, owner)
    r_br = 0.8 * radius[owner]
    cb, wb, ab = _walks(
        rng,
        c[at],
        _unit(rng.normal(size=(len(at), 3)) * m.orientation),
        length[owner] * rng.uniform(0.2, 0.4, size=len(at)),
        np.maximum(_STEP * r_br, 10.0),
        m.tortuosity,
        m.orientation,
    )
    rb = r_br[wb] * _wobble(rng, wb, 0.15)
    kb = _thin(wb, ab, rb)
    return [
        (
            np.concatenate([c[keep], cb[kb]]),
            np.concatenate([r[keep], rb[kb]]),
            np.concatenate([w[keep], owner[wb[kb]]]),
            np.concatenate([kind[keep], np.full(kb.sum(), NEURITE, np.int8)]),
            mc,
            mr,
        )
    ]


def _pick_in_walk(rng: np.random.Generator, walk: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """One uniformly drawn sample index of each owner's walk (``walk`` sorted, every walk non-empty)."""
    counts = np.bincount(walk, minlength=int(owners.max(initial=-1)) + 1)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    return first[owners] + np.floor(rng.random(len(owners)) * counts[owners]).astype(np.int64)


def _dendrites(rng: np.random.Generator, m: Morphology, origin: np.ndarray, cell_nm: float) -> list[tuple]:
    vol = (cell_nm / 1000.0) ** 3
    n = int(rng.poisson(m.dendrite_density * vol / (np.mean(m.dendrite_length) / 1000.0)))
    # all dendrites of the cell at once: shafts, then their branches, then their spines
    r0 = _lognormal(rng, m.dendrite_radius, m.dendrite_sigma, n, 250.0, 1000.0)
    length = rng.uniform(*m.dendrite_length, size=n)
    starts = origin + rng.uniform(0, cell_nm, size=(n, 3))
    directions = _unit(rng.normal(size=(n, 3)) * m.orientation)
    c, w, arc = _walks(rng, starts, directions, length, _STEP * r0 * m.taper, 0.5 * m.tortuosity, m.orientation)
    c = _centre_on_start(c, w, starts)
    r = r0[w] * (1.0 - (1.0 - m.taper) * arc / length[w]) * _wobble(rng, w, 0.1)
    keep = _thin(w, arc, r)
    # up to two thinner branches from random points of each shaft
    n_br = rng.integers(0, 3, size=n)
    owner = np.repeat(np.arange(n), n_br)
    at = _pick_in_walk(rng, w, owner)
    rb = 0.6 * r[at]
    cb, wb, ab = _walks(
        rng,
        c[at],
        _unit(rng.normal(size=(len(at), 3)) * m.orientation),
        0.4 * length[owner],
        _STEP * rb * m.taper,
        0.5 * m.tortuosity,
        m.orientation,
    )
    r_b = rb[wb] * (1.0 - (1.0 - m.taper) * ab / (0.4 * length[owner][wb]))
    kb = _thin(wb, ab, r_b)
    order = np.argsort(np.r_[w[keep], owner[wb[kb]]], kind="stable")  # shaft spheres grouped by dendrite
    shaft_c = np.concatenate([c[keep], cb[kb]])[order]
    shaft_r = np.concatenate([r[keep], r_b[kb]])[order]
    shaft_w = np.concatenate([w[keep], owner[wb[kb]]])[order]
    # spines: a thin neck from the shaft surface and a head at its tip; same id as the dendrite
    n_sp = rng.poisson(m.spine_rate * length / 1000.0 * (1 + n_br) ** 0.5)
    sp_owner = np.repeat(np.arange(n), n_sp)
    at = _pick_in_walk(rng, shaft_w, sp_owner)
    out_dir = _unit(rng.normal(size=(len(at), 3)))
    neck_r = _lognormal(rng, m.neck_radius, m.neck_sigma, len(at), 25.0, 100.0)
    neck_len = rng.uniform(*m.neck_length, size=len(at))
    base = shaft_c[at] + out_dir * (0.8 * shaft_r[at])[:, None]
    nc, nw, _ = _walks(
        rng, base, out_dir, neck_len + 0.2 * shaft_r[at], np.maximum(_STEP * neck_r, 10.0), 0.3, (1.0, 1.0, 1.0)
    )
    last = np.r_[np.flatnonzero(np.diff(nw)), len(nw) - 1] if len(nw) else np.zeros(0, np.int64)
    head_r = rng.uniform(*m.head_radius, size=len(last))
    head_c = nc[last] + _unit(nc[last] - base[nw[last]]) * head_r[:, None] * 0.8
    mc, mr = _mito(rng, shaft_c, shaft_r, m.mito_rate / 1000.0)
    all_r = np.concatenate([shaft_r, neck_r[nw], head_r])
    return [
        (
            np.concatenate([shaft_c, nc, head_c]),
            all_r,
            np.concatenate([shaft_w, sp_owner[nw], sp_owner]),
            np.full(len(all_r), NEURITE, np.int8),
            mc,
            mr,
        )
    ]


def _glia(rng: np.random.Generator, m: Morphology, origin: np.ndarray, cell_nm: float) -> list[tuple]:
    n = int(rng.poisson(m.glia_density * (cell_nm / 1000.0) ** 3))
    length = rng.uniform(1000.0, 2500.0, size=n)
    radius = rng.uniform(40.0, 120.0, size=n)
    starts = origin + rng.uniform(0, cell_nm, size=(n, 3))
    c, w, _ = _walks(
        rng, starts, _unit(rng.normal(size=(n, 3))), length, np.maximum(radius, 100.0), 1.2, (1.0, 1.0, 1.0)
    )
    c = _centre_on_start(c, w, starts)
    return [(c, radius[w] * _wobble(rng, w, 0.3), w, np.full(len(w), GLIA, np.int8), np.zeros((0, 3)), np.zeros(0))]


def _somata(rng: np.random.Generator, m: Morphology, origin: np.ndarray, cell_nm: float) -> list[tuple]:
    n = int(rng.poisson(m.soma_density * (cell_nm / 1000.0) ** 3))
    c = origin + rng.uniform(0, cell_nm, size=(n, 3))
    r = rng.uniform(*m.soma_radius, size=n)
    # a few large mitochondria near the surface of each soma (render-only)
    k = 40 * n
    owner = np.repeat(np.arange(n), 40)
    mc = c[owner] + _unit(rng.normal(size=(k, 3))) * (r[owner] * rng.uniform(0.6, 0.95, size=k))[:, None]
    return [(c, r, np.arange(n), np.full(n, SOMA, np.int8), mc, np.full(k, 150.0))]


_GENERATORS = (_axons, _dendrites, _glia, _somata)


@functools.lru_cache(maxsize=2048)
def _cell_objects(morph: Morphology, seed: int, layer: _Layer, cell: tuple[int, int, int], cell_id: int) -> Spheres:
    """Spheres of every object of ``layer`` started in ``cell``. Cached: neighbouring blocks share cells."""
    rng = np.random.default_rng([seed, settings_key(morph), layer.index, *(c + (1 << 20) for c in cell)])
    origin = np.asarray(cell, dtype=np.float64) * layer.cell_nm
    parts = []
    local = 0
    for c, r, obj, kind, mc, mr in _GENERATORS[layer.index](rng, morph, origin, layer.cell_nm):
        if len(r) == 0:
            parts.append(Spheres(np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.uint64), np.zeros(0, np.int8), mc, mr))
            continue
        local_ids = local + 1 + np.asarray(obj, dtype=np.int64)
        local = int(local_ids.max())
        if local >= _IDS_PER_CELL:
            raise RuntimeError("too many objects in one cell; lower the densities")
        ids = (np.uint64(cell_id) * np.uint64(len(_LAYERS)) + np.uint64(layer.index)) * np.uint64(
            _IDS_PER_CELL
        ) + local_ids.astype(np.uint64)
        parts.append(Spheres(c, r, ids, kind, mc, mr))
    return Spheres.concat(parts)


@dataclass(frozen=True)
class _Grid:
    """A layer's cells covering an extent plus the margin of cells whose objects can reach into it."""

    cell_nm: float
    lo: tuple[int, int, int]
    dims: tuple[int, int, int]

    @classmethod
    def covering(cls, cell_nm: float, extent_nm: Sequence[float], reach: float) -> _Grid:
        margin = int(math.ceil(reach / cell_nm)) + 1
        n = [int(math.ceil(e / cell_nm)) for e in extent_nm]
        return cls(cell_nm, (-margin,) * 3, tuple(k + 2 * margin for k in n))  # type: ignore[arg-type]

    def linear(self, cell: tuple[int, int, int]) -> int:
        i = [c - lo for c, lo in zip(cell, self.lo)]
        return (i[0] * self.dims[1] + i[1]) * self.dims[2] + i[2]

    def cells_near(self, lo_nm: np.ndarray, hi_nm: np.ndarray, reach: float) -> list[tuple[int, int, int]]:
        lo = [max(int(math.floor((b - reach) / self.cell_nm)), g) for b, g in zip(lo_nm, self.lo)]
        hi = [min(int(math.floor((e + reach) / self.cell_nm)), g + d - 1) for e, g, d in zip(hi_nm, self.lo, self.dims)]
        return [
            (z, y, x) for z in range(lo[0], hi[0] + 1) for y in range(lo[1], hi[1] + 1) for x in range(lo[2], hi[2] + 1)
        ]


# ----------------------------------------------------------------------------------- a scene
class Tissue:
    """The objects that can touch a box of a volume, and the pointwise labelling rule.

    Parameters
    ----------
    morphology : a name in :data:`MORPHOLOGIES` or a :class:`Morphology`.
    seed : the volume's seed.
    extent_nm : the whole volume's extent (plane, row, column) in nm; fixes the object ids.
    lo_nm, hi_nm : the box (nm) whose points will be labelled; objects that cannot reach it are dropped.
    sheet : ECS sheet half-width (nm); None: :func:`sheet_width` of the morphology.
    """

    def __init__(
        self,
        morphology: str | Morphology,
        seed: int,
        extent_nm: Sequence[float],
        lo_nm: Sequence[float],
        hi_nm: Sequence[float],
        sheet: float | None = None,
    ) -> None:
        m = get_morphology(morphology)
        self.morphology = m
        self.sheet = sheet_width(m) if sheet is None else float(sheet)
        lo_nm, hi_nm = np.asarray(lo_nm, dtype=np.float64), np.asarray(hi_nm, dtype=np.float64)
        parts = []
        for layer in _LAYERS:
            if not layer.active(m):
                continue
            grid = _Grid.covering(layer.cell_nm, extent_nm, layer.reach(m))
            parts += [
                _cell_objects(m, int(seed), layer, c, grid.linear(c))
                for c in grid.cells_near(lo_nm, hi_nm, layer.reach(m))
            ]
        s = Spheres.concat(parts)
        # mitochondria (render-only) kept by one fixed reach too, so a nearest-centre query sees the same ones
        from connectomics.morphology_kernels import box_distance  # numba: not imported by --help

        near = box_distance(s.mito_centres, lo_nm, hi_nm) <= MITO_REACH
        self.mito_centres, self.mito_radii = s.mito_centres[near], s.mito_radii[near]
        grow = np.where(s.kinds == GLIA, m.glia_grow, 0.0)
        # radius classes (and glia apart), each a k-d tree queried within a reach fixed by the class alone
        # (the largest radius it admits + growth + sheet/membrane reach). Spheres are kept by the same
        # reach, so a point sees the same candidates in every block: a sphere kept by a smaller, per-sphere
        # reach could still displace another from the k nearest and make blocks differ.
        r_class = np.digitize(s.radii, _RADIUS_EDGES) + 4 * (s.kinds == GLIA)
        class_bound = np.array([_class_reach(m, c) for c in range(8)])[r_class]
        keep = box_distance(s.centres, lo_nm, hi_nm) <= class_bound
        s, grow, r_class, class_bound = s.select(keep), grow[keep], r_class[keep], class_bound[keep]
        self.spheres = s
        self._classes = []
        for cls in np.unique(r_class):
            idx = np.flatnonzero(r_class == cls)
            k = 12 if cls >= 4 else 8 if cls == 0 else 6
            self._classes.append((cKDTree(s.centres[idx]), idx, float(class_bound[idx[0]]), min(k, len(idx))))
        self._grow = grow

    def label(self, points: np.ndarray, threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, kinds and distance to the nearest cell boundary of points.

        Parameters
        ----------
        points : float64 (n, 3) positions in nm, axes (plane, row, column).
        threads : k-d tree query workers (-1: all cores); the result does not depend on it.

        Returns
        -------
        labels : uint64 (n,), 0 = ECS. kinds : int8 (n,) (ECS, NEURITE, GLIA, SOMA, BOUTON).
        boundary : float64 (n,) nm from a labelled point to the nearest membrane (its cell's edge); inf
            for ECS.
        """
        n = len(points)
        if not self._classes:
            return np.zeros(n, np.uint64), np.zeros(n, np.int8), np.full(n, np.inf)
        cand_s, cand_i = [], []
        for tree, idx, bound, k in self._classes:
            d, j = tree.query(points, k=k, distance_upper_bound=bound, workers=threads)
            d, j = d.reshape(n, k), j.reshape(n, k)
            ok = j < len(idx)
            sphere = np.where(ok, idx[np.where(ok, j, 0)], -1)
            cand_s.append(np.where(ok, d - self.spheres.radii[np.maximum(sphere, 0)], np.inf))
            cand_i.append(sphere)
        s = np.concatenate(cand_s, axis=1)
        sph = np.concatenate(cand_i, axis=1)
        valid = sph >= 0
        safe = np.maximum(sph, 0)
        ids = np.where(valid, self.spheres.ids[safe], np.uint64(0))
        kinds = np.where(valid, self.spheres.kinds[safe], ECS)
        grow = np.where(valid, self._grow[safe], 0.0)
        is_glia = kinds == GLIA
        rows = np.arange(n)
        w = self.sheet

        core_s = np.where(~is_glia, s, np.inf)
        c_best = np.argmin(core_s, axis=1)
        s_core = core_s[rows, c_best]
        in_core = s_core <= 0.0
        glia_s = np.where(is_glia & (s <= grow), s, np.inf)
        g_best = np.argmin(glia_s, axis=1)
        s_glia = glia_s[rows, g_best]
        best = np.where(in_core, c_best, g_best)
        own_s = s[rows, best]
        own_id = ids[rows, best]
        claimed = in_core | np.isfinite(s_glia)
        other = np.where(ids != own_id[:, None], s, np.inf)
        # distance to the ECS sheet: cores against any other surface, glia against cores and other glia
        other_core = np.where(~is_glia, other, np.inf).min(axis=1)
        other_glia = np.where(is_glia, other, np.inf).min(axis=1)
        own_s = np.where(claimed, own_s, 0.0)  # unclaimed points are ECS whatever their margin
        # (a glial core that a neurite runs through is hidden by the neurite: cores compete with cores)
        margin = np.where(in_core, 0.5 * (other_core - own_s), np.minimum(other_core, 0.5 * (other_glia - own_s)))
        margin = np.where(claimed, margin, -np.inf)
        labelled = claimed & (margin >= w)
        edge = np.where(in_core, -own_s, grow[rows, best] - own_s)  # to the object's own outer limit
        boundary = np.where(labelled, np.minimum(margin - w, edge), np.inf)
        labels = np.where(labelled, own_id, np.uint64(0))
        kind = np.where(labelled, kinds[rows, best], ECS).astype(np.int8)
        self._last_margin = margin
        return labels, kind, boundary


#: :func:`sheet_width` of the named morphologies and the simulator sources' tissues, keyed by :func:`_key`
#: (a hash of all settings, so a changed morphology misses and is probed). Probing costs 3-17 s per process;
#: tests recompute every entry and fail with the new value when the geometry code changes.
_SHEET_TABLE: dict[int, float] = {
    1737050917: 5.044668938877209,  # dense (= sbem)
    1866762511: 0.5,  # sparse
    1745481344: 0.5,  # thin
    1265288872: 3.064226044273749,  # fly-neuropil (sstem)
    372115965: 0.5,  # fly-fine (fib)
    1842722956: 6.350809531654036,  # retina-ipl (retina)
}


@functools.lru_cache(maxsize=64)
def sheet_width(morphology: Morphology) -> float:
    """ECS sheet half-width (nm) that gives ``morphology.ecs_fraction``: :func:`probe_sheet_width`, looked up
    in a table for the named morphologies. Depends on the morphology only, so every block and voxel size
    uses the same width."""
    tabulated = _SHEET_TABLE.get(settings_key(morphology))
    return probe_sheet_width(morphology) if tabulated is None else tabulated


def probe_sheet_width(morphology: Morphology, probe_um: float = 2.5, n_points: int = 60_000) -> float:
    """ECS sheet half-width (nm) that gives ``morphology.ecs_fraction`` on a probe volume.

    The probe is a ``probe_um`` cube of the tissue with a fixed seed, sampled at ``n_points`` random
    positions; the width is the ``ecs_fraction`` quantile of each point's distance to a sheet, clipped to
    [0.5, 60] nm.

    Example
    -------
    >>> 0.5 <= probe_sheet_width(MORPHOLOGIES["sparse"], probe_um=1.0, n_points=1000) <= 60.0
    True
    """
    extent = (probe_um * 1000.0,) * 3
    tissue = Tissue(morphology, 0x5EED, extent, (0.0, 0.0, 0.0), extent, sheet=0.0)
    pts = np.random.default_rng(0x5EED).uniform(0.0, probe_um * 1000.0, size=(n_points, 3))
    tissue.label(pts)
    margin = tissue._last_margin
    return float(np.clip(np.quantile(margin, morphology.ecs_fraction, method="nearest"), _W_MIN, _W_MAX))


# ----------------------------------------------------------------------------------- whole volumes
def neuron_labels(
    morphology: str | Morphology,
    shape: Sequence[int],
    *,
    seed: int = 0,
    voxel_size: Sequence[float] = (40.0, 8.0, 8.0),
    threads: int = -1,
) -> np.ndarray:
    """Dense ground truth of simulated neural tissue, rasterised at ``voxel_size``.

    Parameters
    ----------
    morphology : ``"dense"`` (thin neurites among somata, thick dendrites and glia, ~10 % ECS),
        ``"sparse"`` (branching processes in large empty gaps) or ``"thin"`` (only thin processes, moderate
        ECS); or a :class:`Morphology`.
    shape : (plane, row, column) voxels.
    seed : random seed; the result is a pure function of (morphology, shape, seed, voxel_size).
    voxel_size : (plane, row, column) nm; voxel centres are sampled at ``(index + 0.5) * voxel_size``.
    threads : k-d tree query workers (-1: all cores); the result does not depend on it.

    Returns
    -------
    uint64 ndarray of ``shape``: 0 = extracellular space, objects numbered 1..n.

    Examples
    --------
    >>> labels = neuron_labels("sparse", (4, 32, 32), seed=1)
    >>> bool((labels == 0).mean() > 0.3)
    True
    """
    from skimage.segmentation import relabel_sequential

    shape = tuple(int(s) for s in shape)
    vs = np.asarray([float(v) for v in voxel_size])
    if len(shape) != 3 or any(s < 1 for s in shape) or len(vs) != 3 or np.any(vs <= 0):
        raise ValueError(f"shape and voxel_size need 3 positive values, got {shape} and {tuple(vs)}")
    extent = np.asarray(shape) * vs
    tissue = Tissue(morphology, seed, extent, np.zeros(3), extent)
    out = np.empty(shape, dtype=np.uint64)
    yy, xx = np.meshgrid((np.arange(shape[1]) + 0.5) * vs[1], (np.arange(shape[2]) + 0.5) * vs[2], indexing="ij")
    for z in range(shape[0]):
        pts = np.stack([np.full(yy.size, (z + 0.5) * vs[0]), yy.ravel(), xx.ravel()], axis=1)
        out[z] = tissue.label(pts, threads)[0].reshape(shape[1:])
    return relabel_sequential(out)[0].astype(np.uint64)
