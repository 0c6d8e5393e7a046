"""PPO throughput and learning: rldiag.ppo vs Stable-Baselines3's PPO on the same Procgen game, CPU.

Both agents get the same game, encoder architecture (the IMPALA CNN by default, Procgen's standard encoder
and ``rldiag``'s default, given to SB3 as a features extractor; ``--encoder nature`` uses SB3's own
``NatureCNN`` against ours), number of envs, rollout length, minibatches, epochs and
every PPO coefficient (value clipping, entropy, reward normalisation by the return's std with the same
gamma and clip), the same env adapter (:class:`rldiag.envs.ProcgenVectorEnv`, behind
:class:`rldiag.sb3.ProcgenSB3VecEnv`) and the same seeds. Prints steps/s per run, the ratio ours/SB3
(target >= 1.5) and the mean normalised return of the last episodes per seed (learning should agree
within seed noise).

Throughput is reported twice: per wall-clock second, and per CPU second of this process
(``time.process_time``). On a machine shared with other jobs the wall-clock figure swings with their load;
the CPU-time figure does not, so the ratio is taken from it (use ``--threads 1``: with several threads
OpenMP's spin-waiting also counts as CPU time).

``--cpu-bf16`` adds a third run per seed: ours with the opt-in ``PPOConfig.cpu_bf16`` (bfloat16 autocast,
not the float32 default), reported as its own row with its own learning check against SB3 (float32).

With the IMPALA CNN both agents start from the same encoder weights (SB3's orthogonal re-initialisation of
the extractor is undone; its heads keep SB3's own orthogonal init, gains 0.01 and 1, as ours). SB3 is
otherwise used as a user gets it: its ``VecTransposeImage`` turns frames into contiguous NCHW float32, while
ours keeps uint8 NHWC frames whose permuted view reaches the convolutions channels-last (see
:func:`rldiag.encoders.frames_to_tensor`); that layout is most of the difference in the network pass.

    python benchmarks/rldiag_ppo_vs_sb3.py --game starpilot --steps 16384 --seeds 0,1,2 [--encoder nature]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np
import torch

from rldiag.envs import ProcgenVectorEnv
from rldiag.normalization import normalize_return
from rldiag.ppo import PPOConfig, make_agent, train
from rldiag.sb3 import ProcgenSB3VecEnv


def impala_extractor():
    """Our IMPALA CNN as an SB3 features extractor (SB3 hands it float NCHW in [0, 1])."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    from rldiag.encoders import ImpalaCNN

    class Impala(BaseFeaturesExtractor):
        def __init__(self, observation_space) -> None:
            super().__init__(observation_space, features_dim=256)
            self.net = ImpalaCNN((64, 64, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.net.convs(x)
            return torch.relu(self.net.fc(torch.flatten(torch.relu(x), 1)))

    return Impala


def run_sb3(cfg: PPOConfig) -> tuple[float, float, list[float]]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize, VecTransposeImage

    base = ProcgenSB3VecEnv(ProcgenVectorEnv(cfg.game, cfg.num_envs, distribution_mode=cfg.distribution_mode))
    venv = VecNormalize(
        VecTransposeImage(base),
        norm_obs=False,
        norm_reward=True,
        gamma=cfg.gamma,
        clip_reward=cfg.reward_clip,
    )
    policy_kwargs = {"normalize_images": True}
    if cfg.encoder == "impala":
        policy_kwargs.update(features_extractor_class=impala_extractor(), net_arch=[])
    else:
        policy_kwargs.update(net_arch=[])  # SB3's NatureCNN (512 units) then the two linear heads, like ours
    model = PPO(
        "CnnPolicy",
        venv,
        learning_rate=cfg.learning_rate,
        n_steps=cfg.num_steps,
        batch_size=cfg.minibatch_size,
        n_epochs=cfg.update_epochs,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clip_range=cfg.clip_coef,
        clip_range_vf=cfg.clip_coef,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        policy_kwargs=policy_kwargs,
        device="cpu",
        verbose=0,
    )
    if cfg.encoder == "impala":
        # SB3 re-initialises a features extractor orthogonally; start from the same encoder weights as
        # ours instead (train() seeds torch, then builds the agent first), so learning compares the algorithms
        torch.manual_seed(cfg.seed)
        obs_shape = base.observation_space.shape
        initial = make_agent(cfg, obs_shape, int(base.action_space.n)).encoder.state_dict()
        model.policy.features_extractor.net.load_state_dict(initial)
    venv.seed(cfg.seed)
    steps = cfg.num_iterations * cfg.batch_size
    start, cpu_start = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return steps / wall, steps / cpu, base.episodes


def run_ours(cfg: PPOConfig) -> tuple[float, float, list[float]]:
    env = ProcgenVectorEnv(cfg.game, cfg.num_envs, distribution_mode=cfg.distribution_mode, seed=cfg.seed)
    with tempfile.TemporaryDirectory() as d:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = train(cfg, d, envs=env)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return result.global_step / wall, result.global_step / cpu, [r for _, r, _ in result.episodes]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="starpilot")
    p.add_argument("--encoder", default="impala", choices=["impala", "nature"])
    p.add_argument("--steps", type=int, default=16384)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--num-steps", type=int, default=64)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--last", type=int, default=30, help="episodes averaged for the final return")
    p.add_argument("--cpu-bf16", action="store_true", help="also run ours with opt-in bfloat16 autocast")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"game {args.game}, encoder {args.encoder}, {args.num_envs} envs x {args.num_steps} steps, "
        f"{args.steps} steps per run, torch threads {args.threads}, device cpu"
    )
    # warm-up (first procgen env, torch's lazy optimiser imports) so neither side pays one-time costs
    warm = dict(
        game=args.game,
        encoder=args.encoder,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        num_minibatches=4,
        update_epochs=1,
        total_timesteps=args.num_envs * args.num_steps,
        seed=99,
        tensorboard=False,
        checkpoint_every=0,
        device="cpu",
    )
    run_ours(PPOConfig(**warm))
    run_sb3(PPOConfig(**warm))
    rows, bf16_rows = [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = PPOConfig(
            game=args.game,
            encoder=args.encoder,
            num_envs=args.num_envs,
            num_steps=args.num_steps,
            num_minibatches=4,
            update_epochs=3,
            total_timesteps=args.steps,
            seed=seed,
            tensorboard=False,
            checkpoint_every=0,
            device="cpu",
        )
        ours_wall, ours_cpu, ours_eps = run_ours(cfg)
        sb3_wall, sb3_cpu, sb3_eps = run_sb3(cfg)
        if args.cpu_bf16:
            bf16_wall, bf16_cpu, bf16_eps = run_ours(dataclasses.replace(cfg, cpu_bf16=True))
            bf16_score, sb3_score = final_score(bf16_eps, args), final_score(sb3_eps, args)
            bf16_rows.append((seed, bf16_wall, sb3_wall, bf16_cpu, sb3_cpu, bf16_score, sb3_score))
            print(
                f"seed {seed}: ours cpu_bf16 per wall s {bf16_wall:6.0f} ({bf16_wall / sb3_wall:4.2f}x SB3), "
                f"per CPU s {bf16_cpu:6.0f} ({bf16_cpu / sb3_cpu:4.2f}x SB3); "
                f"final normalised return {bf16_rows[-1][5]:.3f}"
            )
        rows.append(
            (
                seed,
                ours_wall,
                sb3_wall,
                ours_cpu,
                sb3_cpu,
                final_score(ours_eps, args),
                final_score(sb3_eps, args),
            )
        )
        print(
            f"seed {seed}: steps per wall s ours {ours_wall:6.0f} SB3 {sb3_wall:6.0f} "
            f"({ours_wall / sb3_wall:4.2f}x); "
            f"per CPU s ours {ours_cpu:6.0f} SB3 {sb3_cpu:6.0f} ({ours_cpu / sb3_cpu:4.2f}x); "
            f"final normalised return ours {rows[-1][5]:.3f} SB3 {rows[-1][6]:.3f}"
        )
    summarize("ours (float32, default)", rows, args)
    if bf16_rows:
        summarize("ours with cpu_bf16 (opt-in)", bf16_rows, args)


def summarize(label: str, rows: list[tuple], args: argparse.Namespace) -> None:
    """Throughput ratio and the learning check over seeds for one of our variants against SB3."""
    arr = np.array(rows)
    n = len(arr)
    diff = arr[:, 5] - arr[:, 6]
    se = np.sqrt(arr[:, 5].var(ddof=1) / n + arr[:, 6].var(ddof=1) / n) if n > 1 else float("nan")
    print(
        f"\n{label}: throughput ratio ours/SB3, per CPU second: {arr[:, 3].sum() / arr[:, 4].sum():.2f} "
        "(target >= 1.5); "
        f"per wall second: {arr[:, 1].sum() / arr[:, 2].sum():.2f}"
    )
    verdict = "within noise" if abs(diff.mean()) <= 2 * se else "outside noise"
    print(
        f"final normalised return (last {args.last} episodes): ours {arr[:, 5].mean():.3f} vs SB3 "
        f"{arr[:, 6].mean():.3f}; difference {diff.mean():+.3f}, 2 x standard error {2 * se:.3f} -> {verdict}"
    )


def final_score(episodes: list[float], args: argparse.Namespace) -> float:
    if not episodes:
        return float("nan")
    return float(normalize_return(episodes[-args.last :], args.game).mean())


if __name__ == "__main__":
    main()
