"""PPO overhead against the floor: wall time of rldiag.ppo.train divided by the time of its unavoidable work.

The floor, measured in the same process for the same batches: stepping the env for every rollout step
(random actions), the agent's inference forward on every rollout batch of ``num_envs`` frames, and the
forward + backward + optimiser step of every minibatch of every epoch. Anything PPO spends beyond that
(storage copies, GAE, reward normalisation, logging, checkpoints) is overhead. Target: ratio <= 1.2.
The ratio is printed per wall second and per CPU second of this process (steadier on a shared machine).
The default encoder is the Nature CNN: its network pass is ~10x cheaper than the IMPALA CNN's, so PPO's own
work is a larger share of the time and the test is stricter (``--encoder impala`` for the default agent).
``--cpu-bf16`` measures PPO with the opt-in bfloat16 autocast against a floor under the same autocast.

    python benchmarks/rldiag_overhead.py --game starpilot --iterations 16 [--cpu-bf16]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

import numpy as np
import torch

from rldiag.envs import ProcgenVectorEnv
from rldiag.ppo import PPOConfig, make_agent, ppo_loss, train


def floor_seconds(cfg: PPOConfig) -> tuple[dict[str, float], float]:
    """Time the env stepping, rollout inference and minibatch updates that ``cfg`` implies.

    Returns the wall seconds of each part and the CPU seconds of all of them.
    """
    cpu_start = time.process_time()
    precision = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if cfg.cpu_bf16 else contextlib.nullcontext
    env = ProcgenVectorEnv(cfg.game, cfg.num_envs, distribution_mode=cfg.distribution_mode, seed=cfg.seed)
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 15, (cfg.num_iterations * cfg.num_steps, cfg.num_envs))
    start = time.perf_counter()
    frames = []
    for i, a in enumerate(actions):
        obs, *_ = env.step(a)
        if i < cfg.num_steps:
            frames.append(obs)
    t_env = time.perf_counter() - start

    agent = make_agent(cfg, (64, 64, 3), 15)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    batch = torch.as_tensor(np.stack(frames))  # (num_steps, num_envs, 64, 64, 3)
    start = time.perf_counter()
    for _ in range(cfg.num_iterations):
        for step in range(cfg.num_steps):
            with torch.inference_mode(), precision():
                agent.get_action_and_value(batch[step])
    t_inference = time.perf_counter() - start

    flat = batch.reshape(-1, 64, 64, 3)
    b_actions = torch.randint(0, 15, (cfg.batch_size,))
    zeros = torch.zeros(cfg.batch_size)
    start = time.perf_counter()
    for _ in range(cfg.num_iterations * cfg.update_epochs):
        perm = torch.randperm(cfg.batch_size)
        for s in range(0, cfg.batch_size, cfg.minibatch_size):
            mb = perm[s : s + cfg.minibatch_size]
            with precision():
                _, logprob, entropy, value = agent.get_action_and_value(flat[mb], b_actions[mb])
            loss, _ = ppo_loss(
                logprob,
                zeros[mb],
                zeros[mb] + 1,
                value,
                zeros[mb],
                zeros[mb] + 1,
                entropy,
                clip_coef=cfg.clip_coef,
                clip_vloss=cfg.clip_vloss,
                ent_coef=cfg.ent_coef,
                vf_coef=cfg.vf_coef,
                norm_adv=cfg.norm_adv,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            optimizer.step()
    t_update = time.perf_counter() - start
    return {"env": t_env, "inference": t_inference, "update": t_update}, time.process_time() - cpu_start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="starpilot")
    p.add_argument("--encoder", default="nature")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--num-steps", type=int, default=64)
    p.add_argument("--iterations", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="alternating PPO/floor rounds; the fastest of each counts")
    p.add_argument("--cpu-bf16", action="store_true", help="opt-in bfloat16 autocast for PPO and the floor")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = PPOConfig(
        game=args.game,
        encoder=args.encoder,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        num_minibatches=4,
        update_epochs=3,
        total_timesteps=args.iterations * args.num_envs * args.num_steps,
        tensorboard=True,
        checkpoint_every=10,
        device="cpu",
        cpu_bf16=args.cpu_bf16,
    )
    warm = PPOConfig(**{**cfg.__dict__, "total_timesteps": cfg.batch_size, "tensorboard": False})
    with tempfile.TemporaryDirectory() as d:
        train(warm, d)  # one-time costs (first procgen env, lazy imports) excluded from both sides
    # The machine may be shared: alternate PPO and floor rounds and keep the fastest of each.
    t_ppo, cpu_ppo, parts, cpu_floor = float("inf"), float("inf"), None, float("inf")
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            start, cpu_start = time.perf_counter(), time.process_time()
            train(cfg, d)
            t_ppo = min(t_ppo, time.perf_counter() - start)
            cpu_ppo = min(cpu_ppo, time.process_time() - cpu_start)
        round_parts, round_cpu = floor_seconds(cfg)
        cpu_floor = min(cpu_floor, round_cpu)
        if parts is None or sum(round_parts.values()) < sum(parts.values()):
            parts = round_parts
    floor = sum(parts.values())
    print(
        f"game {cfg.game}, encoder {cfg.encoder}, {cfg.num_envs} envs x {cfg.num_steps} steps x "
        f"{cfg.num_iterations} iterations, {cfg.update_epochs} epochs x {cfg.num_minibatches} minibatches, "
        f"torch threads {args.threads}, cpu{', bfloat16 autocast' if cfg.cpu_bf16 else ''}; "
        "PPO logs CSV + TensorBoard and checkpoints every 10 iterations"
    )
    print("floor: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()) + f" = {floor:.2f} s")
    print(f"fastest of {args.repeats} rounds each")
    print(f"PPO wall time {t_ppo:.2f} s ({cfg.total_timesteps / t_ppo:.0f} steps/s)")
    print(f"overhead ratio PPO / floor: {t_ppo / floor:.3f} (target <= 1.2)")
    print(f"per CPU second: PPO {cpu_ppo:.2f} s / floor {cpu_floor:.2f} s = {cpu_ppo / cpu_floor:.3f}")


if __name__ == "__main__":
    main()
