"""The one job layer: crash-safe writes, protection that travels with the output, resumable units.

Every command that writes results goes through here, so "nothing lost, nothing cryptic" holds in one place:

* **Atomic writes** (:func:`atomic_write_bytes`, ``_text``, ``_json``, ``_table``, ``_npz``, or
  :func:`atomic_path` for any writer): a temporary file in the same folder, ``fsync``, ``os.replace``, then
  ``fsync`` of the folder. A reader sees the old file or the new one, never half of one.
* **Bookkeeping inside the output** (``<out>/.job/``), so copying or moving the output folder carries its
  protection along: ``manifest.json`` (command, configuration and its fingerprint), ``claims`` (the files
  this job created), ``done/<unit>`` markers, ``failed/<unit>.json`` records and the ``lock``.
* **The overwrite rule** (:func:`claim_output`, :meth:`Job.claim`): no command replaces a file that it did
  not create in the same resumable job, unless the user passes ``--overwrite``.
* **A lock** (``O_CREAT | O_EXCL``) holding host, pid and start time: a second run into the same output
  refuses naming the holder, or waits (``wait=True``); a lock left by a dead process on this host is taken
  over with a warning.
* **Resumable units that fail independently** (:meth:`Job.run_units`): a done-marker is written only after
  a unit's outputs are in place (daisy's ``check_function`` with the cheap marker of its tutorial); a unit
  that raises is recorded under ``failed/`` and retried on the next run, counted apart from done ones.
  volara keeps the same kind of marker (a ``blocks_done`` zarr, one chunk per finished block) in a meta
  folder beside its logs; ours lives in the output so it travels with it.

Inside a zarr container, give each array its own job (``root`` = the array's folder): zarr 3 warns about a
``.job`` folder at group level ("not recognized as a component of a Zarr hierarchy") but not inside an array.
A job that writes several arrays of one container keeps ``root`` = the container and its bookkeeping inside
one of its arrays (``bookkeeping="fragments/0/.job"``, as ``connectomics segment`` does).

Examples
--------
>>> import tempfile
>>> out = Path(tempfile.mkdtemp()) / "results"
>>> with open_job(out, "demo", {"size": 3}) as job:
...     report = job.run_units(["a", "b"], lambda key: job.write_text(f"{key}.txt", key))
>>> report.done, report.skipped, report.failed
(2, 0, {})
>>> with open_job(out, "demo", {"size": 3}) as job:  # same command again: everything is done
...     job.run_units(["a", "b"], lambda key: None).skipped
2
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shared.cli import UserError

__all__ = [
    "BOOKKEEPING",
    "Job",
    "JobConfigError",
    "JobIncompleteError",
    "JobLockedError",
    "OutputExistsError",
    "UnitReport",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npz",
    "atomic_write_table",
    "atomic_write_text",
    "check_output_folder",
    "claim_output",
    "config_fingerprint",
    "file_sha256",
    "open_job",
    "reopen_job",
]

BOOKKEEPING = ".job"
"""Name of the bookkeeping folder inside every job output."""

_UNIT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}")


class OutputExistsError(UserError, FileExistsError):
    """An output file exists and this job did not create it."""


class JobConfigError(UserError, ValueError):
    """The output holds a job started with other settings (or by another command)."""


class JobLockedError(UserError, BlockingIOError):
    """Another run holds the output's lock."""


class JobIncompleteError(UserError, RuntimeError):
    """Some units failed; the message says how many and where their errors are. Exit code 1: the input
    was accepted, the work failed."""

    exit_code = 1


# ------------------------------------------------------------------------------------------ atomic writes
def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    The temporary name is hidden and ends in ``.tmp`` (globs such as ``*.json`` never see it); writers that
    choose a format from the file name must be told the format explicitly. On an exception the temporary
    file is removed and ``path`` is untouched.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`) and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON atomically (numpy scalars and arrays become numbers and lists; NaN is kept)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default))


def atomic_write_table(path: str | Path, frame) -> Path:
    """Write a pandas DataFrame atomically, without its index; the format follows the name of ``path``:
    ``.parquet``, ``.csv`` or ``.csv.gz``."""
    name = Path(path).name.lower()
    with atomic_path(path) as tmp:
        if name.endswith(".parquet"):
            frame.to_parquet(tmp, index=False)
        elif name.endswith((".csv", ".csv.gz")):
            frame.to_csv(tmp, index=False, compression="gzip" if name.endswith(".gz") else None)
        else:
            raise ValueError(f"{path}: unknown table format (expected .parquet, .csv or .csv.gz)")
    return Path(path)


def atomic_write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write arrays to an uncompressed ``.npz`` atomically (read back with ``np.load(allow_pickle=False)``)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


# ------------------------------------------------------------------------------------------ identities
def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default, sort_keys=True))


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """A 16-hex-digit SHA-256 fingerprint of a configuration (key order does not matter).

    Examples
    --------
    >>> config_fingerprint({"a": 1, "b": [2, 3]}) == config_fingerprint({"b": [2, 3], "a": 1})
    True
    """
    text = json.dumps(_jsonable(dict(config)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (identifies an input such as a model checkpoint in a manifest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(piece)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ outputs
def check_output_folder(path: str | Path, *, name: str = "--out") -> Path:
    """Refuse an output folder path that is a file (or lies under one); nothing is created."""
    p = Path(path).expanduser()
    for part in (p, *p.parents):
        if part.exists():
            if not part.is_dir():
                raise UserError(f"{name} {p}: {part} is a file, not a folder; give a folder path")
            break
    return p


def claim_output(path: str | Path, job: Job | None = None, *, overwrite: bool = False) -> Path:
    """Allow writing ``path`` only if that replaces nothing the caller did not create.

    With a ``job``, files the job created earlier (in this run or an interrupted one) may be replaced; see
    :meth:`Job.claim`. Without one, an existing file is refused unless ``overwrite``.

    Raises
    ------
    OutputExistsError : ``path`` exists, was not created by ``job`` and ``overwrite`` is False.
    UserError : ``path`` is a folder.

    Examples
    --------
    >>> import tempfile
    >>> report = Path(tempfile.mkdtemp()) / "report.json"
    >>> _ = atomic_write_json(claim_output(report), {"score": 1})
    >>> claim_output(report)
    Traceback (most recent call last):
    ...
    shared.jobs.OutputExistsError: ... exists; pass --overwrite to replace it, or choose another output
    """
    if job is not None:
        return job.claim(path, overwrite=overwrite)
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{p} is a folder; give a file path")
    check_output_folder(p.parent, name="the folder of")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p} exists; pass --overwrite to replace it, or choose another output")
    return p


# ------------------------------------------------------------------------------------------ lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Lock:
    """``<bookkeeping>/lock``: created with ``O_CREAT | O_EXCL``; holds JSON host/pid/start/command."""

    def __init__(self, path: Path, command: str, output: Path) -> None:
        self.path = path
        self.output = output
        self.text = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": _now(),
                "command": command,
                "token": os.urandom(8).hex(),
            }
        )

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(self.text)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _holder(self) -> tuple[str | None, dict]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None, {}
        try:
            return text, json.loads(text)
        except json.JSONDecodeError:  # a holder still writing it, or a crash between create and write
            return text, {}

    def _break_stale(self, stale_text: str) -> None:
        # rename, not unlink: if another process broke the lock and took it in between, we would have moved
        # its fresh lock; then we put it back (link fails if a third process already holds the name)
        grave = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        if grave.read_text() != stale_text:
            with contextlib.suppress(FileExistsError):
                os.link(grave, self.path)
        grave.unlink()

    def acquire(self, *, wait: bool, poll_s: float, timeout_s: float | None) -> None:
        started = time.monotonic()
        announced = False
        while not self._try_create():
            text, holder = self._holder()
            if text is None:  # released in between: try again
                continue
            if not holder:  # being written by a starting run, or left empty by one that died doing so
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - self.path.stat().st_mtime > 10:
                        warnings.warn(f"taking over the unreadable lock {self.path}", stacklevel=3)
                        self._break_stale(text)
                time.sleep(0.05)
                continue
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
                f"({holder.get('command')})"
            )
            pid = holder.get("pid")
            if holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
                warnings.warn(
                    f"taking over the lock {self.path} left by {who}, which is no longer running", stacklevel=3
                )
                self._break_stale(text)
                continue
            if not wait:
                raise JobLockedError(
                    f"{self.output} is in use by {who}; pass --wait to wait for it, or, if that run "
                    f"is dead (another host cannot be checked), delete {self.path}"
                )
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise JobLockedError(f"gave up after {timeout_s:.0f} s waiting for {who} to release {self.path}")
            if not announced:
                print(f"waiting for {who} to release {self.path} ...", flush=True)
                announced = True
            time.sleep(poll_s)

    def release(self) -> None:
        text, _ = self._holder()
        if text == self.text:
            self.path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ the job
@dataclass
class UnitReport:
    """Outcome of :meth:`Job.run_units`: units done now, skipped (done earlier), failed (key -> error) and
    not attempted (the run stopped after repeated failures)."""

    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    not_attempted: list[str] = field(default_factory=list)
    folder: Path | None = None

    def raise_if_incomplete(self) -> None:
        """Raise :class:`JobIncompleteError` (one line: counts, first error, where the records are)."""
        if not self.failed and not self.not_attempted:
            return
        key, error = next(iter(self.failed.items()))
        total = self.done + self.skipped + len(self.failed) + len(self.not_attempted)
        extra = f", {len(self.not_attempted)} not attempted" if self.not_attempted else ""
        raise JobIncompleteError(
            f"{len(self.failed)} of {total} units failed{extra} (first: {key}: {error}); the errors are in "
            f"{self.folder}; rerun the same command to retry them (done units are kept)"
        )


class Job:
    """A resumable job writing into one output folder; create it with :func:`open_job`.

    Parameters
    ----------
    root : the output folder (created). Its ``.job/`` subfolder holds the bookkeeping.
    command : what made it, e.g. ``"phenotypic simulate"``; part of the identity of the job.
    config : plain values that determine the output (settings, input paths, checkpoint hashes).
    overwrite : the user passed ``--overwrite``: existing files may be replaced and a job with other
        settings in ``root`` is restarted (its done-markers are cleared; its files stay until replaced).
    bookkeeping : where the bookkeeping lives, relative to ``root`` (default ``.job``). A job writing several
        arrays of one zarr container keeps it inside one of them (``fragments/0/.job``), where zarr ignores
        it, while its claims still cover the whole container.
    """

    def __init__(
        self,
        root: str | Path,
        command: str,
        config: Mapping[str, Any],
        *,
        overwrite: bool = False,
        bookkeeping: str = BOOKKEEPING,
    ) -> None:
        self.root = check_output_folder(root).absolute()  # paths it returns stay valid whatever the cwd
        self.command = command
        self.config = _jsonable(dict(config))
        self.fingerprint = config_fingerprint(self.config)
        self.overwrite = overwrite
        if Path(bookkeeping).is_absolute() or ".." in Path(bookkeeping).parts:
            raise ValueError(f"bookkeeping {bookkeeping!r} must be a path inside the output folder")
        self.folder = self.root / bookkeeping
        self.resumed = False
        self._claims: set[str] = set()
        self._lock: _Lock | None = None

    # ---- lifecycle
    def open(self, *, wait: bool = False, poll_s: float = 2.0, timeout_s: float | None = None) -> Job:
        """Create the folder, take the lock, then check or write the manifest. Returns ``self``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(self.folder / "lock", self.command, self.root)
        self._lock.acquire(wait=wait, poll_s=poll_s, timeout_s=timeout_s)
        try:
            self._check_manifest()
            claims = self.folder / "claims"
            self._claims = set(claims.read_text().splitlines()) if claims.exists() else set()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the lock (bookkeeping stays: it is what makes a rerun resume)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_manifest(self) -> None:
        path = self.folder / "manifest.json"
        manifest = {"command": self.command, "fingerprint": self.fingerprint, "config": self.config}
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError:
                old = {}
            if old.get("command") == self.command and old.get("fingerprint") == self.fingerprint:
                self.resumed = True
                return
            if not self.overwrite:
                raise JobConfigError(self._mismatch(old))
        elif self.done_units() and not self.overwrite:
            # done-markers whose settings are unknown must not count as done for whatever settings come now
            raise JobConfigError(
                f"{self.root} holds finished units but no {path.name} (deleted?), so the settings that made "
                "them are unknown; choose another output folder, or pass --overwrite to start over there"
            )
        if self.overwrite:
            for sub in ("done", "failed"):
                for marker in (self.folder / sub).glob("*") if (self.folder / sub).is_dir() else ():
                    marker.unlink()
        atomic_write_json(path, {**manifest, "created": _now()})

    def _mismatch(self, old: dict) -> str:
        if old.get("command") != self.command:
            what = f"the output of `{old.get('command', 'an unreadable job')}`"
        else:
            before = old.get("config", {})
            diff = [
                f"{k}: {before.get(k)!r} -> {self.config.get(k)!r}"
                for k in sorted(set(before) | set(self.config))
                if before.get(k) != self.config.get(k)
            ]
            what = f"a `{self.command}` job with other settings ({'; '.join(diff)[:400]})"
        return (
            f"{self.root} holds {what}; choose another output folder, or pass --overwrite to start over "
            f"there (files are replaced as they are rewritten)"
        )

    # ---- the overwrite rule
    def _relative(self, path: str | Path) -> str:
        p = Path(path)
        p = p if p.is_absolute() else self.root / p
        try:
            return p.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError as err:
            raise ValueError(f"{p} is outside the job's output folder {self.root}") from err

    def _owned(self, rel: str) -> bool:
        parts = rel.split("/")
        return any("/".join(parts[:i]) in self._claims for i in range(1, len(parts) + 1))

    def claim(self, *paths: str | Path, overwrite: bool | None = None) -> Path:
        """Record that this job writes ``paths`` (files, or folders it fills); refuse foreign files.

        A path may be written when it does not exist yet, when this job claimed it (or a folder above it)
        before, in this run or an interrupted one, or when ``--overwrite`` was given. Claims are appended to
        ``.job/claims`` (fsynced) before anything is written. Returns the last path, inside ``root``.
        """
        overwrite = self.overwrite if overwrite is None else overwrite
        new = []
        for path in paths:
            rel = self._relative(path)
            if self._owned(rel):
                continue
            full = self.root / rel
            if full.exists() and not overwrite:
                raise OutputExistsError(
                    f"{full} exists and was not written by this `{self.command}` job; pass --overwrite to "
                    "replace it, or choose another output folder"
                )
            new.append(rel)
        if new:
            with open(self.folder / "claims", "a") as f:
                f.write("".join(f"{rel}\n" for rel in new))
                f.flush()
                os.fsync(f.fileno())
            self._claims.update(new)
        return self.root / self._relative(paths[-1])

    def write_bytes(self, path: str | Path, data: bytes) -> Path:
        """Claim and atomically write a file (``path`` relative to the output folder, or inside it)."""
        return atomic_write_bytes(self.claim(path), data)

    def write_text(self, path: str | Path, text: str) -> Path:
        return atomic_write_text(self.claim(path), text)

    def write_json(self, path: str | Path, obj: Any) -> Path:
        return atomic_write_json(self.claim(path), obj)

    def write_table(self, path: str | Path, frame) -> Path:
        return atomic_write_table(self.claim(path), frame)

    def write_npz(self, path: str | Path, **arrays: np.ndarray) -> Path:
        return atomic_write_npz(self.claim(path), **arrays)

    # ---- units
    @staticmethod
    def _check_key(key: str) -> str:
        if not _UNIT_KEY.fullmatch(key):
            raise ValueError(
                f"unit key {key!r} must be 1-200 of A-Z a-z 0-9 . _ = + - (not starting with one of the last five)"
            )
        return key

    def done_units(self) -> set[str]:
        """Keys of the units whose done-marker exists (one directory listing)."""
        folder = self.folder / "done"
        return set(os.listdir(folder)) if folder.is_dir() else set()

    def failed_units(self) -> dict[str, dict]:
        """Recorded failures that are not done since: key -> record (error, traceback, attempts, time)."""
        folder, done = self.folder / "failed", self.done_units()
        if not folder.is_dir():
            return {}
        out = {}
        for p in sorted(folder.glob("*.json")):
            if p.stem not in done:
                with contextlib.suppress(json.JSONDecodeError):
                    out[p.stem] = json.loads(p.read_text())
        return out

    def is_done(self, key: str) -> bool:
        return (self.folder / "done" / self._check_key(key)).exists()

    def mark_done(self, key: str) -> None:
        """Write the unit's done-marker (call it only after the unit's outputs are in place)."""
        atomic_write_bytes(self.folder / "done" / self._check_key(key), b"")
        (self.folder / "failed" / f"{key}.json").unlink(missing_ok=True)

    def mark_failed(self, key: str, error: BaseException) -> str:
        """Record a unit's failure under ``failed/<key>.json``; returns the one-line error."""
        path = self.folder / "failed" / f"{self._check_key(key)}.json"
        attempts = 1
        if path.exists():
            with contextlib.suppress(json.JSONDecodeError, KeyError):
                attempts += int(json.loads(path.read_text())["attempts"])
        line = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        atomic_write_json(
            path, {"error": line, "attempts": attempts, "time": _now(), "traceback": traceback.format_exception(error)}
        )
        return line

    def run_units(
        self,
        keys: Sequence[str],
        work: Callable[[str], Any],
        *,
        stop_after: int | None = 3,
        progress: Callable[[Sequence[str]], Any] | None = None,
    ) -> UnitReport:
        """Run ``work(key)`` for every unit not done yet; each failure is recorded and the next unit runs.

        Parameters
        ----------
        keys : unit keys (file-name safe; stable across reruns, e.g. from grid positions).
        work : writes the unit's outputs (through :meth:`claim` / ``write_*``); its return value is ignored.
            A refused claim (:class:`OutputExistsError`) stops the run instead of failing the unit.
        stop_after : stop after this many failures in a row with no success in this run (a broken setup
            should not burn the whole grid); ``None`` never stops.
        progress : optional wrapper for the pending keys, e.g. ``tqdm``.

        Returns
        -------
        :class:`UnitReport`; call :meth:`UnitReport.raise_if_incomplete` to turn failures into an error.
        """
        keys = [self._check_key(k) for k in keys]
        if len(set(keys)) != len(keys):
            raise ValueError("unit keys must be unique")
        done = self.done_units()
        report = UnitReport(skipped=sum(k in done for k in keys), folder=self.folder / "failed")
        pending = [k for k in keys if k not in done]
        streak = 0
        for i, key in enumerate(progress(pending) if progress else pending):
            try:
                work(key)
            except (OutputExistsError, JobConfigError, JobLockedError):
                raise  # about the whole output, not this unit: stop and tell the user
            except Exception as err:  # contained: recorded, retried on the next run
                report.failed[key] = self.mark_failed(key, err)
                streak += 1
                if stop_after is not None and report.done == 0 and streak >= stop_after:
                    report.not_attempted = pending[i + 1 :]
                    break
                continue
            self.mark_done(key)
            report.done += 1
            streak = 0
        return report


def open_job(
    root: str | Path,
    command: str,
    config: Mapping[str, Any],
    *,
    overwrite: bool = False,
    wait: bool = False,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
    bookkeeping: str = BOOKKEEPING,
) -> Job:
    """Open (create or resume) the job writing into ``root``: take its lock, check its manifest.

    Use as a context manager so the lock is released however the job ends. Validate every input
    before calling this: it creates ``root``.

    Raises
    ------
    UserError : ``root`` is a file.
    JobLockedError : another live run holds the lock (and ``wait`` is False).
    JobConfigError : ``root`` holds another command's output, or this command's with other settings, and
        ``overwrite`` is False.
    """
    return Job(root, command, config, overwrite=overwrite, bookkeeping=bookkeeping).open(
        wait=wait, poll_s=poll_s, timeout_s=timeout_s
    )


def reopen_job(root: str | Path, command: str, *, wait: bool = False) -> Job:
    """Open the ``command`` job that already lives in ``root`` with its recorded settings, e.g. to redo a
    cheap final step (fits, plots) without repeating the settings on the command line.

    Raises
    ------
    JobConfigError : ``root`` holds no job, or another command's.
    """
    path = Path(root) / BOOKKEEPING / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError) as err:
        raise JobConfigError(f"{root} holds no `{command}` output ({path} is missing or unreadable)") from err
    if manifest.get("command") != command:
        raise JobConfigError(f"{root} holds the output of `{manifest.get('command')}`, not of `{command}`")
    return open_job(root, command, manifest["config"], wait=wait)
