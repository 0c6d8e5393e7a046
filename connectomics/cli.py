"""``connectomics``: the console command. Each subcommand lives in the module that does the work."""

from __future__ import annotations

import sys

from shared.cli import Subcommand, help_cache_file, run_subcommands
from shared.startup import announce_slow_import

DESCRIPTION = """STAR neuron segmentation for electron-microscopy volumes.

A typical session (sim.zarr is an OME-Zarr image: raw at its root, ground truth at sim.zarr/labels/neuron_ids):
  connectomics simulate sim.zarr --source sstem --shape 64,256,256 --seed 0
  connectomics fit --config configs/connectomics/gammanet.yaml
  connectomics predict runs/connectomics/gammanet/checkpoints/last.ckpt sim.zarr pred.zarr/affs \\
      --block 32,128,128 --context 8,32,32
  connectomics segment pred.zarr/affs seg.zarr --thresholds 0.3,0.5,0.7 --image sim.zarr
  connectomics evaluate seg.zarr/seg_0.5 sim.zarr/labels/neuron_ids
  connectomics star --config configs/connectomics/star.yaml    # gamma-Net vs U-Net, held-out source"""

SUBCOMMANDS = {
    "simulate": Subcommand("connectomics.simulate:cli", "write a simulated EM volume (OME-Zarr raw + labels)"),
    "fit": Subcommand(
        "connectomics.train:cli", "train an affinity model (LightningCLI YAML; --ckpt_path resumes)", cache_help=True
    ),
    "star": Subcommand("connectomics.star:cli", "leave-one-source-out STAR protocol, results table", cache_help=True),
    "predict": Subcommand("connectomics.predict:cli", "blockwise affinity prediction over a volume"),
    "segment": Subcommand("connectomics.segment:cli", "watershed + agglomeration + stitching to uint64 ids"),
    "evaluate": Subcommand("connectomics.evaluate:cli", "adapted Rand error, VOI and CREMI score"),
}


def main(argv: list[str] | None = None) -> int:
    """Run ``connectomics SUBCOMMAND ...``; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    sub = SUBCOMMANDS.get(argv[0]) if argv else None
    help_file = help_cache_file(f"connectomics {argv[0]}", argv[1:]) if sub and sub.cache_help else None
    if sub and not (help_file and help_file.is_file()):  # fit, star, predict load torch/Lightning: say so
        announce_slow_import(f"connectomics {argv[0]}", sub.target)
    return run_subcommands("connectomics", DESCRIPTION, SUBCOMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
