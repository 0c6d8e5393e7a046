"""The README's example commands work as written (issue 16, "the README works verbatim").

Every line of every ```bash block in README.md is a command a user types. Each is classified by its program:

* our commands (``connectomics``, ``phenotypic``, ``rldiag``, ``python -m shared.<tool>``, ``python -c``) are
  checked here: in CI each one's arguments are parsed by the command's own parser without running it (so a
  renamed flag, subcommand or config file fails), and the slow test runs them all, in order, in one fresh
  folder that has the repository's ``configs/``, at the tiny scale of :data:`TINY`;
* setup and third-party tools (``make``, ``pip``, ``napari``, ...) are listed in :data:`NOT_OURS` and skipped.

A new README section is picked up automatically; a line whose program is in neither list fails the test, so
the README cannot gain a command nobody checks.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

NOT_OURS = {"make", "python3", ".venv/bin/pip", "pip", "napari", "npx"}
"""Programs of README lines that set up the environment or are other projects' tools: not run here."""

TINY: dict[str, list[str]] = {
    "python -m shared.pathfinder fit": [
        "--trainer.max_epochs",
        "1",
        "--data.n_train",
        "64",
        "--data.n_val",
        "32",
        "--data.n_test",
        "32",
        "--data.generation_workers",
        "1",
    ],
    "connectomics simulate": ["--shape", "16,64,64"],
    "connectomics fit": [
        "--trainer.max_steps",
        "2",
        "--data.crop_shape",
        "[8,32,32]",
        "--data.samples_per_epoch",
        "4",
        "--data.val_samples",
        "2",
        "--data.simulate",
        '{"sources": ["sstem", "sbem", "fib", "retina"], "shape": [16, 64, 64], "seed": 0}',
    ],
    "connectomics predict": ["--block", "16,64,64", "--context", "4,16,16"],
    "connectomics segment": ["--block", "16,64,64"],
    "connectomics star": [
        "--volume_shape",
        "[8,48,48]",
        "--test_shape",
        "[8,48,48]",
        "--crop_shape",
        "[8,32,32]",
        "--steps",
        "2",
        "--fractions",
        "[1.0]",
    ],
    "phenotypic simulate": ["--plates-per-batch", "2", "--n-batches", "1", "--n-compounds", "90"],
    "phenotypic fit": ["--trainer.max_steps", "10"],
    "phenotypic evaluate": ["--epochs", "5", "--probes", "linear"],
    "rldiag diagnose": ["--budget", "1024", "--quiet"],
    "python -m shared.tracking": [
        "--trainer.max_steps",
        "2",
        "--data.n_train",
        "16",
        "--data.n_val",
        "8",
        "--data.n_test",
        "8",
        "--data.generation_workers",
        "1",
    ],
}
"""Flags appended to a README command (longest matching prefix) for the tiny-scale run: each overrides the
README's value of the same option (argparse and LightningCLI keep the last one), so the commands themselves
run unchanged, only smaller."""


def readme_commands(text: str | None = None) -> list[str]:
    """Every command line of every ```bash block of the README (comments stripped), in order."""
    text = README.read_text() if text is None else text
    commands, in_bash, pending = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            in_bash, pending = line.strip() == "```bash", ""
            continue
        if in_bash:
            if line.rstrip().endswith("\\"):  # a continued command: the shell joins it with the next line
                pending += line.rstrip()[:-1] + " "
                continue
            words = shlex.split(pending + line, comments=True)
            pending = ""
            if words:
                commands.append(shlex.join(words))
    return commands


def program(command: str) -> str:
    """``connectomics`` / ``python -m shared.alignment`` / ``python -c`` / ``make``: what runs the line."""
    words = shlex.split(command)
    if words[0] == "python" and words[1] == "-m":
        return f"python -m {words[2]}"
    if words[0] == "python":
        return f"python {words[1]}"
    return words[0]


def console_scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def ours(command: str) -> bool:
    prog = program(command)
    if prog in console_scripts() or prog == "python -c":
        return True
    if prog.startswith("python -m ") and prog.split()[2].split(".")[0] in {
        "shared",
        "connectomics",
        "phenotypic",
        "rldiag",
    }:
        return True
    assert prog in NOT_OURS, (
        f"README command {command!r}: program {prog!r} is neither ours nor listed in "
        "NOT_OURS; decide which it is in tests/test_readme_commands.py"
    )
    return False


COMMANDS = [c for c in readme_commands() if ours(c)]


def tiny(command: str) -> list[str]:
    words = shlex.split(command)
    matches = [prefix for prefix in TINY if words[: len(prefix.split())] == prefix.split()]
    return words + (TINY[max(matches, key=len)] if matches else [])


# ------------------------------------------------------------------------------------------ CI: parsing only
class _Parsed(BaseException):
    """Raised right after a command's parser accepted its arguments (BaseException: no handler catches it)."""


@contextlib.contextmanager
def stop_after_parsing(monkeypatch):
    """Let argparse / jsonargparse parse as usual, then stop the command before it does any work."""
    import jsonargparse

    depth = [0]

    def wrap(original):
        def parse_args(self, *args, **kwargs):
            depth[0] += 1
            try:
                result = original(self, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:  # the outermost parser (jsonargparse parses subcommands with nested calls)
                raise _Parsed
            return result

        return parse_args

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", wrap(argparse.ArgumentParser.parse_args))
    monkeypatch.setattr(jsonargparse.ArgumentParser, "parse_args", wrap(jsonargparse.ArgumentParser.parse_args))
    yield


def test_readme_has_the_commands_of_every_part():
    progs = {program(c) for c in COMMANDS}
    assert {
        "connectomics",
        "phenotypic",
        "rldiag",
        "python -m shared.pathfinder",
        "python -m shared.alignment",
    } <= progs
    assert readme_commands("text\n```bash\nrldiag games   # list\n\n```\n```python\nx = 1\n```\n") == ["rldiag games"]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command, monkeypatch):
    """The command's own parser accepts the README's arguments (nothing runs; relative paths are the repo's)."""
    monkeypatch.chdir(REPO)
    words = shlex.split(command)
    prog = program(command)
    if prog == "python -c":
        compile(words[2], "<README>", "exec")
        return
    if prog.startswith("python -m "):
        module, argv = words[2], words[3:]
        run = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa: E731
    else:
        module_name, func = console_scripts()[prog].split(":")
        main, argv = getattr(import_module(module_name), func), words[1:]
        run = lambda: sys.exit(main(argv))  # noqa: E731
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    out = io.StringIO()
    with stop_after_parsing(monkeypatch), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            run()
        except _Parsed:
            return
        except SystemExit as stop:
            if "--ckpt_path" in argv and "checkpoint does not exist" in out.getvalue():
                return  # parsed; the checkpoint is what an earlier README command writes (the slow test runs it)
            assert stop.code in (0, None) and "--help" in argv, f"{command}: exit {stop.code}\n{out.getvalue()}"
            return
    pytest.fail(f"{command}: finished without parsing any arguments")


# ------------------------------------------------------------------------------------------ slow: run them all
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_commands_run_in_order(tmp_path):
    """Every command, in README order, in a fresh folder (with ``configs/``), at the tiny scale of TINY."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1",
    }
    for command in COMMANDS:
        argv = tiny(command)
        if argv[0] == "python":
            argv[0] = sys.executable
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert (tmp_path / "runs/phenotypic/ibp_mlp/checkpoints/last.ckpt").is_file()
    assert (tmp_path / "tasks/tasks.csv").is_file()
    assert (tmp_path / "alignment.json").is_file()
