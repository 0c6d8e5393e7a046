"""EM simulator: deterministic, identical whatever the chunking, neuron-like, distinct sources, OME-Zarr."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage

from connectomics.io import open_volume
from connectomics.morphology import NEURITE, Tissue, probe_sheet_width, sheet_width
from connectomics.simulate import (
    MORPHOLOGIES,
    SOURCES,
    cli,
    get_source,
    neuron_labels,
    section_defects,
    simulate_block,
    simulate_to_zarr,
    simulate_volume,
)
from shared.cli import run_guarded
from shared.jobs import JobConfigError, JobLockedError


@pytest.fixture(scope="module")
def volume() -> tuple[np.ndarray, np.ndarray]:
    return simulate_volume("sstem", (12, 96, 96), seed=5, threads=1)


def test_deterministic_by_seed():
    a = simulate_volume("fib", (4, 40, 40), seed=1, threads=1)
    b = simulate_volume("fib", (4, 40, 40), seed=1, threads=1)
    c = simulate_volume("fib", (4, 40, 40), seed=2, threads=1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_blocks_equal_the_whole_volume():
    shape = (7, 50, 44)
    raw, labels = simulate_volume("sbem", shape, seed=3, threads=1)
    raw_b, labels_b = np.zeros_like(raw), np.zeros_like(labels)
    for z in range(0, shape[0], 3):
        for y in range(0, shape[1], 16):
            for x in range(0, shape[2], 20):
                size = tuple(min(c, s - b) for b, c, s in zip((z, y, x), (3, 16, 20), shape))
                r, lab = simulate_block("sbem", 3, shape, (z, y, x), size)
                sl = tuple(slice(b, b + s) for b, s in zip((z, y, x), size))
                raw_b[sl], labels_b[sl] = r, lab
    np.testing.assert_array_equal(labels_b, labels)
    np.testing.assert_array_equal(raw_b, raw)


def test_ground_truth_is_neuron_like(volume):
    raw, labels = volume
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert len(ids) >= 15
    assert 0.0 < (labels == 0).mean() < 0.3  # some extracellular space, mostly neuropil
    # processes touch: many voxels have a different non-zero label as in-plane neighbour
    touching = (labels[:, :, 1:] != labels[:, :, :-1]) & (labels[:, :, 1:] > 0) & (labels[:, :, :-1] > 0)
    assert touching.mean() > 0.005
    # elongated: some objects run through most planes
    planes = [len(np.unique(np.nonzero(labels == i)[0])) for i in ids[np.argsort(counts)[-10:]]]
    assert max(planes) >= 10
    # varied calibre: in-plane cross-section areas span a wide range
    areas = np.array([np.sum(labels[6] == i) for i in np.unique(labels[6]) if i > 0])
    assert areas.max() > 8 * np.median(areas[areas > 20]) or areas.max() / areas.min() > 20


def test_membranes_are_dark(volume):
    raw, labels = volume
    boundary = np.zeros(labels.shape, bool)
    for axis in (1, 2):
        diff = np.diff(labels, axis=axis) != 0
        pad = [(0, 0)] * 3
        pad[axis] = (0, 1)
        boundary |= np.pad(diff, pad)
    interior = ndimage.binary_erosion(~boundary, iterations=3) & (labels > 0)
    ok = raw.mean(axis=(1, 2)) > 5  # skip missing (black) sections
    assert raw[ok][boundary[ok]].mean() < raw[ok][interior[ok]].mean() - 40


def test_sources_differ_and_unknown_source_fails():
    assert len(SOURCES) >= 4
    assert len({s.voxel_size for s in SOURCES.values()}) == len(SOURCES)
    assert len({(s.noise, s.contrast) for s in SOURCES.values()}) == len(SOURCES)
    with pytest.raises(ValueError, match="unknown source 'cremi'; choose from sstem, sbem, fib, retina"):
        get_source("cremi")
    with pytest.raises(ValueError, match="shape must be 3 positive ints"):
        simulate_volume("fib", (0, 10, 10))


def test_section_defects_are_drawn_per_section():
    spec = get_source("sstem")
    defects = section_defects(spec, 0, 400)
    assert defects.missing.any() and np.abs(np.diff(defects.shift_nm, axis=0)).max() > 0
    assert defects.shift_nm.shape == (400, 2)
    raw, _ = simulate_volume(spec, (12, 32, 32), seed=0, threads=1)
    missing = section_defects(spec, 0, 12).missing
    assert (raw[missing] == 0).all()


def test_simulate_to_zarr_writes_ome_zarr_and_resumes(tmp_path):
    path = tmp_path / "sim.zarr"
    simulate_to_zarr(path, "retina", (6, 40, 40), seed=4, chunks=(3, 20, 20), progress=False, levels=2)
    raw = open_volume(f"{path}/raw", role="raw")
    labels = open_volume(f"{path}/labels", role="labels")
    assert raw.dtype == np.uint8 and labels.dtype == np.uint64
    assert raw.voxel_size == SOURCES["retina"].voxel_size and raw.data.chunksize == (3, 20, 20)
    ref_raw, ref_labels = simulate_volume("retina", (6, 40, 40), seed=4, threads=1)
    np.testing.assert_array_equal(raw.data.compute(), ref_raw)
    np.testing.assert_array_equal(labels.data.compute(), ref_labels)
    assert open_volume(f"{path}/labels", level=1).shape == (6, 20, 20)
    # the same call again finds every block done; other settings are refused naming them
    simulate_to_zarr(path, "retina", (6, 40, 40), seed=4, chunks=(3, 20, 20), progress=False, levels=2)
    with pytest.raises(JobConfigError, match=r"seed: 4 -> 5.*--overwrite"):
        simulate_to_zarr(path, "retina", (6, 40, 40), seed=5, chunks=(3, 20, 20), progress=False, levels=2)
    # a lost block (marker and chunk gone) is regenerated exactly
    done = path / "0/.job/done"  # inside the level-0 array of the image, the container root
    assert sorted(p.name for p in done.iterdir()) == sorted([f"block-{i}" for i in range(8)] + ["levels"])
    (done / "block-0").unlink()
    (path / "0" / "c" / "0" / "0" / "0").unlink()
    simulate_to_zarr(path, "retina", (6, 40, 40), seed=4, chunks=(3, 20, 20), progress=False, levels=2)
    np.testing.assert_array_equal(open_volume(f"{path}/raw").data.compute(), ref_raw)
    assert json.loads((path / "0/.job/manifest.json").read_text())["config"]["seed"] == 4
    # a live holder of the lock is named
    (path / "0/.job/lock").write_text(
        json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": "now", "command": "connectomics simulate"}
        )
    )
    with pytest.raises(JobLockedError, match=f"in use by pid {os.getpid()} .*--wait"):
        simulate_to_zarr(path, "retina", (6, 40, 40), seed=4, chunks=(3, 20, 20), progress=False, levels=2)


def test_killed_run_resumes_and_foreign_containers_are_refused(tmp_path):
    """kill -9 mid-way, then the same command: identical to an uninterrupted run. A container this command
    did not write is refused (one line, exit 2) unless --overwrite."""
    path = tmp_path / "k.zarr"
    script = (
        "import time\n"
        "import connectomics.simulate as s\n"
        "block = s.simulate_block\n"
        "def slow(*args, **kwargs):\n"
        "    time.sleep(0.3)\n"
        "    return block(*args, **kwargs)\n"
        "s.simulate_block = slow\n"
        f"s.simulate_to_zarr({str(path)!r}, 'sbem', (6, 40, 40), seed=2, chunks=(3, 20, 20), progress=False)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    done = path / "0/.job/done"

    def n_done() -> int:  # block markers only, not a half-written `.block-<id>.<pid>.tmp`
        return len([n for n in os.listdir(done) if n.startswith("block-")]) if done.is_dir() else 0

    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and n_done() < 2:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    n_before = n_done()
    assert 2 <= n_before < 8, "the run should have been killed midway"
    with pytest.warns(UserWarning, match="taking over the lock"):
        simulate_to_zarr(path, "sbem", (6, 40, 40), seed=2, chunks=(3, 20, 20), progress=False)
    ref_raw, ref_labels = simulate_volume("sbem", (6, 40, 40), seed=2, threads=1)
    np.testing.assert_array_equal(open_volume(f"{path}/raw").data.compute(), ref_raw)
    np.testing.assert_array_equal(open_volume(f"{path}/labels").data.compute(), ref_labels)

    other = tmp_path / "other.zarr"
    zarr.create_array(str(other / "raw"), shape=(4, 8, 8), dtype="uint8", chunks=(4, 8, 8))
    code = run_guarded(
        "connectomics simulate", cli, [str(other), "--shape", "6,40,40", "--chunks", "3,20,20", "--quiet"]
    )
    assert code == 2
    assert not (other / "0/.job").exists() and not (other / "raw/0/.job").exists()
    assert zarr.open_array(str(other / "raw"), mode="r").shape == (4, 8, 8)


def test_cli(tmp_path, capsys):
    out = tmp_path / "c.zarr"
    args = [str(out), "--source", "fib", "--shape", "4,32,32", "--chunks", "4,16,16", "--quiet"]
    assert run_guarded("connectomics simulate", cli, args) == 0
    assert open_volume(f"{out}/raw").shape == (4, 32, 32)
    assert f"wrote the image {out} with its label images {out}/labels/neuron_ids and" in capsys.readouterr().out
    assert run_guarded("connectomics simulate", cli, args + ["--resume"]) == 0  # the old flag still works
    assert run_guarded("connectomics simulate", cli, [str(out), "--shape", "4,32,32", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "chunks: [4, 16, 16] -> [32, 128, 128]" in err and len(err.strip().splitlines()) == 1


BEFORE_ROOT_IMAGE = Path(__file__).parent / "data" / "sim_before_root_image.zarr"
"""Written by `connectomics simulate` before the image moved to the container root (image at raw/, bookkeeping
in raw/0/.job; retina, shape 4,16,16, chunks 4,16,16, seed 1)."""


def test_container_with_the_image_at_raw_keeps_its_addresses_and_layout(tmp_path):
    path = tmp_path / "old.zarr"
    shutil.copytree(BEFORE_ROOT_IMAGE, path)
    assert open_volume(f"{path}/raw", role="raw").shape == (4, 16, 16)
    ids = open_volume(f"{path}/labels", role="labels").data.compute()
    np.testing.assert_array_equal(ids, open_volume(f"{path}/raw/labels/neuron_ids").data.compute())
    assert open_volume(f"{path}/labels_mask").dtype == np.uint8
    # rewritten in its own layout, never half in each (--overwrite: the sources may have changed since)
    simulate_to_zarr(path, "retina", (4, 16, 16), seed=1, chunks=(4, 16, 16), progress=False, overwrite=True)
    assert sorted(p.name for p in path.iterdir()) == ["raw", "zarr.json"]
    ref_raw, ref_labels = simulate_volume("retina", (4, 16, 16), seed=1, threads=1)
    np.testing.assert_array_equal(open_volume(f"{path}/raw").data.compute(), ref_raw)
    np.testing.assert_array_equal(open_volume(f"{path}/labels").data.compute(), ref_labels)
    marker = path / "raw/0/.job/done/block-0"
    before = marker.stat().st_mtime_ns
    simulate_to_zarr(path, "retina", (4, 16, 16), seed=1, chunks=(4, 16, 16), progress=False)  # resumed: done
    assert marker.stat().st_mtime_ns == before


# ------------------------------------------------------------------------------- neuron morphologies
@pytest.mark.parametrize("morphology", list(MORPHOLOGIES))
def test_neuron_labels_deterministic_with_many_thin_objects(morphology):
    shape = (8, 64, 64)
    labels = neuron_labels(morphology, shape, seed=2)
    assert labels.dtype == np.uint64 and labels.shape == shape
    np.testing.assert_array_equal(labels, neuron_labels(morphology, shape, seed=2))
    assert not np.array_equal(labels, neuron_labels(morphology, shape, seed=3))
    # thin objects: in-plane cross-sections of at most ~300 nm diameter (8 nm pixels) are frequent
    areas = np.concatenate([np.unique(labels[z][labels[z] > 0], return_counts=True)[1] for z in range(shape[0])])
    assert np.sum(areas * 64.0 < np.pi * 150.0**2) >= 10, np.sort(areas)


def _calibres_nm(labels: np.ndarray, voxel_size: tuple[float, float, float]) -> np.ndarray:
    """Per object: the median over its sections of twice the largest in-plane distance (nm, EDT) from an
    inside pixel to another object or ECS: the diameter of a tube, whatever its angle to the sections."""
    per_object: dict[int, list[float]] = {}
    for section in labels:
        inner = section > 0
        inner[1:] &= section[1:] == section[:-1]
        inner[:-1] &= section[:-1] == section[1:]
        inner[:, 1:] &= section[:, 1:] == section[:, :-1]
        inner[:, :-1] &= section[:, :-1] == section[:, 1:]
        depth = ndimage.distance_transform_edt(inner, sampling=voxel_size[1:])
        ids = np.unique(section[section > 0])
        # + one pixel: the EDT reaches the centre of the edge pixel, not the membrane
        for i, d in zip(ids, ndimage.maximum(depth, section, ids)):
            per_object.setdefault(int(i), []).append(2.0 * (float(d) + voxel_size[1]))
    return np.array([np.median(v) for v in per_object.values()])


def test_thin_processes_have_realistic_calibre_in_nm():
    voxel_size = (40.0, 8.0, 8.0)
    thin = neuron_labels("thin", (12, 96, 96), seed=0, voxel_size=voxel_size)
    assert 0.15 < np.mean(thin == 0) < 0.45  # moderate ECS between packed thin processes
    calibres = _calibres_nm(thin, voxel_size)
    # axons of median diameter ~90 nm (range ~50-400): a few voxels across at 8 nm, about one section thick
    assert len(calibres) >= 50
    assert 40.0 <= np.median(calibres) <= 200.0, np.median(calibres)
    dense = _calibres_nm(neuron_labels("dense", (12, 96, 96), seed=0, voxel_size=voxel_size), voxel_size)
    assert np.mean(dense < 250.0) >= 0.5  # most objects in neuropil are thin, though big cells fill space
    assert dense.max() >= 300.0


def test_ecs_fraction_follows_the_request():
    fractions = []
    for requested in (0.07, 0.20):
        morph = dataclasses.replace(MORPHOLOGIES["dense"], ecs_fraction=requested)
        fractions.append(np.mean(neuron_labels(morph, (12, 96, 96), seed=1) == 0))
        assert abs(fractions[-1] - requested) < 0.05, (requested, fractions[-1])
    assert fractions[1] > fractions[0] + 0.06
    # sparse: far more ECS than dense neuropil
    assert np.mean(neuron_labels("sparse", (12, 96, 96), seed=1) == 0) > 0.3


def test_sparse_labels_and_mask(tmp_path):
    shape = (6, 48, 48)
    dense = simulate_to_zarr(tmp_path / "dense.zarr", "sbem", shape, seed=2, chunks=(6, 48, 48), progress=False)
    sparse = simulate_to_zarr(
        tmp_path / "sparse.zarr", "sbem", shape, seed=2, chunks=(2, 16, 24), progress=False, label_fraction=0.4
    )
    full = open_volume(f"{dense}/labels").data.compute()
    assert (open_volume(f"{dense}/labels_mask").data.compute() == 1).all()
    labels = open_volume(f"{sparse}/labels").data.compute()
    mask = open_volume(f"{sparse}/labels_mask").data.compute()
    assert mask.dtype == np.uint8
    # labelled = a subset of whole objects (every voxel of a chosen object); the rest, ECS included, is
    # unlabelled rather than background
    np.testing.assert_array_equal(mask == 1, labels > 0)
    np.testing.assert_array_equal(labels, np.where(mask == 1, full, 0))
    chosen = np.unique(labels[labels > 0])
    assert np.isin(full, chosen).sum() == mask.sum()
    ids = np.unique(full[full > 0])
    assert 0.15 < len(chosen) / len(ids) < 0.7
    # the same choice whatever the chunking
    again = simulate_to_zarr(
        tmp_path / "again.zarr", "sbem", shape, seed=2, chunks=(6, 48, 48), progress=False, label_fraction=0.4
    )
    np.testing.assert_array_equal(open_volume(f"{again}/labels_mask").data.compute(), mask)


def test_contrast_drift_varies_by_section():
    defects = section_defects(get_source("sbem"), 0, 200)
    assert 0.02 < np.std(np.log(defects.gain)) < 0.15 and 0.02 < np.std(defects.offset) < 0.15
    assert abs(np.corrcoef(defects.gain[1:], defects.gain[:-1])[0, 1]) > 0.5  # slow drift, not flicker


def _label_edges(labels: np.ndarray) -> np.ndarray:
    """Labelled voxels with an in-plane 4-neighbour of another label (another object or ECS)."""
    edge = np.zeros(labels.shape, bool)
    for axis in (1, 2):
        change = np.diff(labels, axis=axis) != 0
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        edge[tuple(lo)] |= change
        edge[tuple(hi)] |= change
    return edge & (labels > 0)


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_label_boundary_is_a_membrane(name):
    # noise-free, so that every single voxel can be judged: real EM has a membrane at every cell boundary
    spec = dataclasses.replace(get_source(name), noise=0.0, p_missing=0.0)
    raw, labels = simulate_volume(spec, (6, 64, 64), seed=7, threads=1)
    edge = _label_edges(labels)
    interior = np.stack([ndimage.binary_erosion(~e, iterations=3) for e in edge]) & (labels > 0)
    assert edge.mean() > 0.05
    for z in range(labels.shape[0]):  # per section: contrast drifts between sections
        cytoplasm = np.median(raw[z][interior[z]])
        assert raw[z][edge[z]].max() < cytoplasm, (z, raw[z][edge[z]].max(), cytoplasm)


@pytest.mark.parametrize(
    "morphology", [pytest.param(m, marks=pytest.mark.slow) if m == "thin" else m for m in MORPHOLOGIES]
)
def test_processes_run_in_all_directions(morphology):
    # in-plane processes (a long profile one to three 40 nm sections thick) are what splits objects in z in
    # real data; isotropic segment directions put half within 30 deg of the sections, 13 % within 30 deg of z
    extent = (1500.0,) * 3
    spheres = Tissue(morphology, 1, extent, (0.0, 0.0, 0.0), extent, sheet=5.0).spheres
    step = np.diff(spheres.centres, axis=0)
    length = np.linalg.norm(step, axis=1)
    segment = (
        (spheres.ids[1:] == spheres.ids[:-1])
        & (spheres.kinds[1:] == NEURITE)
        & (length > 0)
        & (length < 1.5 * (spheres.radii[1:] + spheres.radii[:-1]))
        & (np.minimum(spheres.radii[1:], spheres.radii[:-1]) < 120.0)
    )  # thin processes only
    elevation = np.degrees(np.arcsin(np.abs(step[segment, 0]) / length[segment]))
    assert segment.sum() > 2000
    assert abs(np.mean(elevation < 30.0) - 0.5) < 0.05
    assert abs(np.mean(elevation > 60.0) - (1.0 - np.cos(np.radians(30.0)))) < 0.04


_TISSUES = {m.name: m for m in [*MORPHOLOGIES.values(), *(s.tissue for s in SOURCES.values())]}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "sparse" else pytest.mark.slow) for n in _TISSUES])
def test_tabulated_sheet_width_matches_the_probe(name):
    # the table only saves time: it must hold what the probe gives for the current geometry
    assert sheet_width(_TISSUES[name]) == probe_sheet_width(_TISSUES[name]), probe_sheet_width(_TISSUES[name])
