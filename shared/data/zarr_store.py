"""One resumable, config-checked zarr writer and loader for every generated stimulus set.

A set of ``n`` samples is one zarr group: one array per field (first axis = sample), a ``done`` (n_blocks,)
bool array, and the generation parameters in the group's attrs (``format``, ``version``, ``n``, ``seed``,
``block_size``, ``config``). Samples are generated in blocks of ``block_size`` by a picklable
``generate_block(indices) -> {field: array}`` (sample ``i`` depends only on ``(seed, i)``, see
:mod:`shared.data.sampling`), written, then marked done, so an interrupted write resumes where it stopped and
never mixes configurations.

The bookkeeping is a :mod:`shared.jobs` job in ``<first array>/.job/`` (inside an array: zarr 3 warns about
unknown folders at group level): its manifest holds the parameters, its lock stops a second writer (``wait``
waits for it) and its done-markers decide what a rerun skips. A group without that bookkeeping was not created
by this writer and is never written into or deleted unless ``overwrite``; something that is not a group of
this format is never deleted.

Used by :mod:`shared.data.pathfinder` and, through :mod:`shared.data.tracking_video`, by the tracking
generators.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> kind = StoreKind(format_name="demo/squares", title="Squares", writer="write_squares",
...                  arrays=(ArraySpec("values", (2,), "int64", per_sample=False),))
>>> path = Path(tempfile.mkdtemp()) / "squares.zarr"
>>> _ = write_sample_zarr(path, 5, kind=kind, config={"power": 2}, seed=(0,), block_size=2,
...                       generate_block=lambda idx: {"values": np.stack([idx, np.square(idx)], 1)},
...                       progress=False)
>>> attrs, arrays = load_sample_zarr(path, kind=kind, expected_config={"power": 2})
>>> arrays["values"][:, 1].tolist(), attrs["n"]
([0, 1, 4, 9, 16], 5)
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ArraySpec", "StoreKind", "describe_mismatch", "load_sample_zarr", "read_store_attrs", "write_sample_zarr"]


@dataclass(frozen=True)
class ArraySpec:
    """One per-sample field of a store.

    Parameters
    ----------
    name : array name in the group.
    sample_shape : shape of one sample's entry (the array is ``(n, *sample_shape)``).
    dtype : numpy dtype name.
    fill : fill value of unwritten entries.
    per_sample : one chunk per sample (images, videos) rather than one chunk per block (labels, small fields).
    """

    name: str
    sample_shape: tuple[int, ...]
    dtype: str
    fill: Any = 0
    per_sample: bool = True


@dataclass(frozen=True)
class StoreKind:
    """What a store holds and how its messages name it.

    Parameters
    ----------
    format_name : the ``format`` attr that marks a group of this kind (e.g. ``"recurrent-vision/pathfinder"``).
    title : the name used in messages (``"Pathfinder"`` gives "Pathfinder dataset ...").
    writer : the public writer function's name, used in messages ("not written by write_pathfinder_zarr").
    arrays : the fields; the first one's folder holds the job bookkeeping.
    version : format version stored in the attrs.
    job_command : the :mod:`shared.jobs` command name (default ``"<title lower-case> generate"``).
    """

    format_name: str
    title: str
    writer: str
    arrays: tuple[ArraySpec, ...]
    version: int = 1
    job_command: str | None = None

    @property
    def command(self) -> str:
        return self.job_command or f"{self.title.lower()} generate"

    @property
    def job_array(self) -> str:
        return self.arrays[0].name


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def expected_attrs(kind: StoreKind, n: int, config: Mapping[str, Any], seed: tuple[int, ...], block_size: int) -> dict:
    """The attrs a store of ``kind`` generated with these parameters carries."""
    return {
        "format": kind.format_name,
        "version": kind.version,
        "n": int(n),
        "seed": list(seed),
        "block_size": int(block_size),
        "config": _jsonable(dict(config)),
    }


def describe_mismatch(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    """``"key: stored X, requested Y; ..."`` for every parameter that differs ("" when none does)."""
    diffs = []
    for key in ("format", "version", "n", "seed", "block_size"):
        if found.get(key) != expected[key]:
            diffs.append(f"{key}: stored {found.get(key)!r}, requested {expected[key]!r}")
    stored_cfg = found.get("config") or {}
    for key, value in expected["config"].items():
        if stored_cfg.get(key) != value:
            diffs.append(f"config.{key}: stored {stored_cfg.get(key)!r}, requested {value!r}")
    return "; ".join(diffs)


def read_store_attrs(path: Path, kind: StoreKind) -> dict:
    """The attrs of the group at ``path``; ``ValueError`` if it is not a readable group of ``kind``."""
    import zarr

    try:
        group = zarr.open_group(path, mode="r")
    except Exception as err:
        raise ValueError(
            f"{path} exists but is not a readable zarr group ({type(err).__name__}: {err}); refusing to touch it"
        ) from err
    attrs = dict(group.attrs)
    if attrs.get("format") != kind.format_name:
        raise ValueError(
            f"{path} is a zarr group but not a {kind.title} dataset (attrs format "
            f"{attrs.get('format')!r}); refusing to touch it"
        )
    return attrs


def _run_block(generate_block: Callable[[range], Mapping[str, np.ndarray]], indices: range) -> Mapping[str, np.ndarray]:
    return generate_block(indices)


def write_sample_zarr(
    path: str | Path,
    n: int,
    *,
    kind: StoreKind,
    config: Mapping[str, Any],
    seed: tuple[int, ...],
    generate_block: Callable[[range], Mapping[str, np.ndarray]],
    block_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
    num_workers: int = 1,
    wait: bool = False,
) -> Path:
    """Generate a set of ``n`` samples into a zarr group, resumably (see the module docstring).

    Parameters
    ----------
    path : the zarr group (a directory).
    n : number of samples (>= 1).
    kind : the store's fields and names.
    config : plain generation parameters (JSON values); a group with other ones is refused.
    seed : the set's seed tuple.
    generate_block : ``generate_block(range) -> {array name: ndarray of shape (len(range), *sample_shape)}``;
        must be picklable when ``num_workers > 1`` (a module-level function or a ``functools.partial``).
    block_size : samples per resumable block.
    overwrite : delete an existing group of this kind generated with other parameters (or not by this
        writer) and regenerate it; without it such a group is refused. Something that is not a group of
        this kind is never deleted.
    progress : show a tqdm progress bar.
    num_workers : processes generating blocks in parallel (the result does not depend on it).
    wait : if another process is writing ``path``, wait for it instead of refusing.

    Returns
    -------
    path : the resolved group path.

    Raises
    ------
    ValueError : bad arguments; a group with other parameters (:class:`shared.jobs.JobConfigError`), a group
        not written by this writer (:class:`shared.jobs.OutputExistsError`), a group of another kind.
    shared.cli.UserError : ``path`` is a file.
    shared.jobs.JobLockedError : another process is writing ``path`` (and not ``wait``).
    """
    import zarr

    from shared.jobs import BOOKKEEPING, JobConfigError, OutputExistsError, check_output_folder, open_job

    if n < 1 or block_size < 1 or num_workers < 1:
        raise ValueError(f"n, block_size and num_workers must be >= 1, got {n}, {block_size} and {num_workers}")
    path = check_output_folder(Path(path).expanduser().resolve(), name=f"{kind.title} dataset")
    expected = expected_attrs(kind, n, config, seed, block_size)
    job_root = path / kind.job_array
    if path.exists() and any(path.iterdir()):
        found = read_store_attrs(path, kind)  # refuses (and never deletes) what is not a group of this kind
        ours = (job_root / BOOKKEEPING / "manifest.json").exists()
        mismatch = describe_mismatch(found, expected) if ours else f"not written by {kind.writer}"
        if mismatch and not overwrite:
            error = JobConfigError if ours else OutputExistsError
            raise error(
                f"existing {kind.title} dataset at {path} was generated with a different configuration "
                f"({mismatch}); use another path or pass overwrite=True to regenerate it"
            )
        if mismatch:
            shutil.rmtree(path)
    n_blocks = math.ceil(n / block_size)
    with open_job(job_root, kind.command, expected, wait=wait) as job:
        group = zarr.open_group(path, mode="a")  # creates a missing group; never erases
        if "done" not in group:  # created last below, so its absence means the arrays need creating
            for spec in kind.arrays:
                if spec.name not in group:  # one this job created before an interruption is kept
                    chunks = (1, *spec.sample_shape) if spec.per_sample else (block_size, *spec.sample_shape)
                    group.create_array(
                        spec.name, shape=(n, *spec.sample_shape), chunks=chunks, dtype=spec.dtype, fill_value=spec.fill
                    )
            group.create_array("done", shape=(n_blocks,), chunks=(1,), dtype="bool", fill_value=False)
            group.attrs.update(expected)  # attrs last: a group without them is recognisably unfinished
        done = job.done_units()
        todo = [b for b in range(n_blocks) if f"block-{b}" not in done]
        blocks = [range(b * block_size, min((b + 1) * block_size, n)) for b in todo]
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(len(r) for r in blocks), desc=f"{kind.title.lower()} {path.name}", unit="sample")
        with contextlib.ExitStack() as stack:
            if num_workers > 1 and len(blocks) > 1:
                pool = stack.enter_context(ProcessPoolExecutor(num_workers, mp_context=mp.get_context("spawn")))
                results = pool.map(_run_block, [generate_block] * len(blocks), blocks)
            else:
                results = map(_run_block, [generate_block] * len(blocks), blocks)
            for b, rows, data in zip(todo, blocks, results):
                for spec in kind.arrays:
                    group[spec.name][rows.start : rows.stop] = data[spec.name]
                group["done"][b] = True  # for the loader
                job.mark_done(f"block-{b}")  # after the block's data: a crash mid-block redoes only that block
                if bar is not None:
                    bar.update(len(rows))
        if bar is not None:
            bar.close()
    return path


def load_sample_zarr(
    path: str | Path, *, kind: StoreKind, expected_config: Mapping[str, Any] | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a complete group written by :func:`write_sample_zarr` into memory.

    Parameters
    ----------
    path : the group.
    kind : the store's fields and names.
    expected_config : when given, a group generated with another configuration is refused.

    Returns
    -------
    attrs : the group's attrs (``n``, ``seed``, ``block_size``, ``config`` ...).
    arrays : array name -> ndarray of shape (n, *sample_shape).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing path; not a group of this kind; unfinished (interrupted) write; configuration mismatch;
        arrays of inconsistent length.
    """
    import zarr

    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"{kind.title} dataset does not exist: {path}")
    attrs = read_store_attrs(path, kind)
    if expected_config is not None and _jsonable(dict(expected_config)) != attrs.get("config"):
        expected = expected_attrs(kind, attrs["n"], expected_config, tuple(attrs["seed"]), attrs["block_size"])
        raise ValueError(
            f"{kind.title} dataset {path} was generated with a different configuration "
            f"({describe_mismatch(attrs, expected)})"
        )
    group = zarr.open_group(path, mode="r")
    missing = [s.name for s in kind.arrays if s.name not in group] + (["done"] if "done" not in group else [])
    if missing:
        raise ValueError(f"{kind.title} dataset {path} lacks array(s) {missing}; regenerate it")
    done = group["done"][:]
    if not done.all():
        raise ValueError(
            f"{kind.title} dataset {path} is incomplete ({int(done.sum())}/{done.size} blocks "
            f"written); rerun {kind.writer} with the same settings to resume"
        )
    arrays = {s.name: group[s.name][:] for s in kind.arrays}
    bad = {name: a.shape for name, a in arrays.items() if a.shape[0] != attrs["n"]}
    if bad:
        raise ValueError(f"{kind.title} dataset {path} has inconsistent shapes {bad}, expected n={attrs['n']}")
    return attrs, arrays
