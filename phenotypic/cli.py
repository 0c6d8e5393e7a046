"""The ``phenotypic`` console command: simulate a release, pretrain with IBP, evaluate Pheno-CA, scale.

Typical session::

    phenotypic simulate --out data/phenotypic/sim --plates-per-batch 4 --n-batches 2
    phenotypic fit --config configs/phenotypic/ibp_mlp.yaml
    phenotypic evaluate --checkpoint runs/phenotypic/ibp_mlp/checkpoints/last.ckpt --out results/pheno_ca
    phenotypic scaling --release data/phenotypic/sim --out results/scaling
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from shared.cli import Subcommand, run_subcommands, subcommand_parser

DESCRIPTION = """Pheno-CA for Cell Painting screens (JUMP cpg0016 layouts): IBP pretraining (which molecule made
this well?), probes on the Pheno-CA tasks, and neural scaling-law fits. IBP and the task list are
reconstructed from the authors' code (Linsley et al. 2023) and marked as such in the docs."""

SUBCOMMANDS = {
    "simulate": Subcommand(
        "phenotypic.cli:simulate", "write a simulated JUMP-style release (profiles, images, metadata)"
    ),
    "fit": Subcommand("phenotypic.cli:fit", "train IBP or the task-supervised baseline (LightningCLI, --config YAML)"),
    "evaluate": Subcommand("phenotypic.cli:evaluate", "Pheno-CA tasks on a checkpoint's frozen encoder: tables + JSON"),
    "scaling": Subcommand("phenotypic.cli:scaling", "run/resume the data x model grid and fit scaling laws"),
}


SIMULATE_HELP = {
    "n_sources": "data-generating sites (sources); each has its own offset",
    "n_batches": "batches per source; each has its own shift and effect mixing",
    "plates_per_batch": "384-well plates per batch",
    "n_compounds": "treatment compounds (real NCI molecules shipped with RDKit)",
    "replicates": "wells per compound per plate map",
    "n_moa": "hidden mechanisms of action (clusters of the fingerprint latent)",
    "annotated_fraction": "share of compounds with MoA/target annotations",
    "n_features": "CellProfiler-like features per well",
    "latent_dim": "dimension of the compound latent",
    "moa_strength": "size of the MoA effect (feature SDs)",
    "compound_strength": "size of the compound-specific effect (feature SDs)",
    "noise": "well-level noise (feature SDs)",
    "batch_strength": "size of batch/source effects (feature SDs)",
    "images": "also render 5-channel TIFF images, illumination files and load_data CSVs",
    "image_plates": "render images for only this many plates (default: all)",
    "image_size": "site side in pixels",
    "sites_per_well": "imaged sites per well",
    "profile_format": "per-plate profile format: parquet (cpg0016) or csv.gz (older releases)",
    "seed": "random seed (the release is deterministic given it)",
}


def main(argv: list[str] | None = None) -> int:
    return run_subcommands("phenotypic", DESCRIPTION, SUBCOMMANDS, argv)


def simulate(argv: list[str]) -> int:
    from phenotypic.simulate import SimulationConfig, simulate_release

    parser = subcommand_parser(
        "phenotypic simulate",
        "Write a miniature JUMP-style release on real RDKit "
        "molecules (see phenotypic/simulate.py for the generative model).",
    )
    parser.add_argument("--out", required=True, help="release root to create")
    for f in fields(SimulationConfig):
        flag = "--" + f.name.replace("_", "-")
        helptext = SIMULATE_HELP[f.name]
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", default=f.default, help=helptext)
        elif f.name == "image_plates":
            parser.add_argument(flag, type=int, default=None, help=helptext)
        else:
            typ = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=typ, default=f.default, help=helptext)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    root = simulate_release(out, SimulationConfig(**args))
    print(f"release written to {root}")
    return 0


def fit(argv: list[str]) -> int:
    from phenotypic.datamodule import PhenoDataModule
    from phenotypic.ibp import IBPModule
    from shared.cli import lightning_cli

    lightning_cli(IBPModule, PhenoDataModule, ["fit", *argv])
    return 0


def _table_text(frame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def evaluate(argv: list[str]) -> int:
    import numpy as np
    import pandas as pd

    from phenotypic.datamodule import PhenoDataModule
    from phenotypic.experiment import well_embeddings, well_scores
    from phenotypic.ibp import IBPModule
    from phenotypic.tasks import evaluate_representation, topk_hits
    from shared.checkpoints import load_checkpoint, load_lightning_module

    parser = subcommand_parser(
        "phenotypic evaluate",
        "Probe a frozen IBP encoder on the Pheno-CA tasks (MoA "
        "and target deconvolution, molecule rediscovery, activity and consistency mAP) "
        "next to the whitened CellProfiler profiles and, optionally, a task-supervised "
        "model. Probes select on validation compounds/plates, never on test.",
    )
    parser.add_argument("--checkpoint", required=True, help="IBP Lightning checkpoint (phenotypic fit)")
    parser.add_argument("--supervised-checkpoint", default=None, help="task-supervised (label=moa) checkpoint")
    parser.add_argument("--release", default=None, help="release root (default: the one in the checkpoint)")
    parser.add_argument("--out", required=True, help="folder for tasks.csv / tasks.json")
    parser.add_argument("--probes", nargs="+", default=["linear", "mlp"], choices=["linear", "mlp"])
    parser.add_argument("--k", type=int, default=10, help="top-k besides top-1")
    parser.add_argument("--epochs", type=int, default=300, help="maximum probe epochs")
    args = parser.parse_args(argv)

    def datamodule_for(path: str, **override) -> PhenoDataModule:
        ckpt = load_checkpoint(path)
        hp = {k: v for k, v in ckpt.get("datamodule_hyper_parameters", {}).items() if not k.startswith("_")}
        if args.release:
            hp["release_root"] = args.release
        if "release_root" not in hp:
            raise ValueError(f"{path} does not record its release; pass --release")
        dm = PhenoDataModule(**{**hp, **override})
        dm.setup()
        return dm

    dm = datamodule_for(args.checkpoint)
    model = load_lightning_module(IBPModule, args.checkpoint)
    meta = dm.dataset.meta
    reps = {"IBP (frozen)": well_embeddings(model, dm)}
    if dm.hparams.modality == "profiles":
        reps["CellProfiler (whitened)"] = dm.x
    rows = []
    for name, rep in reps.items():
        rows += evaluate_representation(
            rep, meta, dm.splits, name=name, probes=tuple(args.probes), k=args.k, epochs=args.epochs
        )
    if args.supervised_checkpoint:
        sdm = datamodule_for(args.supervised_checkpoint)
        sup = load_lightning_module(IBPModule, args.supervised_checkpoint)
        test = sdm.splits["test"][sdm.dataset.annotated[sdm.splits["test"]]]
        scores, y = well_scores(sup, sdm)[test], sdm.y[test]
        rows.append(
            {
                "representation": "task-supervised",
                "task": f"{sdm.hparams.label} deconvolution",
                "probe": "own head",
                "metric": f"top1 / top{args.k}",
                "top1": float(topk_hits(scores, y, 1).mean()),
                "topk": float(topk_hits(scores, y, args.k).mean()),
                "n_test": int(len(test)),
            }
        )
    table = pd.DataFrame(rows).replace({np.nan: None})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "tasks.csv", index=False)
    (out / "tasks.json").write_text(
        json.dumps({"split": dm.hparams.split, "k": args.k, "rows": rows}, indent=1, default=float)
    )
    print(_table_text(pd.DataFrame(rows)))
    print(f"\nwritten {out / 'tasks.csv'} and {out / 'tasks.json'}")
    return 0


def scaling(argv: list[str]) -> int:
    import pandas as pd

    from phenotypic.scaling import GridConfig, fit_scaling_laws, frontier, plot_scaling, run_scaling_grid

    parser = subcommand_parser(
        "phenotypic scaling",
        "Run (or resume: finished cells are skipped) a grid over "
        "data fraction x model size, training IBP + probe and the task-supervised "
        "baseline at equal steps per cell; then fit a line in log(wells) (published, "
        "reconstructed), a saturating power law and a broken neural scaling law "
        "(Huber loss in log space, bootstrap intervals, leave-largest-out error).",
    )
    parser.add_argument("--release", required=True, help="release root")
    parser.add_argument("--out", required=True, help="grid folder (cells/, results.csv, fits.json, scaling.png)")
    d = GridConfig()
    parser.add_argument("--fractions", type=float, nargs="+", default=d.fractions)
    parser.add_argument("--widths", type=int, nargs="+", default=d.widths)
    parser.add_argument("--depths", type=int, nargs="+", default=d.depths)
    parser.add_argument("--max-steps", type=int, default=d.max_steps, help="steps per model (equal compute)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--probe", choices=["linear", "mlp"], default=d.probe)
    parser.add_argument("--k", type=int, default=d.k)
    parser.add_argument("--split", choices=["compounds", "plates"], default=d.split)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--n-boot", type=int, default=100, help="bootstrap resamples per law")
    parser.add_argument("--target-accuracy", type=float, default=None, help="report wells needed for it")
    parser.add_argument("--fit-only", action="store_true", help="fit the existing results.csv, train nothing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.fit_only:
        results = pd.read_csv(out / "results.csv")
    else:
        cfg = GridConfig(
            fractions=args.fractions,
            widths=args.widths,
            depths=args.depths,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            probe=args.probe,
            k=args.k,
            split=args.split,
            seed=args.seed,
        )
        results = run_scaling_grid(args.release, out, cfg)
    front = frontier(results, x="n_train_wells", y="ibp_probe_top1")
    fits = fit_scaling_laws(
        front["n_train_wells"],
        front["ibp_probe_top1"],
        n_boot=args.n_boot,
        target_accuracy=args.target_accuracy,
        seed=args.seed,
    )
    (out / "fits.json").write_text(json.dumps(fits, indent=1, default=float))
    plot_scaling(results, fits, out / "scaling.png")
    summary = (
        results.groupby("fraction")[["n_train_wells", "ibp_probe_top1", "supervised_top1", "chance_top1"]]
        .max()
        .reset_index()
    )
    print(_table_text(summary))
    for law in ("log-linear", "power law + offset", "broken neural scaling law"):
        f = fits[law]
        print(
            f"{law}: {json.dumps({k: round(v, 4) for k, v in f['params'].items()})}  "
            f"leave-largest-out error {f['extrapolation_error']}"
        )
    for w in fits["warnings"]:
        print("warning:", w)
    print(f"written {out / 'results.csv'}, {out / 'fits.json'}, {out / 'scaling.png'}")
    return 0
