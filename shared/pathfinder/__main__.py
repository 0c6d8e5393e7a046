"""``python -m shared.pathfinder fit --config configs/pathfinder/hgru.yaml``: LightningCLI for Pathfinder.

Subcommands ``fit``, ``validate``, ``test``, ``predict`` and every LightningCLI option are available, e.g.
``--trainer.max_epochs 5``, ``--model.backbone resnet_small``, ``--data.contour_length 14``,
``--print_config``. Checkpoints are written by Lightning under the trainer's ``default_root_dir``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from shared.cli import lightning_cli
from shared.pathfinder.datamodule import PathfinderDataModule
from shared.pathfinder.module import PathfinderClassifier


def main(argv: Sequence[str] | None = None) -> int:
    """Run LightningCLI on :class:`PathfinderClassifier` and :class:`PathfinderDataModule`."""
    lightning_cli(PathfinderClassifier, PathfinderDataModule, args=None if argv is None else list(argv),
                  parser_kwargs={"prog": "python -m shared.pathfinder", "description": __doc__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
