"""The ``rldiag`` console command: diagnose Procgen games, build the taxonomy, train and distil agents."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from shared.cli import (
    Subcommand,
    add_dataclass_arguments,
    add_output_arguments,
    json_object,
    run_subcommands,
    subcommand_parser,
)

DESCRIPTION = """\
rldiag: the Learning Challenge Diagnosticator for Procgen.

Measures, per game, how much of a game's difficulty is perceptual and how much is reinforcement learning:
PPO on standard pixels (pix), PPO on perceptually simplified frames (simp) and behavioural cloning of an
expert's actions from pixels (bc) give three learning curves; their normalised areas give our Perceptual
Learning Challenge (PLC) and RL Challenge (RLC) scores with bootstrap intervals over seeds.

Typical use (CPU smoke scale, about a minute):
  rldiag diagnose --games coinrun,starpilot --budget 2048 --seeds 0,1 --out lcd_smoke
  rldiag taxonomy lcd_smoke
Full 16-game taxonomy on GPUs: see BENCHMARKS.md (section rldiag)."""

SUBCOMMANDS = {
    "diagnose": Subcommand("rldiag.cli:diagnose", "run the pix/simp/bc learning curves per game and seed"),
    "taxonomy": Subcommand("rldiag.cli:taxonomy", "place diagnosed games on the PLC x RLC plane (PNG, CSV, JSON)"),
    "train": Subcommand("rldiag.cli:train", "train PPO on one game (CleanRL-style; checkpoint and resume)"),
    "distill": Subcommand("rldiag.cli:distill", "clone a PPO checkpoint's actions from frames (BC learning curve)"),
    "games": Subcommand("rldiag.cli:games", "list the Procgen games, their modes and normalisation constants"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommands("rldiag", DESCRIPTION, SUBCOMMANDS, argv)


def _csv(kind: type):
    def parse(text: str) -> list:
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from err

    return parse


def diagnose(argv: list[str]) -> int:
    from rldiag.diagnose import PLC_MODES, PRESETS, config_from_preset
    from rldiag.envs import GAMES
    from shared.jobs import check_output_folder

    p = subcommand_parser(
        "rldiag diagnose",
        """\
Run the three conditions (pix, simp, bc) for every game and seed with a step budget.

Each (game, condition, seed) cell writes OUT/cells/<game>__<condition>__s<seed>.json atomically and then
a done-marker in OUT/.job/; a finished cell is skipped, so re-running the same command resumes an
interrupted diagnosis (PPO cells also resume from their checkpoint in OUT/runs/). Every option is checked
before the first cell; OUT made with other settings is refused (--overwrite starts over there), and a
second diagnosis into the same OUT refuses naming the first (--wait waits for it). Results are normalised
with the published per-game (R_min, R_max) of openai/train-procgen (Cobbe et al. 2020). PLC/RLC are our definitions: see
`python -c "import rldiag.diagnose as d; help(d)"`.

Presets: cpu-smoke = Nature CNN, 16 envs x 64 steps (minutes on a CPU; not comparable to full runs);
gpu-full = CleanRL's IMPALA CNN, 64 envs x 256 steps. auto picks gpu-full when CUDA is present.
Explicit options override the preset.""",
    )
    p.add_argument(
        "--games", type=_csv(str), required=True, help=f"comma-separated, from: {', '.join(GAMES)} (or 'all')"
    )
    p.add_argument("--budget", type=int, required=True, help="env steps per PPO run")
    p.add_argument("--seeds", type=_csv(int), default=[0, 1, 2], help="comma-separated seeds (>= 3 advised)")
    p.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    p.add_argument("--preset", default="auto", choices=["auto", *PRESETS])
    p.add_argument(
        "--bc-frames",
        type=int,
        default=None,
        help="expert-labelled frames for bc (default: budget/4, at most 100000)",
    )
    p.add_argument("--bc-epochs", type=int, default=None, help="passes over the bc frames")
    p.add_argument("--distribution-mode", default=None, choices=["easy", "hard"])
    p.add_argument("--num-levels", type=int, default=None, help="training levels (0 = unbounded)")
    p.add_argument("--encoder", default=None, help="impala, nature or a shared backbone name")
    p.add_argument("--encoder-config", type=json_object, default=None, metavar="JSON")
    p.add_argument("--num-envs", type=int, default=None)
    p.add_argument("--num-steps", type=int, default=None)
    p.add_argument("--ppo", type=json_object, default=None, metavar="JSON", help="extra PPOConfig fields")
    p.add_argument(
        "--expert-checkpoint",
        default=None,
        help="expert for bc instead of the pix run: a checkpoint.pt path, may contain {game} and {seed}",
    )
    p.add_argument("--workers", type=int, default=0, help="dask LocalCluster worker processes (0: serial)")
    p.add_argument("--scheduler", default=None, help="address of a running dask scheduler (tcp://host:8786)")
    p.add_argument("--no-taxonomy", action="store_true", help="skip writing the taxonomy at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bars (over cells, or inside each cell)")
    p.add_argument("--plc", default="mean", choices=PLC_MODES, help="how PLC combines PLC_gap and PLC_bc")
    add_output_arguments(p)
    args = p.parse_args(argv)
    games = list(GAMES) if args.games == ["all"] else args.games
    check_output_folder(args.out)
    cfg = config_from_preset(
        games,
        args.preset,
        budget=args.budget,
        seeds=args.seeds,
        bc_frames=args.bc_frames,
        bc_epochs=args.bc_epochs,
        distribution_mode=args.distribution_mode,
        num_levels=args.num_levels,
        encoder=args.encoder,
        encoder_config=args.encoder_config,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        ppo=args.ppo,
        expert_checkpoint=args.expert_checkpoint,
    )
    from rldiag.sweep import run_diagnosis

    run_diagnosis(
        cfg,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet,
        overwrite=args.overwrite,
        wait=args.wait,
    )
    print(f"diagnosis in {args.out} ({len(cfg.games)} games x 3 conditions x {len(cfg.seeds)} seeds)")
    if not args.no_taxonomy:
        return taxonomy([args.out, "--plc", args.plc])
    return 0


def taxonomy(argv: list[str]) -> int:
    from rldiag.diagnose import PLC_MODES

    p = subcommand_parser(
        "rldiag taxonomy",
        """\
Place the games of a diagnosis folder on the PLC x RLC plane with bootstrap intervals, label each axis
high/low/uncertain against a threshold, give quadrants with their bootstrap stability, cluster the games
(hierarchical, average linkage) and write DIR/taxonomy.png, taxonomy.csv, taxonomy.json and curves.png.
A game needs >= 2 seeds with a finite AUC in every condition its PLC uses (pix, simp; bc unless --plc gap);
otherwise it is reported as "insufficient data", never placed in a quadrant.
The labels are ours (LCD-style), not the published paper's taxonomy.""",
    )
    p.add_argument("dir", help="folder written by rldiag diagnose")
    p.add_argument("--threshold", default="0.5", help="a number, or 'median' (across games, per resample)")
    p.add_argument("--plc", default="mean", choices=PLC_MODES)
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--ci", type=float, default=0.95)
    p.add_argument("--clusters", type=int, default=4)
    args = p.parse_args(argv)
    from rldiag.taxonomy import write_taxonomy

    threshold = args.threshold if args.threshold == "median" else float(args.threshold)
    paths = write_taxonomy(
        args.dir,
        threshold=threshold,
        plc=args.plc,
        n_boot=args.n_boot,
        ci=args.ci,
        n_clusters=args.clusters,
    )
    import pandas as pd

    table = pd.read_csv(paths["csv"])
    with pd.option_context("display.width", 140, "display.max_columns", 20):
        print(
            table[
                [
                    "game",
                    "PLC",
                    "PLC_low",
                    "PLC_high",
                    "RLC",
                    "RLC_low",
                    "RLC_high",
                    "quadrant",
                    "stability",
                    "cluster",
                ]
            ]
            .round(3)
            .to_string(index=False)
        )
    for game, note in json.loads(paths["json"].read_text())["insufficient data"].items():
        print(f"{game}: insufficient data ({note}); not placed in a quadrant")
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    return 0


def train(argv: list[str]) -> int:
    from rldiag.ppo_config import PPOConfig

    p = subcommand_parser(
        "rldiag train",
        """\
Train PPO (CleanRL ppo_procgen defaults) on one Procgen game. Logs progress.csv, episodes.csv and
TensorBoard under --run-dir with CleanRL metric names; checkpoint.pt resumes an interrupted run when the
same command is run again (the config must match, except --total-timesteps).""",
    )
    p.add_argument("--run-dir", required=True, help="folder for logs, checkpoint.pt and videos")
    add_dataclass_arguments(p, PPOConfig)
    args = vars(p.parse_args(argv))
    run_dir = args.pop("run_dir")
    from rldiag.ppo import train as train_ppo

    cfg = PPOConfig(**args)
    cfg.validate()
    result = train_ppo(cfg, run_dir, progress=True)
    returns = [r for _, r, _ in result.episodes[-20:]]
    mean = sum(returns) / len(returns) if returns else float("nan")
    print(
        f"{result.global_step} steps in {result.seconds:.0f} s; mean return of the last {len(returns)} "
        f"episodes {mean:.2f}; checkpoint {result.run_dir / 'checkpoint.pt'}"
    )
    return 0


def distill(argv: list[str]) -> int:
    p = subcommand_parser(
        "rldiag distill",
        """\
Behavioural cloning of a PPO checkpoint's actions from standard pixels: collect expert-labelled frames,
train a fresh encoder (a LightningModule) and print the held-out agreement curve.""",
    )
    p.add_argument("checkpoint", help="checkpoint.pt of rldiag train")
    p.add_argument("--frames", type=int, default=20_000, help="expert-labelled frames")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--encoder", default=None, help="student encoder (default: the expert's)")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the curve as JSON here")
    add_output_arguments(p, wait=False)
    args = p.parse_args(argv)
    from rldiag.distill import agreement_curve, collect_expert_frames
    from rldiag.envs import ProcgenVectorEnv
    from rldiag.ppo import load_agent
    from shared.jobs import atomic_write_json, claim_output

    out = None if args.out is None else claim_output(args.out, overwrite=args.overwrite)
    expert, cfg = load_agent(args.checkpoint)
    envs = ProcgenVectorEnv(
        cfg.game,
        args.num_envs,
        distribution_mode=cfg.distribution_mode,
        num_levels=cfg.num_levels,
        start_level=cfg.start_level,
    )
    data = collect_expert_frames(expert, envs, args.frames, seed=args.seed)
    curve = agreement_curve(data, encoder=args.encoder or cfg.encoder, epochs=args.epochs, seed=args.seed)
    print(f"majority rate {curve['majority_rate']:.3f}")
    for s, a in zip(curve["samples"], curve["agreement"]):
        print(f"{s:>9d} frames  agreement {a:.3f}")
    if out is not None:
        atomic_write_json(out, {k: v for k, v in curve.items() if k != "model"})
    return 0


def games(argv: list[str]) -> int:
    p = subcommand_parser("rldiag games", "List the Procgen games with modes, time-outs and (R_min, R_max).")
    p.parse_args(argv)
    from rldiag.envs import DISTRIBUTION_MODES, GAMES, TIMEOUTS
    from rldiag.normalization import RETURN_RANGES, SOURCE

    print(f"{'game':<10} {'timeout':>7}  {'easy (Rmin, Rmax)':<18} {'hard (Rmin, Rmax)':<18} modes")
    for g in GAMES:
        e, h = RETURN_RANGES[g]["easy"], RETURN_RANGES[g]["hard"]
        print(f"{g:<10} {TIMEOUTS[g]:>7}  {str(e):<18} {str(h):<18} {', '.join(DISTRIBUTION_MODES[g])}")
    print(f"\nnormalisation source: {SOURCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
