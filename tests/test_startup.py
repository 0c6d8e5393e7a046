"""Console commands: fast --help for the top-level commands, and a transient status line while a slow
subcommand module loads on a terminal (issue 16, speed of feedback). Timings are in benchmarks/cli_startup.py."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.startup import announce_slow_import

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "scipy", "dask", "zarr", "numba", "pandas", "matplotlib")


def packages_loaded_by(package: str, argv: list[str]) -> set[str]:
    """Top-level packages in ``sys.modules`` after ``{package}.cli.main(argv)`` ran in a fresh interpreter."""
    code = (
        "import contextlib, io, sys\n"
        f"from {package}.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})\n"
        "print(' '.join(sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    return {name.split(".")[0] for name in proc.stdout.split()}


def test_top_level_help_imports_no_heavy_library():
    for package in ("connectomics", "rldiag"):
        assert not packages_loaded_by(package, ["--help"]) & set(HEAVY), package


def test_rldiag_subcommand_help_needs_neither_torch_nor_scipy():
    for sub in ("diagnose", "taxonomy", "train", "distill", "games"):
        assert not packages_loaded_by("rldiag", [sub, "--help"]) & {"torch", "scipy", "lightning"}, sub


ARGPARSE_SUBCOMMANDS = {  # every subcommand whose --help argparse builds (LightningCLI ones: the help cache)
    "connectomics": ("simulate", "predict", "segment", "evaluate"),
    "phenotypic": ("simulate", "evaluate", "scaling"),
    "rldiag": ("diagnose", "taxonomy", "train", "distill", "games"),
    "shared.alignment": ("score",),
}
HELP_NEEDS_NONE_OF = {"torch", "lightning", "dask", "distributed", "zarr", "numba"}


@pytest.mark.parametrize("package,sub", [(p, s) for p, subs in ARGPARSE_SUBCOMMANDS.items() for s in subs])
def test_argparse_subcommand_help_imports_no_torch_lightning_dask_zarr_or_numba(package, sub):
    """`<cmd> <sub> --help` builds its parser from light modules; the work imports the heavy ones."""
    assert not packages_loaded_by(package, [sub, "--help"]) & HELP_NEEDS_NONE_OF


def test_argparse_subcommands_listed_are_all_the_subcommands():
    import importlib

    for package, subs in ARGPARSE_SUBCOMMANDS.items():
        listed = importlib.import_module(f"{package}.cli").SUBCOMMANDS
        assert set(subs) == {name for name, sub in listed.items() if not sub.cache_help}, package


class _SlowStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_only_for_slow_imports_on_a_terminal(tmp_path, monkeypatch):
    (tmp_path / "slow_mod_for_startup_test.py").write_text("import time\ntime.sleep(0.3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tty = _SlowStream()
    module = announce_slow_import("demo fit", "slow_mod_for_startup_test:run", after_s=0.05, stream=tty)
    assert module.__name__ == "slow_mod_for_startup_test"
    assert tty.getvalue() == "demo fit: loading slow_mod_for_startup_test and its libraries...\r\x1b[K"
    quiet = _SlowStream()  # already imported: nothing to say
    announce_slow_import("demo fit", "slow_mod_for_startup_test:run", after_s=0.0, stream=quiet)
    assert quiet.getvalue() == ""
    pipe = io.StringIO()  # not a terminal: never a status line
    (tmp_path / "slow_mod_two.py").write_text("import time\ntime.sleep(0.2)\n")
    announce_slow_import("demo fit", "slow_mod_two:run", after_s=0.0, stream=pipe)
    assert pipe.getvalue() == ""


def test_connectomics_announces_the_subcommand_module_it_loads(monkeypatch, capsys):
    import connectomics.cli

    calls = []
    monkeypatch.setattr(connectomics.cli, "announce_slow_import", lambda prog, target: calls.append((prog, target)))
    with pytest.raises(SystemExit):
        connectomics.cli.main(["simulate", "--help"])
    assert calls == [("connectomics simulate", "connectomics.simulate:cli")]
    assert connectomics.cli.main(["--help"]) == 0 and len(calls) == 1  # the top-level manual loads nothing
    assert "simulate" in capsys.readouterr().out


@pytest.mark.slow  # imports Lightning in a child process on a pseudo-terminal: ~5-12 s
def test_connectomics_fit_on_a_terminal_speaks_before_lightning_is_loaded():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    leader, follower = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from connectomics.cli import main; sys.exit(main(['fit', '--help']))"],
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    first = os.read(leader, 200).decode()
    first_s = time.perf_counter() - start
    output = first
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk.decode(errors="replace")
    total_s = time.perf_counter() - start
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    assert first.startswith("connectomics fit: loading connectomics.train")
    assert "\r\x1b[K" in output and "--config" in output  # the line was erased, then the help printed
    assert first_s < total_s  # (no timing target here: benchmarks/cli_startup.py measures it)


def test_help_cache_prints_the_rendered_text_and_renders_again_when_anything_changes(tmp_path, monkeypatch, capsys):
    from shared.cli import cached_help, help_cache_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("RV_HELP_CACHE", "1")  # off for the rest of the suite (conftest.py)
    renders = []

    def render():
        renders.append(1)
        print(f"usage: demo fit [--option]  (render {len(renders)})")
        raise SystemExit(0)  # as argparse / jsonargparse do after printing a help

    assert cached_help("demo fit", ["--help"], render) == 0
    first = capsys.readouterr().out
    assert cached_help("demo fit", ["--help"], render) == 0
    assert capsys.readouterr().out == first == "usage: demo fit [--option]  (render 1)\n" and len(renders) == 1
    monkeypatch.setenv("COLUMNS", "61")  # another terminal width: argparse wraps differently
    cached_help("demo fit", ["--help"], render)
    assert "(render 2)" in capsys.readouterr().out
    # only plain help requests are kept (a --config changes the defaults shown), and the cache can be turned off
    assert help_cache_file("demo fit", ["--config", "a.yaml", "--help"]) is None
    assert help_cache_file("demo", ["fit", "--help"]) is not None
    monkeypatch.setenv("RV_HELP_CACHE", "0")
    assert help_cache_file("demo fit", ["--help"]) is None


def test_lightning_help_from_the_cache_needs_no_lightning(tmp_path, monkeypatch):
    """`phenotypic fit --help` renders through LightningCLI once; the next one is the same text without torch."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("RV_HELP_CACHE", "1")
    packages_loaded_by("phenotypic", ["fit", "--help"])  # renders it (imports Lightning) and keeps the text
    assert not packages_loaded_by("phenotypic", ["fit", "--help"]) & {"torch", "lightning"}
    (kept,) = (tmp_path / "recurrent-vision" / "help").iterdir()
    assert "--trainer.default_root_dir" in kept.read_text() and "--overwrite" in kept.read_text()
