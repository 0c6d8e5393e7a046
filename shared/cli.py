"""Console-command plumbing shared by ``connectomics``, ``phenotypic`` and ``rldiag``.

A console command is a set of subcommands, each a function ``run(argv: list[str]) -> int | None`` living in
the module that does the work and imported only when chosen (so ``--help`` is fast). Training subcommands
(``fit``, ``validate``, ``test``, ``predict``) go through :func:`lightning_cli`, i.e. LightningCLI with YAML
configs: ``connectomics fit --config configs/connectomics/gammanet.yaml``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Subcommand:
    """A subcommand: ``target`` is ``"package.module:function"``; ``help`` is one line for the manual."""

    target: str
    help: str


def run_subcommands(
    prog: str, description: str, subcommands: dict[str, Subcommand], argv: Sequence[str] | None = None,
    epilog: str = "",
) -> int:
    """Dispatch ``prog SUBCOMMAND [args...]`` to the subcommand's function, with a manual-like ``--help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    width = max(len(n) for n in subcommands)
    listing = "\n".join(f"  {name:<{width}}  {sc.help}" for name, sc in subcommands.items())
    manual = f"{description}\n\nsubcommands:\n{listing}\n\nRun '{prog} SUBCOMMAND --help' for its options."
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
    func = getattr(importlib.import_module(module_name), func_name)
    result = func(rest)
    return int(result or 0)


def subcommand_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the house formatting (defaults shown, description kept as written)."""

    class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Show defaults and keep the description's own line breaks (examples stay readable)."""

    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=_Formatter)


def lightning_cli(model_class: type, datamodule_class: type, args: Sequence[str] | None = None,
                  run: bool = True, **kwargs: Any):
    """LightningCLI with the project's defaults: YAML configs, the resolved config saved beside the logs,
    seeding on by default, and no subclass magic. ``args`` lets tests and scripts call it in-process."""
    from lightning.pytorch.cli import LightningCLI

    class _SafeCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            # resuming (`--ckpt_path`) reads checkpoints weights-only unless the user explicitly says otherwise
            if any(getattr(a, "dest", None) == "weights_only" for a in parser._actions):
                parser.set_defaults({"weights_only": True})

    # console commands forward their own argv here, so Lightning's "args and sys.argv both given" warning is noise
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    kwargs.setdefault("save_config_kwargs", {"overwrite": True})
    kwargs.setdefault("seed_everything_default", 0)
    return _SafeCLI(model_class, datamodule_class, args=None if args is None else list(args), run=run,
                        **kwargs)
