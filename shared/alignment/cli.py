"""``python -m shared.alignment``: score saved checkpoints against human maps, offline.

How the model architecture is identified: a checkpoint is a **Lightning checkpoint of a known
classification module**, rebuilt from its saved ``hyper_parameters`` and ``state_dict`` with
:func:`shared.checkpoints.load_lightning_module` (``weights_only=True``; nothing is unpickled). The module
class is chosen by ``--module`` from a fixed table (:data:`KNOWN_MODULES`), never imported from a path
given by the user. ``pathfinder`` (:class:`shared.pathfinder.module.PathfinderClassifier`) stores the
registry backbone name and config in its hyper-parameters, so any registered backbone works.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.cli import Subcommand, run_subcommands, subcommand_parser

KNOWN_MODULES = {"pathfinder": "shared.pathfinder.module:PathfinderClassifier"}

DESCRIPTION = """Vision-alignment evaluation (human feature alignment, the neural harmonizer, neural
predictivity, probes, adversarial alignment, reaction times). Library: shared.alignment."""

SCORE_HELP = """Score a checkpoint's saliency maps against human maps (ClickMe-style alignment).

Per image: saliency |d logit / d input| (max over channels) of the true label (--labels) or the predicted
class, Spearman rho with the human map, Dice and IoU of the top 10% pixels. The report holds the mean rho,
the alignment score (mean rho / ceiling), Dice, IoU, accuracy and the per-image values.

MAPS and --images are each a folder of PNG/NPY files (paired by sorted file name; names must match), an
NPY/NPZ file or a zarr array. Maps are used as given unless --clickme-processing is set (resize to 64,
published 10x10 Gaussian blur, resize to the image size). Images are used as stored (no scaling).

example:
  python -m shared.alignment score model.ckpt maps/ --images images/ --labels labels.npy --out report.json
"""


def load_model(checkpoint: str | Path, module: str = "pathfinder"):
    """Rebuild a known LightningModule from a checkpoint (weights-only; see the module docstring)."""
    from shared.checkpoints import load_lightning_module

    if module not in KNOWN_MODULES:
        raise ValueError(f"--module must be one of {', '.join(KNOWN_MODULES)}; got {module!r}")
    module_name, cls_name = KNOWN_MODULES[module].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return load_lightning_module(cls, checkpoint)


def _load_labels(path: str | None, n: int) -> np.ndarray | None:
    if path is None:
        return None
    from shared.validation import check_existing_path

    p = check_existing_path(path, name="labels", kind="file")
    labels = np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.loadtxt(p, dtype=np.int64, ndmin=1)
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels in {p} must be {n} integers, got shape {labels.shape} dtype {labels.dtype}")
    return labels.astype(np.int64)


def score_command(argv: Sequence[str]) -> int:
    """The ``score`` subcommand."""
    parser = subcommand_parser("python -m shared.alignment score", SCORE_HELP)
    parser.add_argument("checkpoint", help="Lightning checkpoint (.ckpt) of a --module class")
    parser.add_argument("maps", help="human maps: folder of PNG/NPY, .npy/.npz file or zarr array")
    parser.add_argument("--images", required=True, help="model inputs, same formats as MAPS")
    parser.add_argument("--out", required=True, help="JSON report to write")
    parser.add_argument("--labels", default=None, help=".npy or text file of true class indices")
    parser.add_argument("--module", default="pathfinder", choices=sorted(KNOWN_MODULES),
                        help="LightningModule class of the checkpoint")
    parser.add_argument("--method", default="gradient", choices=("gradient", "smoothgrad",
                                                                "integrated_gradients"))
    parser.add_argument("--ceiling", type=float, default=None,
                        help="human ceiling (default: ClickMe 0.65753; use 1 for raw rho)")
    parser.add_argument("--maps-key", default=None, help="array name inside an NPZ file / zarr group")
    parser.add_argument("--images-key", default=None, help="array name inside an NPZ file / zarr group")
    parser.add_argument("--clickme-processing", action="store_true",
                        help="apply the published ClickMe map processing before scoring")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(list(argv))

    from shared.alignment.evaluate import score_model
    from shared.alignment.human_maps import load_images, load_maps
    from shared.alignment.processing import process_clickme_maps
    from shared.alignment.scores import CLICKME_HUMAN_CEILING

    maps, map_names = load_maps(args.maps, key=args.maps_key)
    images, image_names = load_images(args.images, key=args.images_key)
    if len(maps) != len(images):
        raise SystemExit(f"error: {len(maps)} maps but {len(images)} images")
    if Path(args.maps).is_dir() and Path(args.images).is_dir() and map_names != image_names:
        mismatch = next(f"{a} != {b}" for a, b in zip(map_names, image_names) if a != b)
        raise SystemExit(f"error: map and image file names differ ({mismatch}); they are paired by name")
    if args.clickme_processing:
        maps = process_clickme_maps(maps, output_size=images.shape[2:])
    labels = _load_labels(args.labels, len(images))
    model = load_model(args.checkpoint, args.module)
    report = score_model(model, images, maps, labels, method=args.method, batch_size=args.batch_size,
                         ceiling=CLICKME_HUMAN_CEILING if args.ceiling is None else args.ceiling)
    report.pop("saliency")
    report["per_image"]["name"] = image_names
    report["checkpoint"] = str(Path(args.checkpoint).resolve())
    report["module"] = args.module
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(f"alignment score {report['score']:.4f} (mean Spearman {report['mean_spearman']:.4f}, "
          f"Dice {report['dice']:.4f}, IoU {report['iou']:.4f}, {report['n_images']} images) -> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m shared.alignment``."""
    return run_subcommands("python -m shared.alignment", DESCRIPTION,
                           {"score": Subcommand("shared.alignment.cli:score_command",
                                                "score a checkpoint's saliency against a folder of maps")},
                           argv)
