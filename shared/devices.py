"""Device and mixed-precision choices, in one place so no module hard-codes a device.

One GPU per dask worker
-----------------------
Inside a ``dask.distributed`` worker, :func:`default_device` gives each worker its own GPU instead of
sending every worker to GPU 0. Two schemes work, and can be mixed:

* **One visible GPU per worker** (the dask-cuda scheme): start each worker with its own
  ``CUDA_VISIBLE_DEVICES`` (``CUDA_VISIBLE_DEVICES=2 dask worker tcp://host:8786``, or dask-cuda's
  ``LocalCUDACluster``). Each worker sees one device, so :func:`default_device` returns ``cuda:0``, which is
  that worker's own GPU.
* **All GPUs visible to every worker**: the worker's index picks ``cuda:{index % device_count}``. A
  ``LocalCluster`` names its workers ``0, 1, 2, ...``; for workers started by hand give integer names
  (``dask worker tcp://host:8786 --name 3``) or names ending in one (``gpu-3``). A name without a number is
  mapped by a stable hash, which spreads workers but may put two on one GPU, so name workers when it matters.
  :func:`shared.worker_devices.pin_workers_to_gpus` also makes that GPU the worker's *current* CUDA device,
  so third-party code that says plain ``"cuda"`` lands on it too.

Outside a dask worker, :func:`default_device` returns ``cuda`` (the current CUDA device) or ``cpu``.
"""

from __future__ import annotations

import contextlib
import re
import sys
import zlib

import torch


def worker_gpu_index(worker_name: object, device_count: int) -> int:
    """The GPU a dask worker named ``worker_name`` should use among ``device_count`` visible GPUs.

    Parameters
    ----------
    worker_name : int or str
        The worker's name: ``LocalCluster`` uses ``0, 1, ...``; ``dask worker --name`` sets any string.
    device_count : int
        Number of visible CUDA devices (``torch.cuda.device_count()``), at least 1.

    Returns
    -------
    int
        ``index % device_count`` where ``index`` is the integer name, or the trailing integer of a string name
        (``"gpu-3"`` -> 3); other names map through a stable CRC32 hash.

    Examples
    --------
    >>> worker_gpu_index(5, 4), worker_gpu_index("gpu-2", 4), worker_gpu_index("tcp://10.0.0.1:4000", 1)
    (1, 2, 0)
    """
    if device_count < 1:
        raise ValueError(f"device_count must be >= 1, got {device_count}")
    if isinstance(worker_name, int):
        return worker_name % device_count
    match = re.search(r"(\d+)$", str(worker_name))
    index = int(match.group(1)) if match else zlib.crc32(str(worker_name).encode())
    return index % device_count


def _dask_worker_name() -> object | None:
    """The name of the dask worker running the caller, or None outside a worker.

    ``distributed`` is looked up in ``sys.modules`` rather than imported: a process that has not imported it
    cannot be a dask worker, and importing it costs about a second.
    """
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return distributed.get_worker().name
    except ValueError:  # not inside a worker task
        return None


def default_device() -> torch.device:
    """The device this process (or this dask worker) should compute on.

    Returns
    -------
    torch.device
        ``cpu`` without CUDA; inside a dask worker with several visible GPUs, ``cuda:{i}`` with
        ``i = worker_gpu_index(worker name, device_count)``; otherwise ``cuda`` (the current CUDA device).

    Examples
    --------
    >>> default_device().type in {"cpu", "cuda"}
    True
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    name = _dask_worker_name()
    count = torch.cuda.device_count()
    if name is None or count <= 1:
        return torch.device("cuda")
    return torch.device("cuda", worker_gpu_index(name, count))


def autocast(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Mixed precision (float16 autocast) on CUDA; a no-op context on the CPU.

    CPU autocast to bfloat16 is slower than float32 on most CPUs and changes numerics, so it is not used.

    Examples
    --------
    >>> with autocast("cpu"):
    ...     (torch.ones(2) * 2).dtype
    torch.float32
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def lightning_precision() -> str:
    """The Lightning ``precision`` string to use by default: ``"16-mixed"`` on CUDA, ``"32-true"`` on CPU."""
    return "16-mixed" if torch.cuda.is_available() else "32-true"


def lightning_devices() -> tuple[str, list[int] | int]:
    """``(accelerator, devices)`` for a one-device ``lightning.Trainer`` on :func:`default_device`.

    ``devices=1`` would put every dask worker's Trainer on GPU 0; naming the index keeps each worker on the
    GPU :func:`default_device` gave it.

    Examples
    --------
    >>> accelerator, devices = lightning_devices()
    >>> accelerator in {"cpu", "gpu"} and (devices == 1 or len(devices) == 1)
    True
    """
    device = default_device()
    if device.type != "cuda":
        return "cpu", 1
    return "gpu", [device.index if device.index is not None else torch.cuda.current_device()]
