"""Start-up time of the console commands against issue 16's targets: ``--help`` in < 1.5 s, first output < 2 s.

Each command runs in a fresh interpreter, exactly as its console script does
(``python -c "from connectomics.cli import main; main()" ...``), ``--repeats`` times; the median is reported.
"help" rows time the whole ``--help`` run; "first output" rows time the first byte the command writes
on a pseudo-terminal (as at a shell) while it does real, tiny work. ``ratio`` = time / target (<= 1 meets
the target). A bare ``python -c pass`` row gives the interpreter's own share, and ``import torch`` /
``import lightning`` rows the floor of any command that needs them (LightningCLI builds ``--help`` from the
model classes, so it needs both). ``--importtime`` adds, per command, the packages that dominate its imports
(``python -X importtime`` self time summed per top-level package), to show what to make lazy.

The LightningCLI helps (``python -m shared.pathfinder``, ``connectomics fit/star``, ``phenotypic fit``) are
kept by :func:`shared.cli.cached_help` after their first rendering: their "help" rows are timed after one
untimed run (the cache lives in a temporary ``XDG_CACHE_HOME``), and "help, first" rows time the rendering
itself (``RV_HELP_CACHE=0``), which is what a user waits for once per change of the source or packages.

    python benchmarks/cli_startup.py [--repeats 3] [--importtime] [--only rldiag]

Timings depend on the disk cache and on other load: run it twice and read the second run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELP_TARGET_S = 1.5
FIRST_OUTPUT_TARGET_S = 2.0
CACHED_HELPS = (
    "python -m shared.pathfinder --help",
    "connectomics fit --help",
    "connectomics star --help",
    "phenotypic fit --help",
)


def console(package: str, *args: str) -> list[str]:
    """The argv of ``package``'s console command (what ``[project.scripts]`` runs)."""
    return [sys.executable, "-c", f"import sys; from {package}.cli import main; sys.exit(main())", *args]


def module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", name, *args]


def commands(tmp: Path) -> list[tuple[str, str, list[str]]]:
    """(label, kind, argv) of every command measured; kind is "help", "help, first" or "first output"."""
    # floors: the interpreter alone, and the imports any torch / LightningCLI command cannot avoid
    rows = [("python -c pass", "baseline", [sys.executable, "-c", "pass"])]
    rows += [
        (f"python -c 'import {m}'", "baseline", [sys.executable, "-c", f"import {m}"]) for m in ("torch", "lightning")
    ]
    rows += [(f"{p} --help", "help", console(p, "--help")) for p in ("connectomics", "phenotypic", "rldiag")]
    rows += [(f"python -m {m} --help", "help", module(m, "--help")) for m in ("shared.pathfinder", "shared.alignment")]
    rows += [
        (f"connectomics {s} --help", "help", console("connectomics", s, "--help"))
        for s in ("simulate", "fit", "star", "predict", "segment", "evaluate")
    ]
    rows += [
        (f"phenotypic {s} --help", "help", console("phenotypic", s, "--help"))
        for s in ("simulate", "fit", "evaluate", "scaling")
    ]
    rows += [
        (f"rldiag {s} --help", "help", console("rldiag", s, "--help"))
        for s in ("diagnose", "taxonomy", "train", "distill", "games")
    ]
    rows += [(f"{label}, first", "help, first", argv) for label, kind, argv in rows if label in CACHED_HELPS]
    rows += [
        ("rldiag games", "first output", console("rldiag", "games")),
        (
            "connectomics simulate (8x64x64)",
            "first output",
            console("connectomics", "simulate", str(tmp / "sim.zarr"), "--shape", "8,64,64", "--chunks", "8,64,64"),
        ),
        ("connectomics fit --help (terminal)", "first output", console("connectomics", "fit", "--help")),
        ("connectomics predict --help (terminal)", "first output", console("connectomics", "predict", "--help")),
        (
            "connectomics evaluate (missing file)",
            "first output",
            console("connectomics", "evaluate", str(tmp / "none.zarr/seg"), str(tmp / "none.zarr/labels")),
        ),
    ]
    return rows


def time_run(argv: list[str], env: dict[str, str], first_output: bool) -> tuple[float, int]:
    """Seconds to the end of the run, or to its first output byte, and the exit code.

    First-output runs get a pseudo-terminal for stdin, stdout and stderr, as a user at a shell would: a
    command's status lines (:mod:`shared.startup`) appear only on a terminal.
    """
    start = time.perf_counter()
    if not first_output:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, timeout=600)
        return time.perf_counter() - start, proc.returncode
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    os.read(leader, 1)
    elapsed = time.perf_counter() - start
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while os.read(leader, 65536):  # drain what the child printed until it closes the terminal
            continue
    os.close(leader)
    return elapsed, proc.wait(timeout=600)


def dominant_imports(argv: list[str], env: dict[str, str], n: int = 5) -> list[tuple[float, str]]:
    """The ``n`` top-level packages whose modules take the most import time, as (seconds, package).

    Sums each module's own (self) time from ``python -X importtime`` by its top-level package name, so
    ``torch`` includes every ``torch.*`` module and nothing is counted twice.
    """
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    by_package: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        package = name.strip().split(".")[0]
        by_package[package] = by_package.get(package, 0.0) + int(own) / 1e6
    return sorted(((sec, pkg) for pkg, sec in by_package.items()), reverse=True)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--importtime", action="store_true", help="list the dominant imports of each command")
    parser.add_argument("--only", default=None, help="measure only rows whose label contains this text")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; median of {args.repeats} runs"
    )
    print(f"{'command':<42} {'kind':<12} {'seconds':>8} {'target':>7} {'ratio':>6}  ok")
    misses = 0
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as cache:
        env.update(XDG_CACHE_HOME=cache, RV_HELP_CACHE="1")
        for label, kind, argv in commands(Path(tmp)):
            if args.only and args.only not in label and kind != "baseline":
                continue
            run_env = {**env, "RV_HELP_CACHE": "0"} if kind == "help, first" else env
            if kind == "help":
                time_run(argv, run_env, first_output=False)  # untimed: fills the help cache where there is one
            runs = []
            for _ in range(args.repeats):
                for leftover in Path(tmp).iterdir():  # simulate refuses to overwrite: start clean each time
                    shutil.rmtree(leftover)
                seconds, code = time_run(argv, run_env, first_output=kind == "first output")
                runs.append(seconds)
            median = statistics.median(runs)
            target = {"help": HELP_TARGET_S, "help, first": HELP_TARGET_S, "first output": FIRST_OUTPUT_TARGET_S}.get(
                kind
            )
            if target is None:
                print(f"{label:<42} {kind:<12} {median:>8.2f}")
            else:
                ok = median <= target
                misses += not ok
                exit_note = "" if not kind.startswith("help") or code == 0 else f" (exit {code})"
                print(
                    f"{label:<42} {kind:<12} {median:>8.2f} {target:>7.1f} {median / target:>6.2f}  "
                    f"{'yes' if ok else 'NO'}{exit_note}"
                )
            if args.importtime and kind != "baseline":
                top = dominant_imports(argv, env)
                print(f"{'':<6}imports: " + ", ".join(f"{pkg} {sec:.2f} s" for sec, pkg in top))
    print(f"{misses} command(s) over target")


if __name__ == "__main__":
    main()
