"""``connectomics evaluate``: the command that scores segmentations with :mod:`connectomics.metrics`.

Reading volumes, the JSON files and the threshold plot are here; the metrics themselves (numba) are imported
once the options are parsed, so ``connectomics evaluate --help`` is fast.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CREMI_BORDER_NM = 200.0
"""Default distance (nm) of the CREMI border mask: cremi_python ``example_evaluation.py`` (``threshold = 200``);
the CREMI leaderboard's own value is not published (unverified)."""


def format_table(metrics: dict[str, float]) -> str:
    """A plain-text two-column table of the metrics."""
    width = max(len(k) for k in metrics)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
    for key, value in metrics.items():
        text = f"{value:.6f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def _ignore_labels(text: str) -> tuple[int, ...]:
    """``"0,5"`` -> ``(0, 5)``; ``"none"`` or ``""`` -> ``()`` (every ground-truth id is scored)."""
    import argparse

    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer ids or 'none', got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"label ids are >= 0, got {text!r}")
    return values


def cli(argv: list[str]) -> int:
    """``connectomics evaluate SEG [SEG ...] GT``: print the metrics tables, write JSON (and a plot)."""
    from shared.cli import add_output_arguments, subcommand_parser
    from shared.jobs import UserError, atomic_write_text

    parser = subcommand_parser(
        "connectomics evaluate",
        f"""Score a segmentation against ground truth: adapted Rand error (SNEMI3D/CREMI), VOI split/merge
(bits) and the CREMI score. All volumes are read chunk by chunk, so volumes larger than memory can be scored.

Excluded (not scored) voxels, the conventions of the CREMI evaluation (cremi_python):
  --ignore-labels  ground-truth ids not scored; default 0 (background / unlabelled). 'none' scores 0 too.
  --mask           a labels mask (nonzero = labelled): unlabelled voxels are not scored. Sparse ground
                   truth needs it: unlabelled is not background.
  --border-mask    voxels within this many nm (in-plane, same section) of a ground-truth boundary are not
                   scored; without a value {CREMI_BORDER_NM:g} nm, the threshold of cremi_python's
                   example_evaluation.py (the CREMI leaderboard's own value is not published: unverified).

examples:
  connectomics evaluate seg.zarr/seg_0.5 sim.zarr/labels/neuron_ids
  connectomics evaluate seg.zarr/seg_0.5 sim.zarr/labels/neuron_ids --mask sim.zarr/labels/labels_mask
  connectomics evaluate seg.zarr/seg_0.5 sample_A.hdf:volumes/labels/neuron_ids --border-mask --json s.json
  connectomics evaluate seg.zarr sim.zarr/labels/neuron_ids   # every seg_<t>, and a plot vs t

Each segmentation's metrics go to SEG_CONTAINER.SEG_NAME.metrics.json beside its container (e.g.
seg.zarr.seg_0.5.metrics.json) unless --json is given (one segmentation only). With several segmentations
(several addresses, or a container holding seg_<t>), ARAND and VOI against the threshold t are drawn in
SEG_CONTAINER.metrics.png. A file this command did not write is never replaced without --overwrite.""",
    )
    parser.add_argument(
        "seg",
        nargs="+",
        help="segmentation addresses (integer labels), or a container holding seg_<threshold> segmentations",
    )
    parser.add_argument("gt", help="ground-truth volume address (integer labels)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the metrics as JSON, one segmentation only (default: SEG_CONTAINER.SEG_NAME.metrics.json)",
    )
    parser.add_argument(
        "--seg-zero",
        choices=("singletons", "label"),
        default="singletons",
        help="how segmentation 0 counts (singletons = SNEMI3D/CREMI reference)",
    )
    parser.add_argument(
        "--ignore-labels",
        type=_ignore_labels,
        default=(0,),
        metavar="IDS",
        help="comma-separated ground-truth ids not scored, or 'none'",
    )
    parser.add_argument(
        "--mask",
        default=None,
        metavar="ADDRESS",
        help="labels-mask volume address (same shape as GT; 0 = unlabelled, not scored)",
    )
    parser.add_argument(
        "--border-mask",
        type=float,
        nargs="?",
        const=CREMI_BORDER_NM,
        default=None,
        metavar="NM",
        help="exclude voxels within NM nm of a GT boundary in their section "
        f"(no value: {CREMI_BORDER_NM:g}); default: no border mask",
    )
    parser.add_argument("--block", default=None, help="region read at a time, e.g. 32,512,512")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_output_arguments(parser, wait=False)
    args = parser.parse_args(argv)
    try:
        addresses = _segmentation_addresses(args.seg)
        if args.json is not None and len(addresses) > 1:
            raise ValueError(
                f"--json names one file but {len(addresses)} segmentations are given; leave it out "
                "(each gets SEG_CONTAINER.SEG_NAME.metrics.json)"
            )
        results = {}
        for address in addresses:
            out = _claim(_json_path(address) if args.json is None else args.json, overwrite=args.overwrite)
            results[address] = (_evaluate_one(address, args), out)
        if len(results) > 1:
            figure = _claim(_plot_path(next(iter(results))), overwrite=args.overwrite)
    except (OSError, KeyError, ValueError, TypeError, UserError) as err:
        print(f"connectomics evaluate: {err}", file=sys.stderr)
        return 2
    for address, (scores, out) in results.items():
        print(f"{address}:\n{format_table(scores)}")
        atomic_write_text(
            out, json.dumps({"written_by": WRITTEN_BY, "seg": address, "gt": args.gt, **scores}, indent=2) + "\n"
        )
        print(f"wrote {out}")
    if len(results) > 1:
        plot_sweep({a: s for a, (s, _) in results.items()}, figure)
        print(f"wrote figure {figure}")
    return 0


WRITTEN_BY = "connectomics evaluate"
"""The ``written_by`` field of the JSON files (and the PNG's Software tag) this command writes: such a file
may be replaced by a rerun; any other file only with ``--overwrite``."""


def _segmentation_addresses(addresses: Sequence[str]) -> list[str]:
    """The addresses as given, a container (zarr group without an image of its own) expanded to its
    ``seg_<t>`` members in threshold order."""
    import zarr

    from connectomics.io import parse_volume_path

    out = []
    for address in addresses:
        container, dataset = parse_volume_path(address)
        node = None
        if container.suffix == ".zarr" and container.is_dir():
            node = zarr.open(str(container), path=dataset or "", mode="r")
        if isinstance(node, zarr.Group) and "multiscales" not in node.attrs.get("ome", {}):
            members = sorted((k for k in node.group_keys() if k.startswith("seg_")), key=_threshold_key)
            if not members:
                raise ValueError(f"{address} is a group without seg_<threshold> segmentations")
            out += [f"{str(address).rstrip('/')}/{k}" for k in members]
        else:
            out.append(str(address))
    return out


def _threshold_key(name: str) -> tuple[float, str]:
    """Sort key of ``seg_<t>`` names: the threshold, then the name (names without one last)."""
    try:
        return float(name.rpartition("_")[2]), name
    except ValueError:
        return math.inf, name


def _json_path(address: str) -> Path:
    """``seg.zarr/seg_0.5`` -> ``seg.zarr.seg_0.5.metrics.json`` (beside the container)."""
    from connectomics.io import parse_volume_path

    container, dataset = parse_volume_path(address)
    name = (dataset or "").strip("/").replace("/", ".")
    return Path(str(container).rstrip("/") + (f".{name}" if name else "") + ".metrics.json")


def _plot_path(address: str) -> Path:
    from connectomics.io import parse_volume_path

    return Path(str(parse_volume_path(address)[0]).rstrip("/") + ".metrics.png")


def _claim(path: Path, *, overwrite: bool) -> Path:
    """``path`` if writing it replaces nothing but an earlier output of this command (or ``overwrite``)."""
    from shared.jobs import claim_output

    return claim_output(path, overwrite=overwrite or _written_by_us(path))


def _written_by_us(path: Path) -> bool:
    if not path.is_file():
        return False
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            return image.info.get("Software") == WRITTEN_BY
    try:
        return json.loads(path.read_text()).get("written_by") == WRITTEN_BY
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False


def _evaluate_one(address: str, args) -> dict[str, Any]:
    """The metrics of one segmentation (raises ``ValueError`` on unusable input, e.g. negative labels)."""
    from connectomics.io import check_role, open_volume
    from connectomics.metrics import contingency_table_blockwise, evaluate_segmentation

    seg = open_volume(address)
    gt = open_volume(args.gt)
    check_role(seg, "labels")
    check_role(gt, "labels")
    if seg.spatial_shape != gt.spatial_shape:
        raise ValueError(
            f"segmentation {address} and ground truth {args.gt} must have the same shape "
            f"(plane, row, column), got {seg.spatial_shape} and {gt.spatial_shape}"
        )
    mask = None
    if args.mask is not None:
        mask = open_volume(args.mask)
        if mask.dtype.kind not in "iu" or mask.shape != gt.shape:
            raise ValueError(
                f"labels mask {args.mask} must be an integer volume of the ground truth's shape "
                f"{gt.shape}, got {mask.dtype} {mask.shape}"
            )
    if args.border_mask is not None and not (math.isfinite(args.border_mask) and args.border_mask >= 0):
        raise ValueError(f"--border-mask must be a distance in nm >= 0, got {args.border_mask}")
    block = [int(v) for v in args.block.split(",")] if args.block else None
    table = contingency_table_blockwise(
        seg.data,
        gt.data,
        block_shape=block,
        progress=not args.quiet,
        ignore_labels=args.ignore_labels,
        mask=None if mask is None else mask.data,
        border_distance=args.border_mask,
        voxel_size=gt.voxel_size,
    )
    scores = evaluate_segmentation(table=table, seg_zero=args.seg_zero)  # ValueError: nothing left to score
    scores["n_scored"] = int(table.count[table.gt != 0].sum())
    return {
        "seg_zero": args.seg_zero,
        "ignore_labels": list(args.ignore_labels),
        "mask": args.mask,
        "border_mask_nm": args.border_mask,
        **scores,
    }


def plot_sweep(results: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Draw ARAND and VOI (split, merge, total) against the threshold of ``seg_<t>`` segmentations.

    Parameters
    ----------
    results : segmentation address -> its metrics (keys ``arand``, ``voi_split``, ``voi_merge``); the
        threshold is read from the name (``.../seg_0.5`` -> 0.5); names without one are numbered.
    path : the PNG written (atomically; tagged ``Software: connectomics evaluate``).

    Examples
    --------
    >>> import tempfile
    >>> r = {f"seg.zarr/seg_{t}": {"arand": t, "voi_split": 1 - t, "voi_merge": t} for t in (0.3, 0.5)}
    >>> plot_sweep(r, Path(tempfile.mkdtemp()) / "sweep.png").suffix
    '.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [_threshold_key(a.rstrip("/").rpartition("/")[2])[0] for a in results]
    xs = keys if all(math.isfinite(k) for k in keys) else list(range(len(results)))
    scores = list(results.values())
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    left.plot(xs, [s["arand"] for s in scores], "o-")
    left.set(xlabel="threshold", ylabel="adapted Rand error", title="ARAND (lower is better)")
    for key, label in (("voi_split", "split"), ("voi_merge", "merge")):
        right.plot(xs, [s[key] for s in scores], "o-", label=label)
    right.plot(xs, [s["voi_split"] + s["voi_merge"] for s in scores], "o-", label="total")
    right.set(xlabel="threshold", ylabel="bits", title="VOI (lower is better)")
    right.legend()
    from shared.jobs import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": WRITTEN_BY})
    plt.close(fig)
    return Path(path)
