"""``python -m shared.tracking fit --config configs/tracking/int.yaml``: LightningCLI for the tracking tasks.

Subcommands ``fit``, ``validate``, ``test``, ``predict`` and every LightningCLI option are available, e.g.
``--trainer.max_steps 200``, ``--model.backbone r3d_small``, ``--data.num_distractors 25``,
``--data.test_conditions '[distractors=25, length=128]'``, ``--print_config``. ``test`` logs the accuracy
per test condition (``test/acc/<condition>``). Checkpoints are written under the trainer's
``default_root_dir``. Bad input (an unknown backbone, a bad value) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from shared.cli import run_guarded


def _run(argv: list[str]) -> int:
    from shared.cli import lightning_cli
    from shared.tracking.datamodule import TrackingDataModule
    from shared.tracking.module import TrackingClassifier

    lightning_cli(
        TrackingClassifier,
        TrackingDataModule,
        args=argv,
        parser_kwargs={"prog": "python -m shared.tracking", "description": __doc__},
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run LightningCLI on :class:`TrackingClassifier` and :class:`TrackingDataModule`."""
    return run_guarded("python -m shared.tracking", _run, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
