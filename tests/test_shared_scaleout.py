"""shared.scaleout: job units computed serially or on dask, saved and marked here; failures contained and retried."""

import json

import pytest

from shared.jobs import JobIncompleteError, open_job
from shared.scaleout import dask_client, run_job_units


def square_unless_told(x: int, fail: frozenset = frozenset()) -> int:
    if x in fail:
        raise ArithmeticError(f"unit {x} was told to fail")
    return x * x


@pytest.fixture(scope="module")
def thread_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c.scheduler_address


@pytest.mark.parametrize("where", ["serial", "dask"])
def test_units_fail_alone_and_only_failed_ones_rerun(tmp_path, thread_cluster, where):
    units = {f"u{x}": {"x": x} for x in range(5)}
    saved = []

    def run(fail):
        with (
            open_job(tmp_path, "test", {"n": 5}) as job,
            dask_client(scheduler=thread_cluster if where == "dask" else None) as client,
        ):

            def save(key, result):
                saved.append(key)
                job.write_json(f"{key}.json", result)

            return run_job_units(
                job, units, square_unless_told, save, common={"fail": fail}, client=client, progress=False
            )

    report = run(frozenset({1, 3}))
    assert (report.done, sorted(report.failed)) == (3, ["u1", "u3"])
    assert "unit 3 was told to fail" in report.failed["u3"]
    with pytest.raises(JobIncompleteError, match="2 of 5 units failed"):
        report.raise_if_incomplete()
    assert sorted(p.stem for p in (tmp_path / ".job" / "failed").iterdir()) == ["u1", "u3"]
    saved.clear()
    report = run(frozenset())
    assert (report.done, report.skipped, report.failed) == (2, 3, {}) and sorted(saved) == ["u1", "u3"]
    assert [json.loads((tmp_path / f"u{x}.json").read_text()) for x in range(5)] == [0, 1, 4, 9, 16]


def test_a_broken_setup_stops_after_three_failures(tmp_path):
    with open_job(tmp_path, "test", {}) as job:
        report = run_job_units(
            job,
            {f"u{x}": {"x": x} for x in range(6)},
            square_unless_told,
            lambda key, result: None,
            common={"fail": frozenset(range(6))},
            progress=False,
        )
    assert len(report.failed) == 3 and report.not_attempted == ["u3", "u4", "u5"]


def test_negative_workers_are_refused():
    with pytest.raises(ValueError, match="--workers must be >= 0"):
        dask_client(workers=-1).__enter__()
