"""Pin each dask worker to its own GPU (a ``distributed`` worker plugin).

:func:`shared.devices.default_device` already picks a per-worker GPU for our own code; this plugin also makes
that GPU the worker's *current* CUDA device, so code that says plain ``"cuda"`` or calls ``.cuda()`` (Lightning,
third-party models) lands on it too. Kept apart from :mod:`shared.devices` because importing ``distributed``
costs about a second, which every command would otherwise pay.
"""

from __future__ import annotations

import torch
from distributed import Client, WorkerPlugin

from shared.devices import worker_gpu_index


class GPUPerWorker(WorkerPlugin):
    """On each worker's start, ``torch.cuda.set_device(worker_gpu_index(worker.name, device_count))``.

    A no-op on workers without CUDA or with one visible GPU (e.g. one ``CUDA_VISIBLE_DEVICES`` per worker).
    """

    name = "recurrent-vision-gpu-per-worker"

    def setup(self, worker) -> None:
        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            torch.cuda.set_device(worker_gpu_index(worker.name, torch.cuda.device_count()))


def pin_workers_to_gpus(client: Client) -> None:
    """Register :class:`GPUPerWorker` on ``client``'s cluster: current workers and any that join later.

    Examples
    --------
    >>> from distributed import Client, LocalCluster
    >>> with LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster, Client(cluster) as c:
    ...     pin_workers_to_gpus(c)
    """
    client.register_plugin(GPUPerWorker(), name=GPUPerWorker.name)
