"""The one CLI layer shared by ``connectomics``, ``phenotypic``, ``rldiag`` and ``python -m shared.alignment``.

* A console command is a set of subcommands, each a function ``run(argv: list[str]) -> int | None`` living
  in its package's ``cli.py`` and imported only when chosen (so ``--help`` is fast): :func:`run_subcommands`.
* Options come from config dataclasses, one ``--option`` per field, the field's docstring as its help:
  :func:`add_dataclass_arguments` and :func:`dataclass_from_args`.
* User errors are caught in one place (:func:`run_subcommands`): :class:`UserError`, ``ValueError`` and
  ``OSError`` print as one line ``prog: error: ...`` with exit code 2; ``--verbose`` (anywhere on the
  command line) also prints the traceback. Other exceptions are bugs and keep their traceback.
* Output options: :func:`add_output_arguments` (``--overwrite``, ``--wait``), enforced by :mod:`shared.jobs`.
* Training subcommands (``fit``, ``validate``, ``test``, ``predict``) go through :func:`lightning_cli`, i.e.
  LightningCLI with YAML configs: ``connectomics fit --config configs/connectomics/gammanet.yaml``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib
import inspect
import json
import sys
import textwrap
import traceback
import types
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERBOSE_FLAG = "--verbose"


class UserError(Exception):
    """A mistake in a command's input or environment; shown as one line and exit code :attr:`exit_code`."""

    exit_code = 2


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, OSError)
"""Exceptions that mean "the input is wrong" rather than "the code is wrong"."""


def error_line(err: BaseException) -> str:
    """One line for an exception: the message with its whitespace collapsed (``OSError`` as
    ``strerror: filename``), at most 600 characters.

    Examples
    --------
    >>> error_line(ValueError("bad\\n  value"))
    'bad value'
    >>> error_line(FileNotFoundError(2, "No such file or directory", "x.ckpt"))
    'No such file or directory: x.ckpt'
    """
    if isinstance(err, OSError) and not isinstance(err, UserError) and err.strerror and err.filename:
        text = f"{err.strerror}: {err.filename}"
    else:
        text = str(err) or type(err).__name__
    text = " ".join(text.split())
    return text if len(text) <= 600 else text[:597] + "..."


@dataclass(frozen=True)
class Subcommand:
    """A subcommand: ``target`` is ``"package.module:function"``; ``help`` is one line for the manual;
    ``cache_help``: its ``--help`` takes seconds (LightningCLI imports Lightning to build it), so the text is
    kept by :func:`cached_help`."""

    target: str
    help: str
    cache_help: bool = False


def run_guarded(prog: str, func: Callable[[list[str]], int | None], argv: Sequence[str]) -> int:
    """Call ``func(argv)`` and turn user errors into one line on stderr and their exit code (2).

    ``--verbose`` in ``argv`` adds the traceback. ``KeyboardInterrupt`` exits 130 with a hint to resume.
    """
    argv = list(argv)
    try:
        return int(func(argv) or 0)
    except USER_ERRORS as err:
        if VERBOSE_FLAG in argv:
            traceback.print_exc()
        hint = "" if VERBOSE_FLAG in argv else f" (add {VERBOSE_FLAG} for the traceback)"
        print(f"{prog}: error: {error_line(err)}{hint}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def run_subcommands(
    prog: str,
    description: str,
    subcommands: dict[str, Subcommand],
    argv: Sequence[str] | None = None,
    epilog: str = "",
) -> int:
    """Dispatch ``prog SUBCOMMAND [args...]`` to the subcommand's function (through :func:`run_guarded`),
    with a manual-like ``--help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    width = max(len(n) for n in subcommands)
    listing = "\n".join(f"  {name:<{width}}  {sc.help}" for name, sc in subcommands.items())
    manual = (
        f"{description}\n\nsubcommands:\n{listing}\n\nRun '{prog} SUBCOMMAND --help' for its options; "
        f"add {VERBOSE_FLAG} to see the traceback of an error."
    )
    if epilog:
        manual += f"\n\n{epilog}"
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: {prog} SUBCOMMAND [options]\n\n{manual}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in subcommands:
        print(f"{prog}: unknown subcommand {name!r}; choose from {', '.join(subcommands)}", file=sys.stderr)
        return 2
    module_name, func_name = subcommands[name].target.split(":")

    def run() -> int:
        return run_guarded(f"{prog} {name}", getattr(importlib.import_module(module_name), func_name), rest)

    if subcommands[name].cache_help and help_cache_file(f"{prog} {name}", rest) is not None:
        return cached_help(f"{prog} {name}", rest, run)
    return run()


# ------------------------------------------------------------------------------------------ --help cache
HELP_FLAGS = ("-h", "--help")
_PROJECT_PACKAGES = ("shared", "connectomics", "phenotypic", "rldiag")


def _help_key(prog: str, argv: Sequence[str]) -> str:
    """Everything the text of a help depends on: the command, the terminal width, Python, every installed
    distribution's version (Lightning, jsonargparse, torch, ...) and the source of the project's packages."""
    import hashlib
    import os
    import shutil

    digest = hashlib.sha256(
        json.dumps(
            [
                prog,
                list(argv),
                shutil.get_terminal_size().columns,
                sys.version,
                sys.executable,
                os.environ.get("COLUMNS"),
            ]
        ).encode()
    )
    for entry in sys.path:
        if os.path.isdir(entry):
            digest.update(" ".join(sorted(n for n in os.listdir(entry) if n.endswith(".dist-info"))).encode())
    root = Path(__file__).resolve().parents[1]
    for package in _PROJECT_PACKAGES:
        for source in sorted((root / package).rglob("*.py")):
            digest.update(str(source.relative_to(root)).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:32]


def help_cache_file(prog: str, argv: Sequence[str]) -> Path | None:
    """The file that keeps the ``--help`` text of ``prog argv``, or None if ``argv`` is not a plain help
    request (``--help``, or ``SUBCOMMAND --help``, nothing else: a ``--config`` would change the defaults
    shown). The cache lives in ``$XDG_CACHE_HOME/recurrent-vision/help`` (default ``~/.cache``); set
    ``RV_HELP_CACHE=0`` to turn it off.

    Examples
    --------
    >>> help_cache_file("phenotypic fit", ["--config", "x.yaml", "--help"]) is None
    True
    """
    import os

    argv = list(argv)
    plain = argv in (["-h"], ["--help"]) or (len(argv) == 2 and argv[1] in HELP_FLAGS and argv[0][:1] != "-")
    if not plain or os.environ.get("RV_HELP_CACHE", "1") == "0":
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "recurrent-vision" / "help" / f"{_help_key(prog, argv)}.txt"


def cached_help(prog: str, argv: Sequence[str], render: Callable[[], int | None]) -> int:
    """Print the help that ``render()`` prints for ``prog argv``: from :func:`help_cache_file` when it holds
    it (a fraction of a second instead of Lightning's import), else by running ``render()`` and keeping its
    exact output for next time. The text is the same either way; any change of the project's source, an
    installed package or the terminal width renders it afresh."""
    import contextlib
    import io

    path = help_cache_file(prog, argv)
    if path is not None and path.is_file():
        sys.stdout.write(path.read_text())
        return 0
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            code = render()
        except SystemExit as stop:  # argparse/jsonargparse exit after printing the help
            code = stop.code
    text = buffer.getvalue()
    sys.stdout.write(text)
    if path is not None and code in (0, None) and text:
        from shared.jobs import atomic_write_text

        with contextlib.suppress(OSError):  # a read-only home only costs the speed-up
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
    return int(code or 0)


def subcommand_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the house formatting (defaults shown, description kept as written) and
    the ``--verbose`` flag that :func:`run_guarded` reads."""

    class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Show defaults and keep the description's own line breaks (examples stay readable)."""

    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_Formatter)
    parser.add_argument(VERBOSE_FLAG, action=_ReadByRunGuarded, help="on an error, also print the traceback")
    return parser


class _ReadByRunGuarded(argparse.Action):
    """Accept a flag that :func:`run_guarded` reads from argv, without adding it to the parsed namespace
    (subcommands that turn the namespace into a config never see it)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        """Nothing to store."""


def add_output_arguments(parser: argparse.ArgumentParser, *, wait: bool = True) -> None:
    """``--overwrite`` (and ``--wait`` for outputs that take a lock): the switches :mod:`shared.jobs`
    enforces."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs that this command did not create (never needed to resume "
        "an interrupted run of the same command)",
    )
    if wait:
        parser.add_argument(
            "--wait",
            action="store_true",
            help="if another run is writing the same output, wait for it instead of stopping",
        )


# ------------------------------------------------------------------------------------------ dataclasses
@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (``x: int = 1`` then ``\"\"\"help\"\"\"``, read from the
    class's source file, through its bases); a field's ``metadata["help"]`` wins (and is the only source for
    classes without a source file).

    Examples
    --------
    >>> @dataclass
    ... class Config:
    ...     steps: int = dataclasses.field(default=10, metadata={"help": "optimiser steps"})
    >>> field_docs(Config)
    {'steps': 'optimiser steps'}
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    for f in dataclasses.fields(cls):
        if "help" in f.metadata:
            docs[f.name] = f.metadata["help"]
    return {f.name: docs[f.name] for f in dataclasses.fields(cls) if f.name in docs}


def json_object(text: str) -> dict:
    """Parse an option's value as a JSON object (an ``argparse`` type: other input is a usage error).

    Examples
    --------
    >>> json_object('{"hidden": 32}')
    {'hidden': 32}
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")
    return parse_or_none


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, exclude: Sequence[str] = ()) -> None:
    """One ``--option`` per field of dataclass ``cls`` (``n_steps`` -> ``--n-steps``), help from
    :func:`field_docs`, defaults shown, ``dest`` the field name.

    Types: ``bool`` (``--x/--no-x``), ``int``, ``float``, ``str``, ``Literal[...]`` (choices), ``list[T]``
    (space-separated values), ``dict`` (a JSON object) and ``T | None`` (``none`` gives None). A field with
    no default is a required option.

    A field's ``metadata`` may override the generated option: ``flag`` (its name, e.g. ``"--block"`` for
    ``block_shape``), ``choices``, ``metavar``, and ``parse`` with ``show``: the option's text is parsed by
    ``parse`` and the default is shown (and parsed) as ``show(default)``, e.g. a shape as ``64,256,256``.

    Examples
    --------
    >>> @dataclass
    ... class Blocks:
    ...     block: tuple[int, ...] = dataclasses.field(default=(4, 8), metadata={
    ...         "parse": lambda text: tuple(map(int, text.split(","))), "show": lambda v: ",".join(map(str, v)),
    ...         "help": "block shape Y,X"})
    >>> parser = argparse.ArgumentParser()
    >>> add_dataclass_arguments(parser, Blocks)
    >>> dataclass_from_args(Blocks, parser.parse_args(["--block", "2,3"])), dataclass_from_args(Blocks, {})
    (Blocks(block=(2, 3)), Blocks(block=(4, 8)))
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        hint = hints[f.name]
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": f.name, "help": docs.get(f.name, "")}
        kwargs.update({k: f.metadata[k] for k in ("choices", "metavar") if k in f.metadata})
        if "flag" in f.metadata:  # "--block" shows BLOCK, not the field's name
            kwargs.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
        if f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kwargs["default"] = f.default_factory()
        else:
            kwargs["required"] = True
        if "parse" in f.metadata:
            if "default" in kwargs:  # argparse parses a string default like the user's text
                kwargs["default"] = f.metadata.get("show", str)(kwargs["default"])
            parser.add_argument(flag, type=f.metadata["parse"], **kwargs)
            continue
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
        if optional:
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if origin is typing.Literal:
            kwargs["choices"] = list(typing.get_args(hint))
            parse = type(kwargs["choices"][0])
        elif origin is list:
            (item,) = typing.get_args(hint) or (str,)
            kwargs["nargs"] = "+"
            parse = item
        elif hint is dict or origin is dict:
            kwargs["metavar"] = "JSON"
            parse = json_object
        elif hint in (int, float, str):
            parse = hint
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line parser for type {hint!r}")
        parser.add_argument(flag, type=_optional(parse) if optional else parse, **kwargs)


def dataclass_from_args(cls: type, args: argparse.Namespace | dict) -> Any:
    """Build ``cls`` from the parsed options that :func:`add_dataclass_arguments` added (others ignored)."""
    values = vars(args) if isinstance(args, argparse.Namespace) else args
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.init and f.name in values})


# ------------------------------------------------------------------------------------------ LightningCLI
def _option_value(args: Sequence[str], flag: str) -> str | None:
    """The value of ``flag VALUE`` or ``flag=VALUE`` in ``args`` (the last one wins), else None."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


RUN_FILES = ("config.yaml", "hparams.yaml", "metrics.csv", "events.out.tfevents.*", "checkpoints/*.ckpt")
"""What ``fit`` writes into its run folder (``trainer.default_root_dir``): the files an existing run is
recognised by and the only ones ``--overwrite`` deletes."""


def run_folder_files(run: str | Path) -> list[Path]:
    """The files of an earlier ``fit`` in run folder ``run`` (see :data:`RUN_FILES`), sorted.

    Examples
    --------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> run_folder_files(run)
    []
    >>> (run / "checkpoints").mkdir(); (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    0
    >>> [p.name for p in run_folder_files(run)]
    ['last.ckpt']
    """
    run = Path(run)
    return sorted(f for pattern in RUN_FILES for f in run.glob(pattern) if f.is_file())


def claim_run_folder(run: str | Path, *, resume: bool, overwrite: bool) -> Path:
    """Allow ``fit`` to write into run folder ``run`` under :mod:`shared.jobs`' rule: an earlier run there is
    continued only on an explicit resume (``--ckpt_path``) and replaced only with ``--overwrite``, which
    deletes its :data:`RUN_FILES` (nothing else) first.

    Raises
    ------
    OutputExistsError : ``run`` holds an earlier run and neither ``resume`` nor ``overwrite`` is set.
    UserError : ``run`` is a file.

    Examples
    --------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp()) / "run"
    >>> claim_run_folder(run, resume=False, overwrite=False) == run
    True
    >>> _ = run.mkdir(), (run / "config.yaml").write_text("seed_everything: 0")
    >>> claim_run_folder(run, resume=False, overwrite=False)
    Traceback (most recent call last):
    ...
    shared.jobs.OutputExistsError: ... holds an earlier run (config.yaml); resume it with --ckpt_path ...
    >>> claim_run_folder(run, resume=False, overwrite=True) == run and not (run / "config.yaml").exists()
    True
    """
    from shared.jobs import OutputExistsError, check_output_folder

    run = Path(run)
    check_output_folder(run, name="trainer.default_root_dir")
    earlier = run_folder_files(run)
    if not earlier or resume:
        return run
    if not overwrite:
        names = ", ".join(str(f.relative_to(run)) for f in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        last = run / "checkpoints" / "last.ckpt"
        raise OutputExistsError(
            f"{run} holds an earlier run ({names}); resume it with --ckpt_path {last if last.exists() else 'CKPT'}, "
            "pass --overwrite to replace it, or choose another --trainer.default_root_dir"
        )
    for f in earlier:
        f.unlink()
    return run


def lightning_cli(
    model_class: type, datamodule_class: type, args: Sequence[str] | None = None, run: bool = True, **kwargs: Any
):
    """LightningCLI with the project's defaults: YAML configs, seeding on by default, no subclass magic, and
    one folder per training run.

    ``fit`` writes everything into its run folder ``trainer.default_root_dir`` (every config in ``configs/``
    sets one): ``config.yaml`` (the resolved config), the logger's files (TensorBoard), and ``checkpoints/``
    with ``last.ckpt`` (a ``ModelCheckpoint(save_last=True)`` is added unless a configured one has
    ``save_last``; configured ones without ``dirpath`` write there too). A run folder that already
    holds a run is refused unless ``--ckpt_path`` resumes it or ``--overwrite`` replaces it
    (:func:`claim_run_folder`). ``validate``/``test``/``predict`` keep Lightning's versioned
    ``lightning_logs/version_N`` folders. ``args`` lets tests and scripts call it in-process; ``--verbose``
    (read by :func:`run_guarded`) is removed from them.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import TensorBoardLogger
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    class _ProjectCLI(LightningCLI):
        def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kw: Any):
            parser = super()._prepare_subcommand_parser(klass, subcommand, **kw)
            if subcommand == "fit":
                parser.add_argument(
                    "--overwrite",
                    action="store_true",
                    help="replace the earlier run in trainer.default_root_dir (its config.yaml, "
                    "logs and checkpoints/*.ckpt are deleted first); without it, and without "
                    "--ckpt_path to resume, a run folder that holds a run is refused",
                )
            return parser

        def add_arguments_to_parser(self, parser) -> None:
            # resuming (`--ckpt_path`) reads checkpoints weights-only unless the user explicitly says otherwise
            if any(getattr(a, "dest", None) == "weights_only" for a in parser._actions):
                parser.set_defaults({"weights_only": True})

        def parse_arguments(self, parser, args) -> None:
            super().parse_arguments(parser, args)
            config = self.config.get(str(self.config.get("subcommand")))
            if config is None or self.config.subcommand != "fit" or config.trainer.default_root_dir is None:
                return
            if rank_zero_only.rank != 0:  # DDP's other processes rerun the command into rank 0's fresh run
                return
            # checked before anything runs (seeding prints, data is simulated): refusing costs nothing
            claim_run_folder(
                config.trainer.default_root_dir,
                resume=bool(config.get("ckpt_path")),
                overwrite=bool(config.get("overwrite")),
            )
            config.overwrite = False  # kept out of the saved config.yaml: rerunning a saved config never deletes

        def instantiate_trainer(self, **kw: Any):
            config = self.config_init.get(str(self.subcommand), self.config_init)
            root = config["trainer"].get("default_root_dir")
            if self.subcommand != "fit" or root is None:
                return super().instantiate_trainer(**kw)
            run_dir = Path(root)
            if config["trainer"].get("logger") in (None, True):
                # the run folder itself is the log dir (not lightning_logs/version_N), so the checkpoint path
                # the docs give is the one written: <run>/checkpoints/last.ckpt
                kw.setdefault("logger", TensorBoardLogger(save_dir=str(run_dir), name="", version=""))
            callbacks = list(config["trainer"].get("callbacks") or [])
            checkpointing = config["trainer"].get("enable_checkpointing") is not False
            if checkpointing and not any(isinstance(c, ModelCheckpoint) and c.save_last for c in callbacks):
                kw.setdefault("callbacks", [*callbacks, ModelCheckpoint(save_last=True)])
            if config.get("ckpt_path"):  # an explicit resume continues the checkpoints folder on purpose
                warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            return super().instantiate_trainer(**kw)

    # console commands forward their own argv here, so Lightning's "args and sys.argv both given" warning is noise
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    kwargs.setdefault("save_config_kwargs", {"overwrite": True})
    kwargs.setdefault("seed_everything_default", 0)
    args = None if args is None else [a for a in args if a != VERBOSE_FLAG]
    resume_from = _option_value(args or [], "--ckpt_path")
    if resume_from is not None and resume_from not in ("best", "last", "hpc", "registry"):
        from shared.checkpoints import load_checkpoint

        load_checkpoint(resume_from)  # an empty, truncated or hostile file fails here, in one line
    return _ProjectCLI(model_class, datamodule_class, args=args, run=run, **kwargs)
