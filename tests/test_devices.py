"""Each dask worker gets its own GPU (issue 16): checked on the CPU by mocking CUDA and using real dask workers."""

from __future__ import annotations

import pytest
import torch

from shared.devices import default_device, lightning_devices, worker_gpu_index


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """torch reports 2 CUDA devices; set_device calls are recorded rather than made."""
    pinned: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", pinned.append)
    return pinned


@pytest.fixture
def three_thread_workers():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=False, dashboard_address=None) as cl,
        distributed.Client(cl) as client,
    ):
        yield client


def test_worker_gpu_index_names():
    assert [worker_gpu_index(i, 3) for i in range(5)] == [0, 1, 2, 0, 1]
    assert worker_gpu_index("gpu-7", 4) == 3
    assert worker_gpu_index("node12-gpu-1", 2) == 1
    hashed = worker_gpu_index("tcp://10.0.0.1:4000x", 8)
    assert 0 <= hashed < 8 and hashed == worker_gpu_index("tcp://10.0.0.1:4000x", 8)  # stable across calls
    assert worker_gpu_index("anything", 1) == 0
    with pytest.raises(ValueError, match="device_count"):
        worker_gpu_index(0, 0)


def test_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")


def test_outside_a_worker_the_current_cuda_device(two_fake_gpus):
    assert default_device() == torch.device("cuda")


@pytest.mark.parametrize(
    "pick, expected",
    [
        (default_device, {0: torch.device("cuda", 0), 1: torch.device("cuda", 1), 2: torch.device("cuda", 0)}),
        # devices=1 would put every worker's Trainer on GPU 0; lightning_devices names the worker's own index
        (lightning_devices, {0: ("gpu", [0]), 1: ("gpu", [1]), 2: ("gpu", [0])}),
    ],
)
def test_each_dask_worker_its_own_gpu(two_fake_gpus, three_thread_workers, pick, expected):
    client = three_thread_workers
    workers = client.scheduler_info()["workers"]
    got = {
        info["name"]: client.submit(pick, workers=[addr], pure=False, allow_other_workers=False).result()
        for addr, info in workers.items()
    }
    assert got == expected


def test_one_visible_gpu_per_worker_is_cuda0(monkeypatch, three_thread_workers):
    # the CUDA_VISIBLE_DEVICES-per-worker scheme: each worker sees one device, its own
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    client = three_thread_workers
    results = client.gather(
        [client.submit(default_device, pure=False, workers=[a]) for a in client.scheduler_info()["workers"]]
    )
    assert set(results) == {torch.device("cuda")}


def test_plugin_pins_current_and_new_workers(two_fake_gpus, three_thread_workers):
    from shared.worker_devices import pin_workers_to_gpus

    pin_workers_to_gpus(three_thread_workers)
    assert sorted(two_fake_gpus) == [0, 0, 1]
    three_thread_workers.cluster.scale(4)
    three_thread_workers.wait_for_workers(4, timeout=30)
    assert sorted(two_fake_gpus) == [0, 0, 1, 1]  # worker 3 joined later and was pinned to GPU 1
