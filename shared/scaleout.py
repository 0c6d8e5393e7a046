"""Run a job's units serially or on dask, keeping the bookkeeping of :mod:`shared.jobs` in this process.

The unit of work is a top-level function ``compute(**unit_kwargs, **common)`` that returns a (small,
picklable) result; ``save(key, result)`` writes it into the job's output and then the unit is marked done.
Only ``compute`` runs on dask workers, so workers need neither the output folder nor its lock, and a unit
is marked done only after its result is on disk here: a killed run resumes from the done-markers exactly
as a serial one does (:meth:`shared.jobs.Job.run_units`).

Where the work runs (the same choice as ``rldiag diagnose`` and ``connectomics predict``):

* ``workers=0`` and no ``scheduler``: serially in this process (debuggable; one progress bar);
* ``workers=N``: a dask ``LocalCluster`` of N single-threaded worker *processes* (dask sets
  ``OMP_NUM_THREADS=1`` in each, so N workers use N cores);
* ``scheduler="tcp://host:8786"``: a running ``dask scheduler`` with ``dask worker`` processes
  (recurrent-vision installed on every worker).

Each worker with GPUs computes on its own one: the cluster is pinned with
:func:`shared.worker_devices.pin_workers_to_gpus` and :func:`shared.devices.default_device` /
:func:`shared.devices.lightning_devices` pick the worker's GPU.

Arguments shared by every unit (``common``: arrays, tables) are sent to the cluster once
(``Client.scatter``), not once per unit.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from shared.jobs import Job, JobConfigError, JobLockedError, OutputExistsError, UnitReport

__all__ = ["add_dask_arguments", "dask_client", "run_job_units"]


def add_dask_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers N`` and ``--scheduler ADDRESS``, as in ``rldiag diagnose``; pass them to :func:`dask_client`.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_dask_arguments(p)
    >>> p.parse_args(["--workers", "2"]).workers
    2
    """
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="dask LocalCluster worker processes, one thread each (0: serially in this process)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="address of a running dask scheduler (tcp://host:8786); its workers must see the input files",
    )


@contextlib.contextmanager
def dask_client(*, workers: int = 0, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``workers`` local processes or a running ``scheduler``; None for serial.

    The client's workers are pinned one GPU each (:func:`shared.worker_devices.pin_workers_to_gpus`); a
    local cluster is closed on exit, a remote one is left running.

    Examples
    --------
    >>> with dask_client(workers=0) as client:
    ...     client is None
    True
    """
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    if scheduler is None and workers == 0:
        yield None
        return
    from distributed import Client, LocalCluster

    from shared.worker_devices import pin_workers_to_gpus

    cluster = None
    if scheduler is not None:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0
        )
        client = Client(cluster)
    try:
        pin_workers_to_gpus(client)
        yield client
    finally:
        client.close()
        if cluster is not None:
            # every result is saved by now; a worker slow to exit on a loaded machine is killed by its nanny,
            # which loses nothing, so its warning is not shown
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                cluster.close()
            finally:
                nanny.setLevel(level)


def run_job_units(
    job: Job,
    units: Mapping[str, Mapping[str, Any]],
    compute: Callable[..., Any],
    save: Callable[[str, Any], None],
    *,
    common: Mapping[str, Any] | None = None,
    client: Any = None,
    desc: str = "units",
    progress: bool = True,
    stop_after: int | None = 3,
) -> UnitReport:
    """Compute every unit of ``job`` that is not done yet, save each result here, then mark it done.

    Parameters
    ----------
    job : the open job (its lock is held by this process).
    units : unit key -> keyword arguments of ``compute`` for that unit (keys as in :meth:`Job.run_units`).
    compute : a top-level (picklable) function; ``compute(**units[key], **common)`` returns the result.
    save : ``save(key, result)``, called in this process, writes the result through ``job`` (and may print
        a line); the done-marker follows it.
    common : keyword arguments shared by every unit; scattered to the cluster once.
    client : a ``distributed.Client`` (:func:`dask_client`), or None to compute serially here.
    desc : label of the progress bar (units done, the unit running when serial).
    progress : show the bar.
    stop_after : as in :meth:`Job.run_units`: stop after this many failures with no success in this run.

    Returns
    -------
    :class:`shared.jobs.UnitReport`: a unit that raised is recorded under ``.job/failed/`` and retried on the
    next run; the others still finish.

    Examples
    --------
    >>> import json, tempfile
    >>> from shared.jobs import open_job
    >>> with open_job(tempfile.mkdtemp(), "doc", {}) as job:
    ...     report = run_job_units(job, {"a": {"base": 2}, "b": {"base": 3}}, pow,
    ...                            lambda key, result: job.write_json(key, result), common={"exp": 2},
    ...                            progress=False)
    ...     report.done, json.loads((job.root / "b").read_text())
    (2, 9)
    """
    from tqdm.auto import tqdm

    common = dict(common or {})
    keys = list(units)
    done = job.done_units()
    pending = [k for k in keys if k not in done]
    report = UnitReport(skipped=len(keys) - len(pending), folder=job.folder / "failed")
    bar = tqdm(
        total=len(keys), initial=report.skipped, desc=desc, unit="unit", disable=not progress, dynamic_ncols=True
    )
    streak = 0

    def finish(key: str, outcome: Callable[[], Any]) -> bool:
        """Save one unit's result (or record its failure); False when the run should stop."""
        nonlocal streak
        try:
            save(key, outcome())
        except (OutputExistsError, JobConfigError, JobLockedError):
            raise  # about the whole output, not this unit
        except Exception as err:  # contained: recorded, retried on the next run
            report.failed[key] = job.mark_failed(key, err)
            streak += 1
            bar.set_postfix(failed=len(report.failed))
            bar.update()
            return not (stop_after is not None and report.done == 0 and streak >= stop_after)
        job.mark_done(key)
        report.done += 1
        streak = 0
        bar.update()
        return True

    with bar:
        if client is None:
            for i, key in enumerate(pending):
                bar.set_postfix_str(key)
                if not finish(key, lambda key=key: compute(**units[key], **common)):
                    report.not_attempted = pending[i + 1 :]
                    break
        elif pending:
            from distributed import as_completed

            # a list of one: scatter sends the value whole (a dict would be scattered value by value)
            shared = {name: client.scatter([value], broadcast=True)[0] for name, value in common.items()}
            futures = {
                client.submit(compute, **units[key], **shared, key=f"{desc}-{key}-{job.fingerprint}", pure=False): key
                for key in pending
            }
            finished = set()
            for future in as_completed(futures):
                key = futures[future]
                finished.add(key)
                if not finish(key, future.result):
                    report.not_attempted = [k for k in pending if k not in finished]
                    client.cancel([f for f, k in futures.items() if k not in finished])
                    break
    return report
