"""``python -m shared.pathfinder fit --config configs/pathfinder/hgru.yaml``: LightningCLI for Pathfinder.

Subcommands ``fit``, ``validate``, ``test``, ``predict`` and every LightningCLI option are available, e.g.
``--trainer.max_epochs 5``, ``--model.backbone resnet_small``, ``--data.contour_length 14``,
``--print_config``. ``fit`` writes one folder per run, the trainer's ``default_root_dir``: ``config.yaml``,
TensorBoard logs and ``checkpoints/last.ckpt``; a folder that holds a run is refused unless ``--ckpt_path``
resumes it or ``--overwrite`` replaces it (:func:`shared.cli.lightning_cli`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from shared.cli import cached_help, help_cache_file, lightning_cli, run_guarded

PROG = "python -m shared.pathfinder"


def main(argv: Sequence[str] | None = None) -> int:
    """Run LightningCLI on :class:`PathfinderClassifier` and :class:`PathfinderDataModule`; a user error is one
    line and exit code 2 (:func:`shared.cli.run_guarded`)."""
    args = list(sys.argv[1:] if argv is None else argv)

    def cli(args: list[str]) -> int:
        from shared.pathfinder.datamodule import PathfinderDataModule
        from shared.pathfinder.module import PathfinderClassifier

        lightning_cli(
            PathfinderClassifier, PathfinderDataModule, args=args, parser_kwargs={"prog": PROG, "description": __doc__}
        )
        return 0

    if help_cache_file(PROG, args) is not None:  # Lightning's import is most of a --help: keep the text
        return cached_help(PROG, args, lambda: run_guarded(PROG, cli, args))
    return run_guarded(PROG, cli, args)


if __name__ == "__main__":
    sys.exit(main())
