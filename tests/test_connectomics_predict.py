"""Blockwise prediction: equality with whole-volume inference, tiling modes, resume, refusal, distributed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import distributed
import numpy as np
import pytest
import torch
import zarr

from connectomics.blocks import DoneMarkers, Roi
from connectomics.io import create_ome_zarr_array, open_volume
from connectomics.predict import bump_weights, predict_blockwise, window_starts, windows_for

OFFSETS = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
LOADER = "test_connectomics_predict:load_tiny_model"
SHAPE = (12, 40, 40)


class TinyAffinityNet(torch.nn.Module):
    """Two 3x3x3 convolutions (receptive-field radius 2): output depends only on its receptive field."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.offsets = OFFSETS
        self.delay = delay
        self.net = torch.nn.Sequential(
            torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv3d(4, 3, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return self.net(x) * 3.0


def load_tiny_model(checkpoint: str) -> torch.nn.Module:
    """Loader used by the tests (and their subprocesses): weights-only checkpoint of TinyAffinityNet."""
    from shared.checkpoints import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = TinyAffinityNet(delay=float(ckpt["delay"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


@pytest.fixture()
def setup(tmp_path: Path):
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": TinyAffinityNet().state_dict(), "delay": 0.0}, ckpt)
    raw = (np.random.default_rng(0).random(SHAPE) * 255).astype(np.uint8)
    arr = create_ome_zarr_array(
        tmp_path / "vol.zarr/raw",
        shape=SHAPE,
        dtype="uint8",
        chunks=(4, 16, 16),
        axes=("z", "y", "x"),
        voxel_size=(40.0, 4.0, 4.0),
    )
    arr[...] = raw
    return tmp_path, ckpt, raw


def whole_volume(ckpt: Path, raw: np.ndarray) -> np.ndarray:
    model = load_tiny_model(str(ckpt))
    with torch.no_grad():
        x = torch.from_numpy(raw.astype(np.float32) / 255.0)[None, None]
        return torch.sigmoid(model(x))[0].numpy()


def read(path: Path) -> np.ndarray:
    return np.asarray(open_volume(str(path)).data.compute())


def test_valid_mode_equals_whole_volume_with_roi_border_blocks(setup):
    tmp, ckpt, raw = setup
    result = predict_blockwise(
        ckpt,
        str(tmp / "vol.zarr/raw"),
        str(tmp / "out.zarr/affs"),
        block_shape=(4, 16, 16),
        context=2,
        loader=LOADER,
        progress=False,
    )
    assert result.n_blocks == 3 * 3 * 3 and result.n_processed == 27  # 40 = 16 + 16 + 8 (cropped)
    out = read(tmp / "out.zarr/affs")
    assert out.shape == (3,) + SHAPE
    assert np.abs(out - whole_volume(ckpt, raw)).max() <= 1e-4
    assert zarr.open_group(str(tmp / "out.zarr"), mode="r")["affs"].attrs["ome"]["multiscales"]
    # an ROI writes only its voxels; border blocks of the ROI are cropped, the rest stays 0
    predict_blockwise(
        ckpt,
        str(tmp / "vol.zarr/raw"),
        str(tmp / "roi.zarr/affs"),
        block_shape=(4, 16, 16),
        context=2,
        roi=Roi.parse("2:9,10:30,0:40"),
        loader=LOADER,
        progress=False,
        dtype="uint8",
    )
    roi_out = read(tmp / "roi.zarr/affs")
    assert roi_out.dtype == np.uint8
    inside = np.zeros(SHAPE, bool)
    inside[2:9, 10:30] = True
    assert not roi_out[:, ~inside].any()
    assert np.abs(roi_out[:, inside] / 255.0 - whole_volume(ckpt, raw)[:, inside]).max() <= 0.5 / 255 + 1e-6


def test_too_small_context_differs_and_misaligned_blocks_are_refused(setup):
    tmp, ckpt, raw = setup
    predict_blockwise(
        ckpt,
        str(tmp / "vol.zarr/raw"),
        str(tmp / "c0.zarr/affs"),
        block_shape=(4, 16, 16),
        context=0,
        loader=LOADER,
        progress=False,
    )
    assert np.abs(read(tmp / "c0.zarr/affs") - whole_volume(ckpt, raw)).max() > 1e-3  # seams without context
    with pytest.raises(ValueError, match="not a multiple of the storage chunks"):
        predict_blockwise(
            ckpt,
            str(tmp / "vol.zarr/raw"),
            str(tmp / "bad.zarr/affs"),
            block_shape=(4, 12, 12),
            chunks=(4, 8, 8),
            loader=LOADER,
            progress=False,
        )


def test_blend_mode_blockwise_equals_single_block(setup):
    tmp, ckpt, raw = setup
    common = dict(blend=True, window=(6, 16, 16), overlap=(2, 8, 8), loader=LOADER, progress=False)
    predict_blockwise(ckpt, str(tmp / "vol.zarr/raw"), str(tmp / "b1.zarr/affs"), block_shape=(4, 16, 16), **common)
    predict_blockwise(ckpt, str(tmp / "vol.zarr/raw"), str(tmp / "b2.zarr/affs"), block_shape=(12, 40, 40), **common)
    a, b = read(tmp / "b1.zarr/affs"), read(tmp / "b2.zarr/affs")
    assert np.abs(a - b).max() <= 1e-5
    assert a.min() >= 0 and a.max() <= 1  # no value/weight mismatch at faces


def test_window_grid_and_bump_hand_counted():
    assert window_starts(0, 10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(0, 11, 4, 2) == [0, 2, 4, 6, 7]
    assert window_starts(3, 5, 4, 2) == [3]
    total = Roi((0,), (11,))
    # windows [0,4) [2,6) [4,8) [6,10) [7,11); block [4,8) overlaps [2,6) [4,8) [6,10) [7,11)
    assert [w.begin[0] for w in windows_for(Roi((4,), (4,)), total, (4,), (2,))] == [2, 4, 6, 7]
    w = bump_weights((5, 7))
    assert w.shape == (5, 7) and w.dtype == np.float32
    assert w[2, 3] == pytest.approx(1.0) and w[0, 0] < w[1, 1] < w[2, 3] and w.min() >= 1e-4


def test_manifest_refuses_other_settings_and_keeps_data(setup):
    tmp, ckpt, raw = setup
    out = str(tmp / "out.zarr/affs")
    predict_blockwise(
        ckpt, str(tmp / "vol.zarr/raw"), out, block_shape=(4, 16, 16), context=2, loader=LOADER, progress=False
    )
    before = read(tmp / "out.zarr/affs")
    for kwargs in ({"context": 1}, {"dtype": "float16"}):
        settings = dict(block_shape=(4, 16, 16), context=2) | kwargs
        with pytest.raises(ValueError, match="with other settings"):
            predict_blockwise(ckpt, str(tmp / "vol.zarr/raw"), out, loader=LOADER, progress=False, **settings)
    other = tmp / "other.ckpt"
    torch.save({"state_dict": TinyAffinityNet().state_dict(), "delay": 0.0}, other)
    with pytest.raises(ValueError, match="checkpoint_sha256"):
        predict_blockwise(
            other, str(tmp / "vol.zarr/raw"), out, block_shape=(4, 16, 16), context=2, loader=LOADER, progress=False
        )
    np.testing.assert_array_equal(read(tmp / "out.zarr/affs"), before)
    again = predict_blockwise(
        ckpt, str(tmp / "vol.zarr/raw"), out, block_shape=(4, 16, 16), context=2, loader=LOADER, progress=False
    )
    assert again.n_already_done == 27 and again.n_processed == 0


def test_mask_skips_empty_blocks(setup):
    tmp, ckpt, raw = setup
    mask = create_ome_zarr_array(
        tmp / "vol.zarr/mask",
        shape=SHAPE,
        dtype="uint8",
        chunks=(4, 16, 16),
        axes=("z", "y", "x"),
        voxel_size=(40.0, 4.0, 4.0),
    )
    mask[:, :20, :20] = 1
    predict_blockwise(
        ckpt,
        str(tmp / "vol.zarr/raw"),
        str(tmp / "m.zarr/affs"),
        block_shape=(4, 16, 16),
        context=2,
        mask_path=str(tmp / "vol.zarr/mask"),
        loader=LOADER,
        progress=False,
    )
    out = read(tmp / "m.zarr/affs")
    assert not out[:, :, 20:].any() and not out[:, :, :, 20:].any()
    np.testing.assert_allclose(out[:, :, :20, :20], whole_volume(ckpt, raw)[:, :, :20, :20], atol=1e-4)


def test_killed_run_resumes_to_the_uninterrupted_result(setup):
    tmp, ckpt, raw = setup
    slow = tmp / "slow.ckpt"
    torch.save({"state_dict": load_tiny_model(str(ckpt)).state_dict(), "delay": 0.15}, slow)
    script = (
        "import sys; from connectomics.predict import predict_blockwise; "
        f"predict_blockwise({str(slow)!r}, {str(tmp / 'vol.zarr/raw')!r}, {str(tmp / 'k.zarr/affs')!r}, "
        f"block_shape=(4, 16, 16), context=2, loader={LOADER!r}, workers=1, progress=False)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])]))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    # count done block ids, not files: a killed run can leave a half-written `.<id>.<pid>.tmp` marker behind
    markers = DoneMarkers(tmp / "k.zarr/affs/0/.job/done")
    deadline = time.time() + 60
    while time.time() < deadline and (not markers.folder.is_dir() or len(markers.done_ids()) < 5):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    n_before = len(markers.done_ids())
    assert 5 <= n_before < 27, "the run should have been killed midway"
    (markers.folder / f".26.{proc.pid}.tmp").write_text("")  # what a kill during a marker write leaves
    result = predict_blockwise(
        slow,
        str(tmp / "vol.zarr/raw"),
        str(tmp / "k.zarr/affs"),
        block_shape=(4, 16, 16),
        context=2,
        loader=LOADER,
        progress=False,
    )
    assert result.n_already_done == n_before and result.n_processed == 27 - n_before
    predict_blockwise(
        slow,
        str(tmp / "vol.zarr/raw"),
        str(tmp / "u.zarr/affs"),
        block_shape=(4, 16, 16),
        context=2,
        loader=LOADER,
        progress=False,
    )
    np.testing.assert_array_equal(read(tmp / "k.zarr/affs"), read(tmp / "u.zarr/affs"))


def test_distributed_local_cluster_matches_threads(setup):
    tmp, ckpt, raw = setup
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        predict_blockwise(
            ckpt,
            str(tmp / "vol.zarr/raw"),
            str(tmp / "d.zarr/affs"),
            block_shape=(4, 16, 16),
            context=2,
            loader=LOADER,
            progress=False,
            scheduler=cluster.scheduler_address,
        )
    assert np.abs(read(tmp / "d.zarr/affs") - whole_volume(ckpt, raw)).max() <= 1e-4


def test_cli_default_loader_rebuilds_affinity_model_without_lightning(setup):
    """A checkpoint written like `connectomics fit` writes it runs through `connectomics predict` in a process
    that never imports Lightning, and gives the trained LightningModule's probabilities."""
    from connectomics.model import load_affinity_net
    from connectomics.train import AffinityModel

    tmp, tiny_ckpt, raw = setup
    torch.manual_seed(1)
    model = AffinityModel("unet3d", {"features": [4], "kernel_size": [3, 3, 3], "norm": "none"}, lr=0.01)
    ckpt = tmp / "affinity.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, ckpt)
    out = tmp / "cli.zarr/affs"
    script = (
        "import sys; from connectomics.predict import cli; "
        f"code = cli([{str(ckpt)!r}, {str(tmp / 'vol.zarr/raw')!r}, {str(out)!r}, '--block', '4,16,16', "
        "'--context', '2', '--dtype', 'uint8', '--workers', '2', '--no-progress']); "
        "assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules, 'Lightning imported'; "
        "sys.exit(code)"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(torch.from_numpy(raw.astype(np.float32) / 255.0)[None, None]))[0]
    got = read(out)
    assert got.dtype == np.uint8 and got.shape == (12,) + SHAPE
    assert np.abs(got / 255.0 - expected.numpy()).max() <= 0.5 / 255 + 1e-6
    assert zarr.open_array(str(tmp / "cli.zarr"), path="affs/0", mode="r").attrs["affinity_offsets"] == model.offsets
    # what is not an affinity-model checkpoint is refused with the reason
    with pytest.raises(ValueError, match="not an affinity-model checkpoint"):
        load_affinity_net(tiny_ckpt)
    broken = tmp / "broken.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams) | {"backbone_config": {"features": [8], "norm": "none"}},
        },
        broken,
    )
    with pytest.raises(ValueError, match="does not match its own hyper-parameters"):
        load_affinity_net(broken)


def test_protection_travels_with_a_copied_output_and_survives_a_deleted_manifest(setup):
    """Issue 15: a container copied without any sibling folder keeps its manifest, so another model is refused;
    deleting only the manifest does not make old done-markers count for new settings; --overwrite redoes all."""
    import shutil

    from shared.jobs import JobConfigError

    tmp, ckpt, raw = setup
    run = dict(block_shape=(4, 16, 16), context=2, loader=LOADER, progress=False)
    predict_blockwise(ckpt, str(tmp / "vol.zarr/raw"), str(tmp / "p.zarr/affs"), **run)
    shutil.copytree(tmp / "p.zarr", tmp / "q.zarr")
    assert not list(tmp.glob("*.blockwise"))  # nothing beside the container
    torch.manual_seed(7)
    other = tmp / "other.ckpt"
    torch.save({"state_dict": TinyAffinityNet().state_dict(), "delay": 0.0}, other)
    before = read(tmp / "q.zarr/affs")
    with pytest.raises(JobConfigError, match="checkpoint_sha256"):
        predict_blockwise(other, str(tmp / "vol.zarr/raw"), str(tmp / "q.zarr/affs"), **run)
    np.testing.assert_array_equal(read(tmp / "q.zarr/affs"), before)
    (tmp / "q.zarr/affs/0/.job/manifest.json").unlink()
    with pytest.raises(JobConfigError, match="no manifest.json"):
        predict_blockwise(other, str(tmp / "vol.zarr/raw"), str(tmp / "q.zarr/affs"), **run)
    redone = predict_blockwise(other, str(tmp / "vol.zarr/raw"), str(tmp / "q.zarr/affs"), overwrite=True, **run)
    assert redone.n_processed == 27 and redone.n_already_done == 0
    assert np.abs(read(tmp / "q.zarr/affs") - whole_volume(other, raw)).max() <= 1e-4
    np.testing.assert_array_equal(read(tmp / "p.zarr/affs"), before)  # the original is untouched


def test_foreign_output_and_a_held_lock_are_refused(setup):
    """An array this command did not write needs --overwrite; a live holder of the output's lock is named."""
    import json
    import socket

    from shared.jobs import JobLockedError, OutputExistsError

    tmp, ckpt, _ = setup
    run = dict(block_shape=(4, 16, 16), context=2, loader=LOADER, progress=False)
    create_ome_zarr_array(
        tmp / "f.zarr/affs",
        shape=(3,) + SHAPE,
        dtype="float32",
        chunks=(3, 4, 16, 16),
        axes=("c", "z", "y", "x"),
        voxel_size=(40.0, 4.0, 4.0),
    )
    with pytest.raises(OutputExistsError, match="was not written by `connectomics predict`"):
        predict_blockwise(ckpt, str(tmp / "vol.zarr/raw"), str(tmp / "f.zarr/affs"), **run)
    assert not (tmp / "f.zarr/affs/0/.job").exists()
    lock = tmp / "l.zarr/affs/0/.job/lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(
        json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": "now", "command": "connectomics predict"}
        )
    )
    with pytest.raises(JobLockedError, match=f"in use by pid {os.getpid()}.*--wait"):
        predict_blockwise(ckpt, str(tmp / "vol.zarr/raw"), str(tmp / "l.zarr/affs"), **run)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from connectomics.predict import cli
    from shared.cli import run_guarded

    code = run_guarded("connectomics predict", cli, argv)
    return code, capsys.readouterr().err


def test_cli_refuses_bad_input_in_one_line_before_creating_anything(setup, capsys):
    import h5py

    tmp, ckpt, raw = setup
    create_ome_zarr_array(
        tmp / "i16.zarr/raw",
        shape=SHAPE,
        dtype="int16",
        chunks=(4, 16, 16),
        axes=("z", "y", "x"),
        voxel_size=(40.0, 4.0, 4.0),
    )
    with h5py.File(tmp / "v.h5", "w") as f:
        f["volumes/raw"] = raw
    (tmp / "plain.zarr").write_text("not a folder")
    pathfinder = tmp / "pathfinder.ckpt"
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"backbone": "hgru", "readout": "max", "lipschitz_weight": 1}},
        pathfinder,
    )
    hostile = tmp / "hostile.ckpt"
    torch.save({"state_dict": {}, "payload": Path("x")}, hostile)  # a pickled object beside the tensors
    vol, out = str(tmp / "vol.zarr/raw"), str(tmp / "out.zarr/affs")
    cases = [
        ([str(ckpt), str(tmp / "i16.zarr/raw"), out, "--block", "4,16,16"], "int16; raw must be uint8"),
        ([str(ckpt), vol, out, "--block", "0,16,16"], "block must be positive"),
        ([str(ckpt), f"{tmp / 'v.h5'}:volumes/nope", out, "--block", "4,16,16"], "no dataset 'volumes/nope'"),
        ([str(ckpt), vol, str(tmp / "plain.zarr/affs"), "--block", "4,16,16"], "is a file, not a folder"),
        ([str(pathfinder), vol, out, "--block", "4,16,16"], "Pathfinder checkpoint"),
        ([str(hostile), vol, out, "--block", "4,16,16"], "could run code"),
    ]
    for argv, message in cases:
        code, err = _cli(argv, capsys)
        assert code == 2, (argv, err)
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp / "out.zarr").exists()


def test_missing_input_chunks_are_refused_unless_declared_empty(setup):
    """A zarr chunk absent from the raw input (a partial copy) would read as zeros: refused by default."""
    import shutil

    tmp, ckpt, raw = setup
    shutil.copytree(tmp / "vol.zarr", tmp / "partial.zarr")
    shutil.rmtree(tmp / "partial.zarr/raw/0/c/1")  # the second plane of chunks
    run = dict(block_shape=(4, 16, 16), context=2, loader=LOADER, progress=False)
    with pytest.raises(ValueError, match="9 of 27 storage chunks are missing.*--missing-chunks zeros"):
        predict_blockwise(ckpt, str(tmp / "partial.zarr/raw"), str(tmp / "p.zarr/affs"), **run)
    assert not (tmp / "p.zarr").exists()
    predict_blockwise(ckpt, str(tmp / "partial.zarr/raw"), str(tmp / "p.zarr/affs"), missing_chunks="zeros", **run)
    holes = raw.copy()
    holes[4:8] = 0
    assert np.abs(read(tmp / "p.zarr/affs") - whole_volume(ckpt, holes)).max() <= 1e-4


def test_a_second_run_into_the_same_output_refuses_or_waits_and_redoes_nothing(setup):
    """Issue 15: two identical runs into one output used to both do all the work. Now the second one refuses
    naming the first, or (--wait) waits for it and then finds every block done."""
    from shared.jobs import JobLockedError

    tmp, ckpt, _ = setup
    slow = tmp / "slow.ckpt"
    torch.save({"state_dict": load_tiny_model(str(ckpt)).state_dict(), "delay": 0.05}, slow)
    script = (
        "import sys; from connectomics.predict import predict_blockwise; "
        f"predict_blockwise({str(slow)!r}, {str(tmp / 'vol.zarr/raw')!r}, {str(tmp / 'two.zarr/affs')!r}, "
        f"block_shape=(4, 16, 16), context=2, loader={LOADER!r}, workers=1, progress=False)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])]))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        done = tmp / "two.zarr/affs/0/.job/done"
        deadline = time.time() + 60
        while time.time() < deadline and not (done.is_dir() and os.listdir(done)):
            time.sleep(0.02)
        run = dict(block_shape=(4, 16, 16), context=2, loader=LOADER, progress=False)
        with pytest.raises(JobLockedError, match=f"in use by pid {proc.pid} "):
            predict_blockwise(slow, str(tmp / "vol.zarr/raw"), str(tmp / "two.zarr/affs"), **run)
        second = predict_blockwise(slow, str(tmp / "vol.zarr/raw"), str(tmp / "two.zarr/affs"), wait=True, **run)
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    assert second.n_already_done == 27 and second.n_processed == 0
