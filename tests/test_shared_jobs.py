"""The job layer (shared.jobs) and the CLI layer (shared.cli): atomic writes, the overwrite rule, manifests
that travel with the output, the lock, resumable units, one-line user errors and dataclass options."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared import jobs
from shared.cli import (
    UserError,
    add_dataclass_arguments,
    dataclass_from_args,
    field_docs,
    run_guarded,
    subcommand_parser,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------------ atomic writes
@FAST
@given(data=st.binary(max_size=4096))
def test_atomic_bytes_round_trip(tmp_path, data):
    path = jobs.atomic_write_bytes(tmp_path / "sub" / "x.bin", data)
    assert path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == ["x.bin"]  # no temporary left behind


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FAST
@given(obj=json_values, text=st.text(max_size=200))
def test_atomic_json_and_text_round_trip(tmp_path, obj, text):
    assert json.loads(jobs.atomic_write_json(tmp_path / "x.json", obj).read_text()) == obj
    assert jobs.atomic_write_text(tmp_path / "x.txt", text).read_bytes() == text.encode()


@FAST
@given(
    arrays=st.dictionaries(
        st.from_regex(r"[a-z]{1,6}", fullmatch=True),
        hnp.arrays(
            st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_]),
            hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_atomic_npz_round_trip(tmp_path, arrays):
    with np.load(jobs.atomic_write_npz(tmp_path / "a.npz", **arrays), allow_pickle=False) as back:
        assert set(back.files) == set(arrays)
        for k, v in arrays.items():
            assert back[k].dtype == v.dtype and np.array_equal(back[k], v, equal_nan=True)


@FAST
@given(
    values=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 4)),
        elements=st.floats(-1e6, 1e6, width=32, allow_subnormal=False),
    ),
    suffix=st.sampled_from([".parquet", ".csv", ".csv.gz"]),
)
def test_atomic_table_round_trip(tmp_path, values, suffix):
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(values.shape[1])]).assign(name="w")
    path = jobs.atomic_write_table(tmp_path / f"t{suffix}", frame)
    back = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    np.testing.assert_allclose(back[frame.columns[:-1]].to_numpy(), values, rtol=1e-6)
    assert (back["name"] == "w").all()


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = jobs.atomic_write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError), jobs.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# ------------------------------------------------------------------------------------------ overwrite rule
def test_claim_output_refuses_foreign_files(tmp_path):
    report = tmp_path / "report.json"
    jobs.atomic_write_json(jobs.claim_output(report), {"a": 1})
    with pytest.raises(jobs.OutputExistsError, match="--overwrite"):
        jobs.claim_output(report)
    assert jobs.claim_output(report, overwrite=True) == report
    with pytest.raises(UserError, match="is a folder"):
        jobs.claim_output(tmp_path)
    with pytest.raises(UserError, match="is a file"):
        jobs.claim_output(report / "inner.json")


def test_job_replaces_only_what_it_created(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine_before.txt").write_text("user data")
    with jobs.open_job(out, "test", {"n": 1}) as job:
        job.write_text("a.txt", "1")
        job.write_text("a.txt", "2")  # its own file, same run
        job.claim("images")  # a folder: everything inside counts as the job's
        job.write_text("images/x.txt", "x")
        with pytest.raises(jobs.OutputExistsError, match="not written by this `test` job"):
            job.write_text("mine_before.txt", "lost")
        with pytest.raises(ValueError, match="outside"):
            job.claim(tmp_path / "elsewhere.txt")
    assert (out / "mine_before.txt").read_text() == "user data"
    with jobs.open_job(out, "test", {"n": 1}) as job:  # the same job resumed: its files may be rewritten
        assert job.resumed
        job.write_text("a.txt", "3")
        job.write_text("images/x.txt", "y")
    with jobs.open_job(out, "test", {"n": 1}, overwrite=True) as job:
        job.write_text("mine_before.txt", "replaced on request")
    assert (out / "mine_before.txt").read_text() == "replaced on request"


def test_manifest_travels_with_the_output(tmp_path):
    out = tmp_path / "a"
    with jobs.open_job(out, "test", {"n": 1, "model": "sha-A"}) as job:
        job.run_units(["u1", "u2"], lambda k: job.write_text(f"{k}.txt", k))
    moved = tmp_path / "b"
    shutil.copytree(out, moved)  # copied without anything beside it: the protection is inside
    with pytest.raises(jobs.JobConfigError, match=r"model: 'sha-A' -> 'sha-B'"):
        jobs.open_job(moved, "test", {"n": 1, "model": "sha-B"})
    with pytest.raises(jobs.JobConfigError, match="the output of `test`"):
        jobs.open_job(moved, "other command", {"n": 1})
    with jobs.open_job(moved, "test", {"n": 1, "model": "sha-A"}) as job:
        assert job.run_units(["u1", "u2"], lambda k: pytest.fail("done units rerun")).skipped == 2
    with jobs.open_job(moved, "test", {"n": 1, "model": "sha-B"}, overwrite=True) as job:  # start over
        assert job.run_units(["u1", "u2"], lambda k: job.write_text(f"{k}.txt", "B")).done == 2
    assert (moved / "u1.txt").read_text() == "B" and (out / "u1.txt").read_text() == "u1"


def test_output_that_is_a_file_is_refused_before_anything_is_made(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        jobs.open_job(tmp_path / "f", "test", {})
    with pytest.raises(UserError, match="is a file, not a folder"):
        jobs.open_job(tmp_path / "f" / "sub", "test", {})
    assert (tmp_path / "f").read_text() == "x"


# ------------------------------------------------------------------------------------------ units
def test_units_fail_independently_and_are_retried(tmp_path):
    calls = []

    def work(key):
        calls.append(key)
        if key == "bad":
            raise ValueError("broken input for this unit")

    with jobs.open_job(tmp_path, "test", {}) as job:
        report = job.run_units(["a", "bad", "c"], work)
        assert report.done == 2 and list(report.failed) == ["bad"]
        assert job.failed_units()["bad"]["attempts"] == 1
        with pytest.raises(jobs.JobIncompleteError, match=r"1 of 3 units failed .*bad: ValueError: broken"):
            report.raise_if_incomplete()
    with jobs.open_job(tmp_path, "test", {}) as job:
        report = job.run_units(["a", "bad", "c"], work)
        assert report.skipped == 2 and calls == ["a", "bad", "c", "bad"]
        assert job.failed_units()["bad"]["attempts"] == 2
    with jobs.open_job(tmp_path, "test", {}) as job:
        report = job.run_units(["a", "bad", "c"], lambda k: None)  # fixed: retried and done
        assert report.done == 1 and not report.failed and job.failed_units() == {}
    with pytest.raises(ValueError, match="unit key"):
        jobs.Job(tmp_path, "t", {})._check_key("../escape")


def test_repeated_failures_stop_the_run(tmp_path):
    with jobs.open_job(tmp_path, "test", {}) as job:
        report = job.run_units([f"u{i}" for i in range(6)], lambda k: 1 / 0, stop_after=2)
    assert list(report.failed) == ["u0", "u1"] and report.not_attempted == ["u2", "u3", "u4", "u5"]
    with pytest.raises(jobs.JobIncompleteError, match="4 not attempted"):
        report.raise_if_incomplete()


# ------------------------------------------------------------------------------------------ lock
def test_second_run_refuses_naming_the_holder_or_waits(tmp_path):
    first = jobs.open_job(tmp_path, "test", {})
    with pytest.raises(jobs.JobLockedError, match=rf"in use by pid {os.getpid()} on .*--wait"):
        jobs.open_job(tmp_path, "test", {})
    threading.Timer(0.3, first.close).start()
    started = time.monotonic()
    with jobs.open_job(tmp_path, "test", {}, wait=True, poll_s=0.05):
        assert time.monotonic() - started >= 0.25
    assert not (tmp_path / ".job" / "lock").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".job").mkdir()
    import socket

    (tmp_path / ".job" / "lock").write_text(
        json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "started": "earlier", "command": "test"})
    )
    with pytest.warns(UserWarning, match="no longer running"), jobs.open_job(tmp_path, "test", {}) as job:
        assert json.loads((job.folder / "lock").read_text())["pid"] == os.getpid()


KILLABLE = textwrap.dedent("""
    import sys, time
    from shared.jobs import open_job
    out = sys.argv[1]
    with open_job(out, "killable", {"n": 6}) as job:
        def work(key):
            job.write_text(f"{key}.txt", key)
            with open(f"{out}/log", "a") as log:
                log.write(key + "\\n")
            time.sleep(0.3)
        job.run_units([f"u{i}" for i in range(6)], work).raise_if_incomplete()
""")


def test_kill_9_then_resume_finishes_every_unit_once_more_at_most(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(tmp_path)], env=env)
    deadline = time.monotonic() + 60
    while len(list((tmp_path / ".job" / "done").glob("*")) if (tmp_path / ".job" / "done").exists() else []) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / ".job" / "lock").exists()  # left behind by the killed run
    done = subprocess.run([sys.executable, "-c", KILLABLE, str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "taking over the lock" in done.stderr
    log = (tmp_path / "log").read_text().split()
    assert sorted(set(log)) == [f"u{i}" for i in range(6)]
    assert all(log.count(k) <= 2 for k in set(log))  # only the unit in flight at the kill ran twice
    assert all((tmp_path / f"u{i}.txt").read_text() == f"u{i}" for i in range(6))


# ------------------------------------------------------------------------------------------ CLI layer
@dataclass
class _Options:
    steps: int = 10
    """optimiser steps per run"""
    rate: float | None = None
    """learning rate (none: the model's default)"""
    mode: Literal["fast", "exact"] = "fast"
    """how to compute it"""
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    """model widths"""
    plot: bool = False
    """also draw a figure"""
    extra: dict = field(default_factory=dict, metadata={"help": "extra settings as JSON"})


def test_dataclass_arguments_use_field_docstrings_and_types():
    assert field_docs(_Options)["steps"] == "optimiser steps per run"
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, _Options)
    help_text = " ".join(parser.format_help().split())
    assert "optimiser steps per run" in help_text and "extra settings as JSON" in help_text
    opts = dataclass_from_args(
        _Options,
        parser.parse_args(
            ["--steps", "3", "--rate", "none", "--mode", "exact", "--sizes", "4", "8", "--plot", "--extra", '{"a": 1}']
        ),
    )
    assert opts == _Options(3, None, "exact", [4, 8], True, {"a": 1})
    assert dataclass_from_args(_Options, parser.parse_args([])) == _Options()
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "slow"])


def _fails(argv):
    raise ValueError("the input is wrong\nin two lines")


def _bug(argv):
    raise KeyError("a bug")


def test_user_errors_are_one_line_with_exit_code_2(capsys):
    assert run_guarded("prog sub", _fails, ["x"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "prog sub: error: the input is wrong in two lines (add --verbose for the traceback)"
    ]
    assert run_guarded("prog sub", _fails, ["--verbose"]) == 2
    assert "Traceback" in capsys.readouterr().err
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_guarded("prog sub", _bug, [])
    assert "--verbose" in subcommand_parser("p", "d").format_help()


def test_a_refused_claim_stops_the_run_instead_of_failing_a_unit(tmp_path):
    (tmp_path / "b.txt").write_text("user data")
    with jobs.open_job(tmp_path, "test", {}) as job, pytest.raises(jobs.OutputExistsError):
        job.run_units(["a", "b", "c"], lambda k: job.write_text(f"{k}.txt", k))
    assert job.done_units() == {"a"} and job.failed_units() == {} and not (tmp_path / "c.txt").exists()


def test_an_empty_lock_left_by_a_crash_is_taken_over(tmp_path):
    lock = tmp_path / ".job" / "lock"
    lock.parent.mkdir()
    lock.write_text("")  # died between creating the lock and writing its holder
    os.utime(lock, (time.time() - 60, time.time() - 60))
    with pytest.warns(UserWarning, match="unreadable lock"), jobs.open_job(tmp_path, "test", {}):
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_verbose_is_accepted_but_not_part_of_the_options():
    parser = subcommand_parser("p", "d")
    parser.add_argument("--steps", type=int, default=1)
    assert vars(parser.parse_args(["--verbose", "--steps", "2"])) == {"steps": 2}


def test_done_units_without_a_manifest_do_not_count_for_new_settings(tmp_path):
    """Deleting only manifest.json must not let a rerun with other settings take the old units as done."""
    with jobs.open_job(tmp_path, "demo", {"size": 1}) as job:
        job.run_units(["a", "b"], lambda key: None)
    (tmp_path / ".job/manifest.json").unlink()
    with pytest.raises(jobs.JobConfigError, match="no manifest.json"):
        jobs.open_job(tmp_path, "demo", {"size": 2})
    with jobs.open_job(tmp_path, "demo", {"size": 2}, overwrite=True) as job:
        assert job.done_units() == set()


def test_a_job_opened_with_a_relative_root_returns_paths_that_stay_inside_it(tmp_path, monkeypatch):
    """A claimed folder given back to write_json must land in the output, not in output/output (STAR did)."""
    monkeypatch.chdir(tmp_path)
    with jobs.open_job("runs/out", "test", {"a": 1}) as job:
        run_dir = job.claim("unit_1")
        written = job.write_json(run_dir / "result.json", {"ok": True})
    assert written == tmp_path / "runs/out/unit_1/result.json" and written.is_file()
    assert not (tmp_path / "runs/out/runs").exists()
