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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.cli import Subcommand, UserError, add_output_arguments, run_subcommands, subcommand_parser

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

Beside the JSON report, a PNG of the same name (report.png for report.json) shows images, human maps and
saliency side by side (best to worst aligned) and the distribution of the per-image rho. An existing --out
file or PNG is never replaced unless --overwrite is given.

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


def _n_classes(model, images: np.ndarray) -> int:
    """Run the model on two images: the number of classes, or a one-line error if it cannot take the images.

    Two, not one: a model normalised with batch statistics in evaluation too (the hGRU's ``batch_stats``
    readout, as in the c-rbp reference) cannot run on a single image."""
    import torch

    try:
        with torch.no_grad():
            logits = model(torch.as_tensor(images[:2]))
    except RuntimeError as err:
        first = str(err).splitlines()[0][:200]
        raise ValueError(
            f"the model cannot take images of shape {images.shape[1:]} (channels, rows, columns): {first}"
        ) from err
    return int(logits.shape[1])


def score_command(argv: Sequence[str]) -> int:
    """The ``score`` subcommand."""
    parser = subcommand_parser("python -m shared.alignment score", SCORE_HELP)
    parser.add_argument("checkpoint", help="Lightning checkpoint (.ckpt) of a --module class")
    parser.add_argument("maps", help="human maps: folder of PNG/NPY, .npy/.npz file or zarr array")
    parser.add_argument("--images", required=True, help="model inputs, same formats as MAPS")
    parser.add_argument("--out", required=True, help="JSON report to write (its figure: the same name, .png)")
    parser.add_argument("--labels", default=None, help=".npy or text file of true class indices")
    parser.add_argument(
        "--module", default="pathfinder", choices=sorted(KNOWN_MODULES), help="LightningModule class of the checkpoint"
    )
    parser.add_argument("--method", default="gradient", choices=("gradient", "smoothgrad", "integrated_gradients"))
    parser.add_argument(
        "--ceiling", type=float, default=None, help="human ceiling (default: ClickMe 0.65753; use 1 for raw rho)"
    )
    parser.add_argument("--maps-key", default=None, help="array name inside an NPZ file / zarr group")
    parser.add_argument("--images-key", default=None, help="array name inside an NPZ file / zarr group")
    parser.add_argument(
        "--clickme-processing", action="store_true", help="apply the published ClickMe map processing before scoring"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    add_output_arguments(parser, wait=False)
    args = parser.parse_args(list(argv))

    from shared.alignment.evaluate import score_model
    from shared.alignment.figures import plot_alignment
    from shared.alignment.human_maps import load_images, load_maps
    from shared.alignment.processing import process_clickme_maps
    from shared.alignment.scores import CLICKME_HUMAN_CEILING
    from shared.figures import figure_line
    from shared.jobs import atomic_write_json, claim_output

    # every input is checked before any work, and --out before anything else
    out = claim_output(args.out, overwrite=args.overwrite)
    if out.suffix.lower() == ".png":
        raise UserError(f"--out {out} is the name of the figure; give the JSON report's name (e.g. report.json)")
    png = claim_output(out.with_suffix(".png"), overwrite=args.overwrite)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.ceiling is not None and not 0 < args.ceiling <= 1:
        raise UserError(f"--ceiling must be in (0, 1], got {args.ceiling}")
    maps, map_names = load_maps(args.maps, key=args.maps_key)
    images, image_names = load_images(args.images, key=args.images_key)
    if len(maps) != len(images):
        raise UserError(f"{len(maps)} maps but {len(images)} images; they are paired one to one")
    if Path(args.maps).is_dir() and Path(args.images).is_dir() and map_names != image_names:
        mismatch = next(f"{a} != {b}" for a, b in zip(map_names, image_names) if a != b)
        raise UserError(f"map and image file names differ ({mismatch}); they are paired by name")
    if args.clickme_processing:
        maps = process_clickme_maps(maps, output_size=images.shape[2:])
    elif maps.shape[1:] != images.shape[2:]:
        raise UserError(
            f"maps are {maps.shape[1:]} but images {images.shape[2:]} (rows, columns); resize them "
            "or pass --clickme-processing"
        )
    labels = _load_labels(args.labels, len(images))
    model = load_model(args.checkpoint, args.module)
    n_classes = _n_classes(model, images)
    if labels is not None and (labels.min() < 0 or labels.max() >= n_classes):
        raise UserError(
            f"labels must be class indices in [0, {n_classes}) for this model, got {labels.min()}..{labels.max()}"
        )
    report = score_model(
        model,
        images,
        maps,
        labels,
        method=args.method,
        batch_size=args.batch_size,
        ceiling=CLICKME_HUMAN_CEILING if args.ceiling is None else args.ceiling,
    )
    saliency = report.pop("saliency")
    report["per_image"]["name"] = image_names
    report["checkpoint"] = str(Path(args.checkpoint).resolve())
    report["module"] = args.module
    atomic_write_json(claim_output(out, overwrite=args.overwrite), report, indent=2)
    plot_alignment(
        images,
        maps,
        saliency,
        np.array(report["per_image"]["spearman"], float),
        claim_output(png, overwrite=args.overwrite),
        ceiling=report["ceiling"],
        names=image_names,
    )
    print(
        f"alignment score {report['score']:.4f} (mean Spearman {report['mean_spearman']:.4f}, "
        f"Dice {report['dice']:.4f}, IoU {report['iou']:.4f}, {report['n_images']} images) -> {out}"
    )
    print(figure_line(png, "images, human maps and saliency; score distribution"))
    return 0


SUBCOMMANDS = {
    "score": Subcommand("shared.alignment.cli:score_command", "score a checkpoint's saliency against a folder of maps"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m shared.alignment``."""
    return run_subcommands("python -m shared.alignment", DESCRIPTION, SUBCOMMANDS, argv)
