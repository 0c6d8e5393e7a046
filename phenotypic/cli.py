"""The ``phenotypic`` console command: simulate a release, pretrain with IBP, evaluate Pheno-CA, scale.

Typical session::

    phenotypic simulate --out data/phenotypic/sim --plates-per-batch 4 --n-batches 2
    phenotypic fit --config configs/phenotypic/ibp_mlp.yaml
    phenotypic evaluate --checkpoint runs/phenotypic/ibp_mlp/checkpoints/last.ckpt --out results/pheno_ca
    phenotypic scaling --release data/phenotypic/sim --out results/scaling
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from shared.cli import (
    Subcommand,
    add_dataclass_arguments,
    add_output_arguments,
    dataclass_from_args,
    run_subcommands,
    subcommand_parser,
)

DESCRIPTION = """Pheno-CA for Cell Painting screens (JUMP cpg0016 layouts): IBP pretraining (which molecule made
this well?), probes on the Pheno-CA tasks, and neural scaling-law fits. IBP and the task list are
reconstructed from the authors' code (Linsley et al. 2023) and marked as such in the docs."""

SUBCOMMANDS = {
    "simulate": Subcommand(
        "phenotypic.cli:simulate", "write a simulated JUMP-style release (profiles, images, metadata)"
    ),
    "fit": Subcommand(
        "phenotypic.cli:fit", "train IBP or the task-supervised baseline (LightningCLI, --config YAML)", cache_help=True
    ),
    "evaluate": Subcommand("phenotypic.cli:evaluate", "Pheno-CA tasks on a checkpoint's frozen encoder: tables + JSON"),
    "scaling": Subcommand("phenotypic.cli:scaling", "run/resume the data x model grid and fit scaling laws"),
}


def main(argv: list[str] | None = None) -> int:
    return run_subcommands("phenotypic", DESCRIPTION, SUBCOMMANDS, argv)


def simulate(argv: list[str]) -> int:
    from phenotypic.simulate_settings import SimulationConfig

    parser = subcommand_parser(
        "phenotypic simulate",
        "Write a miniature JUMP-style release on real RDKit molecules (see phenotypic/simulate.py for the "
        "generative model). Rerunning the same command resumes an interrupted release (or does nothing); other "
        "settings or files it did not write are refused unless --overwrite.",
    )
    parser.add_argument("--out", required=True, help="release root to create")
    add_dataclass_arguments(parser, SimulationConfig)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    config = dataclass_from_args(SimulationConfig, args)  # validates every setting before anything is written
    from phenotypic.simulate import simulate_release  # pandas and RDKit: once the options are parsed

    root = simulate_release(args.out, config, overwrite=args.overwrite, wait=args.wait)
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


def _evaluate_unit(representations: dict, representation: str, **task) -> dict:
    """One (representation, task, probe) unit of ``phenotypic evaluate``; a dask task (top-level, plain values)."""
    from phenotypic.tasks import evaluate_task

    return evaluate_task(representations[representation], name=representation, **task)


def _unit_key(representation: str, task: str, probe: str) -> str:
    """A file-name-safe unit key, e.g. ``ibp-frozen.moa-deconvolution.linear``."""
    return ".".join(
        "-".join("".join(c if c.isalnum() else " " for c in part.lower()).split())
        for part in (representation, task, probe)
    )


def evaluate(argv: list[str]) -> int:
    import sys

    from shared.figures import figure_line
    from shared.jobs import check_output_folder, file_sha256, open_job
    from shared.scaleout import add_dask_arguments, dask_client, run_job_units

    parser = subcommand_parser(
        "phenotypic evaluate",
        "Probe a frozen IBP encoder on the Pheno-CA tasks (MoA "
        "and target deconvolution, molecule rediscovery, activity and consistency mAP) "
        "next to the whitened CellProfiler profiles and, optionally, a task-supervised "
        "model. Probes select on validation compounds/plates, never on test. Each (representation, task, "
        "probe) is a unit that can run on dask (--workers, --scheduler) and is kept when finished: rerunning "
        "the same command resumes an interrupted evaluation, or finds the results done; earlier results of "
        "other settings are kept unless --overwrite. Writes tasks.csv, tasks.json and tasks.png (every task "
        "against chance).",
    )
    parser.add_argument("--checkpoint", required=True, help="IBP Lightning checkpoint (phenotypic fit)")
    parser.add_argument("--supervised-checkpoint", default=None, help="task-supervised (label=moa) checkpoint")
    parser.add_argument("--release", default=None, help="release root (default: the one in the checkpoint)")
    parser.add_argument("--out", required=True, help="folder for tasks.csv / tasks.json / tasks.png")
    parser.add_argument("--probes", nargs="+", default=["linear", "mlp"], choices=["linear", "mlp"])
    parser.add_argument("--k", type=int, default=10, help="top-k besides top-1")
    parser.add_argument("--epochs", type=int, default=300, help="maximum probe epochs")
    add_dask_arguments(parser)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    if args.k < 1 or args.epochs < 1 or args.workers < 0:
        raise ValueError(
            f"--k and --epochs must be >= 1 and --workers >= 0, got {args.k}, {args.epochs} and {args.workers}"
        )
    check_output_folder(args.out)

    def status(text: str) -> None:
        print(f"phenotypic evaluate: {text}", file=sys.stderr, flush=True)

    status(f"loading {args.checkpoint} and its release")  # first output before the slow imports (Lightning)
    import numpy as np
    import pandas as pd

    from phenotypic.datamodule import PhenoDataModule
    from phenotypic.experiment import well_embeddings, well_scores
    from phenotypic.figures import plot_tasks
    from phenotypic.ibp import IBPModule
    from phenotypic.tasks import chance_topk, task_units, topk_hits
    from shared.checkpoints import load_checkpoint, load_lightning_module

    def datamodule_for(path: str) -> PhenoDataModule:
        ckpt = load_checkpoint(path, expect="ibp")
        hp = {k: v for k, v in ckpt.get("datamodule_hyper_parameters", {}).items() if not k.startswith("_")}
        if args.release:
            hp["release_root"] = args.release
        if "release_root" not in hp:
            raise ValueError(f"{path} does not record its release; pass --release")
        dm = PhenoDataModule(**hp)
        dm.setup()
        return dm

    # everything is loaded and checked before the output folder is touched
    dm = datamodule_for(args.checkpoint)
    model = load_lightning_module(IBPModule, args.checkpoint)
    if args.supervised_checkpoint:
        sdm = datamodule_for(args.supervised_checkpoint)
        sup = load_lightning_module(IBPModule, args.supervised_checkpoint)
    settings = {
        "checkpoint_sha256": file_sha256(args.checkpoint),
        "supervised_sha256": file_sha256(args.supervised_checkpoint) if args.supervised_checkpoint else None,
        "release": str(Path(dm.hparams.release_root).resolve()),
        "probes": args.probes,
        "k": args.k,
        "epochs": args.epochs,
    }
    out = Path(args.out)
    with open_job(out, "phenotypic evaluate", settings, overwrite=args.overwrite, wait=args.wait) as job:
        if job.is_done("tasks"):
            print(_table_text(pd.read_csv(out / "tasks.csv")))
            print(f"\n{out} already holds these results (same checkpoints and settings); nothing to do")
            if (out / "tasks.png").exists():
                print(figure_line(out / "tasks.png", "every task against chance"))
            return 0
        meta = dm.dataset.meta
        status(f"embedding {len(meta)} wells with the frozen IBP encoder")
        reps = {"IBP (frozen)": well_embeddings(model, dm)}
        if dm.hparams.modality == "profiles":
            reps["CellProfiler (whitened)"] = dm.x
        units = {
            _unit_key(name, task, probe): {"representation": name, "task": task, "probe": probe}
            for name in reps
            for task, probe in task_units(tuple(args.probes))
        }

        def save(key: str, row: dict) -> None:
            job.write_json(f"units/{key}.json", row)

        common = {"representations": reps, "meta": meta, "splits": dm.splits, "k": args.k, "epochs": args.epochs}
        pending = len(set(units) - job.done_units())
        status(
            f"{len(units)} units ({len(reps)} representations x {len(units) // len(reps)} tasks), "
            f"{len(units) - pending} done earlier"
        )
        with (
            dask_client(workers=args.workers, scheduler=args.scheduler)
            if pending
            else contextlib.nullcontext() as client
        ):
            report = run_job_units(
                job, units, _evaluate_unit, save, common=common, client=client, desc="phenotypic evaluate"
            )
        report.raise_if_incomplete()
        rows = [json.loads((out / "units" / f"{key}.json").read_text()) for key in units]
        if args.supervised_checkpoint:
            status("scoring the task-supervised model's own head")
            test = sdm.splits["test"][sdm.dataset.annotated[sdm.splits["test"]]]
            train = sdm.splits["train"][sdm.dataset.annotated[sdm.splits["train"]]]
            scores, y = well_scores(sup, sdm)[test], sdm.y[test]
            rows.append(
                {
                    "representation": "task-supervised",
                    "task": f"{sdm.hparams.label} deconvolution",
                    "probe": "own head",
                    "metric": f"top1 / top{args.k}",
                    "top1": float(topk_hits(scores, y, 1).mean()),
                    "topk": float(topk_hits(scores, y, args.k).mean()),
                    "chance_top1": chance_topk(sdm.y[train], y, scores.shape[1], 1),
                    "chance_topk": chance_topk(sdm.y[train], y, scores.shape[1], args.k),
                    "n_test": int(len(test)),
                }
            )
        job.write_table("tasks.csv", pd.DataFrame(rows).replace({np.nan: None}))
        job.write_json("tasks.json", {"split": dm.hparams.split, "k": args.k, "rows": rows})
        plot_tasks(rows, job.claim("tasks.png"))
        job.mark_done("tasks")
    print(_table_text(pd.DataFrame(rows)))
    print(f"\nwritten {out / 'tasks.csv'} and {out / 'tasks.json'}")
    print(figure_line(out / "tasks.png", "every task against chance"))
    return 0


def scaling(argv: list[str]) -> int:
    from phenotypic.scaling_settings import GridConfig
    from shared.scaleout import add_dask_arguments

    parser = subcommand_parser(
        "phenotypic scaling",
        "Run (or resume: finished cells are skipped, failed ones retried) a grid over "
        "data fraction x model size, training IBP + probe and the task-supervised "
        "baseline at equal steps per cell; then fit a line in log(wells) (published, "
        "reconstructed), a saturating power law and a broken neural scaling law "
        "(Huber loss in log space, bootstrap intervals, leave-largest-out error).",
    )
    parser.add_argument("--release", required=True, help="release root")
    parser.add_argument("--out", required=True, help="grid folder (cells/, results.csv, fits.json, scaling.png)")
    add_dataclass_arguments(parser, GridConfig)
    parser.add_argument("--n-boot", type=int, default=100, help="bootstrap resamples per law")
    parser.add_argument("--target-accuracy", type=float, default=None, help="report wells needed for it")
    parser.add_argument(
        "--fit-only",
        action="store_true",
        help="fit the existing results.csv of the grid in --out (its own settings), train nothing",
    )
    add_dask_arguments(parser)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    if args.n_boot < 0 or (args.target_accuracy is not None and not 0 < args.target_accuracy < 1):
        raise ValueError(
            f"--n-boot must be >= 0 and --target-accuracy in (0, 1), got {args.n_boot} and {args.target_accuracy}"
        )
    import pandas as pd  # pandas, scipy and Lightning: once the options are parsed

    from phenotypic.scaling import fit_scaling_laws, frontier, plot_scaling, run_scaling_grid
    from shared.figures import figure_line
    from shared.jobs import reopen_job

    out = Path(args.out)
    if not args.fit_only:
        cfg = dataclass_from_args(GridConfig, args)
        run_scaling_grid(
            args.release,
            out,
            cfg,
            overwrite=args.overwrite,
            wait=args.wait,
            workers=args.workers,
            scheduler=args.scheduler,
        )
    with reopen_job(out, "phenotypic scaling", wait=args.wait) as job:  # fits and plot belong to the grid job
        results = pd.read_csv(out / "results.csv")
        front = frontier(results, x="n_train_wells", y="ibp_probe_top1")
        fits = fit_scaling_laws(
            front["n_train_wells"],
            front["ibp_probe_top1"],
            n_boot=args.n_boot,
            target_accuracy=args.target_accuracy,
            seed=args.seed,
        )
        job.write_json("fits.json", fits)
        plot_scaling(results, fits, job.claim("scaling.png"))
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
    print(f"written {out / 'results.csv'}, {out / 'fits.json'}")
    print(figure_line(out / "scaling.png", "accuracy against training wells, fitted laws"))
    return 0
