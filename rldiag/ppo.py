"""Proximal Policy Optimisation for Procgen (and any image-observation gymnasium vector env), CleanRL style.

Read it top to bottom: the config (every hyper-parameter, defaults = CleanRL ``ppo_procgen.py``), the env
factory, the agent, the three pieces tests import (:class:`RewardNormalizer`, :func:`compute_gae`,
:func:`ppo_loss`), then :func:`train`: seeding, envs, storage, resume, rollout, GAE, update, logging,
checkpoint. Logs use CleanRL's metric names (``charts/episodic_return``, ``charts/SPS``,
``losses/approx_kl``, ...) keyed by env steps, in ``progress.csv``, ``episodes.csv`` and TensorBoard.

Differences from CleanRL, on purpose:

* **terminated vs truncated.** An episode end cuts the GAE recursion; a *truncated* step is bootstrapped
  with ``gamma * V(final_obs)`` when the env reports ``info["final_obs"]`` (gymnasium ``SAME_STEP``
  autoreset). procgen never exposes the final observation, so for procgen a time-out is treated as terminal,
  as CleanRL does for every end.
* **Checkpoint and resume** (CleanRL has none, cleanrl#400): ``checkpoint.pt`` holds the model, optimiser,
  AMP scaler, reward normaliser, RNG and (for procgen) the env's own state, so a resumed run continues the
  same trajectories. Written atomically; loaded with ``weights_only=True``.
* Rollout frames stay uint8 until the encoder; AMP (float16) on CUDA. On the CPU the default is float32;
  ``cpu_bf16`` opts in to bfloat16 autocast (the encoder's convolutions then run about twice as fast on CPUs
  with AVX-512-BF16 or AMX; numerics change, so it is off by default and recorded in the config).

Example (a CPU smoke run; 25M steps need a GPU)::

    rldiag train --game coinrun --encoder nature --total-timesteps 20000 --num-envs 16 --num-steps 64 \\
        --run-dir runs/coinrun_smoke
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from gymnasium.spaces import Discrete
from gymnasium.vector import AutoresetMode, VectorEnv

from rldiag.encoders import make_encoder
from rldiag.envs import ProcgenVectorEnv
from rldiag.ppo_config import PPOConfig
from shared.checkpoints import load_checkpoint
from shared.devices import autocast, default_device
from shared.jobs import atomic_path


def make_env(cfg: PPOConfig) -> ProcgenVectorEnv:
    """The training env a config describes (seeded with ``cfg.seed`` on the first reset)."""
    return ProcgenVectorEnv(
        cfg.game,
        cfg.num_envs,
        distribution_mode=cfg.distribution_mode,
        num_levels=cfg.num_levels,
        start_level=cfg.start_level,
        seed=cfg.seed,
        simplified=cfg.simplified,
    )


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Shared encoder with an actor (logits) and a critic (value) head; input uint8 ``(B, H, W, C)``."""

    def __init__(self, encoder: nn.Module, n_actions: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.actor = layer_init(nn.Linear(encoder.feature_dim, n_actions), std=0.01)
        self.critic = layer_init(nn.Linear(encoder.feature_dim, 1), std=1.0)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.encoder(x)).squeeze(-1)

    def get_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(self.encoder(x))

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        hidden = self.encoder(x)
        logits = self.actor(hidden).float()
        probs = torch.distributions.Categorical(logits=logits, validate_args=False)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(hidden).float().squeeze(-1)


def make_agent(cfg: PPOConfig, obs_shape: tuple[int, ...], n_actions: int) -> Agent:
    return Agent(make_encoder(cfg.encoder, tuple(obs_shape), **cfg.encoder_config), n_actions)


class RewardNormalizer:
    """Divide rewards by the running std of the discounted return (gym's ``NormalizeReward``), then clip.

    The discounted return restarts at every episode end. State is three tensors, saved in checkpoints.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float, epsilon: float = 1e-8) -> None:
        self.gamma, self.clip, self.epsilon = gamma, clip, epsilon
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, reward: np.ndarray, episode_end: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + reward
        self._update(self.returns)
        self.returns[episode_end] = 0.0
        return np.clip(reward / np.sqrt(self.var + self.epsilon), -self.clip, self.clip)

    def _update(self, x: np.ndarray) -> None:  # parallel variance update (Chan et al.)
        batch_mean, batch_var, batch_count = x.mean(), x.var(), x.size
        delta, total = batch_mean - self.mean, self.count + batch_count
        self.mean += delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var, self.count = m2 / total, total

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "returns": torch.from_numpy(self.returns.copy()),
            "stats": torch.tensor([self.mean, self.var, self.count], dtype=torch.float64),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.returns = state["returns"].numpy().copy()
        self.mean, self.var, self.count = (float(v) for v in state["stats"])


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    episode_ends: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over a rollout.

    Parameters
    ----------
    rewards, values, episode_ends : Tensor of shape (num_steps, num_envs)
        Reward of step ``t``, value of the observation step ``t`` acted on, and whether step ``t`` ended
        an episode (terminated or truncated; 1.0/0.0).
    last_value : Tensor of shape (num_envs,)
        Value of the observation after the last step.
    gamma, gae_lambda : float

    Returns
    -------
    advantages, returns : Tensor of shape (num_steps, num_envs); ``returns = advantages + values``.

    Notes
    -----
    ``delta_t = r_t + gamma (1 - end_t) V_{t+1} - V_t`` and
    ``A_t = delta_t + gamma lambda (1 - end_t) A_{t+1}``.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(last_value)
    for t in reversed(range(num_steps)):
        next_values = last_value if t == num_steps - 1 else values[t + 1]
        nonterminal = 1.0 - episode_ends[t]
        delta = rewards[t] + gamma * next_values * nonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * nonterminal * lastgaelam
    return advantages, advantages + values


def ppo_loss(
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    new_value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    *,
    clip_coef: float,
    clip_vloss: bool,
    ent_coef: float,
    vf_coef: float,
    norm_adv: bool,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped PPO objective for one minibatch (all inputs of shape (minibatch,)).

    Returns
    -------
    loss : scalar Tensor ``pg_loss - ent_coef * entropy + vf_coef * v_loss``
    stats : dict with ``policy_loss``, ``value_loss``, ``entropy``, ``old_approx_kl``, ``approx_kl``
        (the low-variance estimator ``E[(r - 1) - log r]``) and ``clipfrac``.
    """
    logratio = new_logprob - old_logprob
    ratio = logratio.exp()
    with torch.no_grad():
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > clip_coef).float().mean()
    if norm_adv and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg_loss = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)).mean()
    if clip_vloss:
        v_clipped = old_value + torch.clamp(new_value - old_value, -clip_coef, clip_coef)
        v_loss = 0.5 * torch.max((new_value - returns) ** 2, (v_clipped - returns) ** 2).mean()
    else:
        v_loss = 0.5 * ((new_value - returns) ** 2).mean()
    entropy_loss = entropy.mean()
    loss = pg_loss - ent_coef * entropy_loss + vf_coef * v_loss
    stats = {
        "policy_loss": pg_loss.item(),
        "value_loss": v_loss.item(),
        "entropy": entropy_loss.item(),
        "old_approx_kl": old_approx_kl.item(),
        "approx_kl": approx_kl.item(),
        "clipfrac": clipfrac.item(),
    }
    return loss, stats


@dataclass
class PPOResult:
    """What :func:`train` returns: the agent, every finished episode and where the logs are."""

    agent: Agent
    episodes: list[tuple[int, float, int]]  # (global_step at the episode's end, return, length)
    run_dir: Path
    global_step: int
    seconds: float


def train(
    cfg: PPOConfig,
    run_dir: str | Path,
    *,
    envs: VectorEnv | None = None,
    resume: bool = True,
    progress: bool = False,
    progress_label: str | None = None,
    progress_position: int | None = None,
) -> PPOResult:
    """Train PPO for ``cfg.total_timesteps`` env steps, logging and checkpointing under ``run_dir``.

    ``envs`` replaces the procgen env the config describes (any gymnasium vector env with uint8 image
    observations, discrete actions and ``SAME_STEP`` autoreset). With ``resume`` an existing
    ``run_dir/checkpoint.pt`` is continued; its config must match except ``total_timesteps``.
    ``progress`` shows a tqdm bar in env steps with steps/s and the mean return of the last 20 episodes
    (``progress_label`` names it, ``progress_position`` stacks it under another bar and removes it at
    the end).
    """
    cfg.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    # ---- seeding
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.deterministic = cfg.torch_deterministic
    device = default_device() if cfg.device == "auto" else torch.device(cfg.device)
    use_amp = cfg.amp and device.type == "cuda"

    def mixed_precision() -> Any:  # float16 on CUDA (cfg.amp); bfloat16 on the CPU only when cfg.cpu_bf16
        if cfg.cpu_bf16 and device.type == "cpu":
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return autocast(device, enabled=use_amp)

    # ---- environments
    envs = envs if envs is not None else make_env(cfg)
    assert isinstance(envs.single_action_space, Discrete), "only discrete action spaces are supported"
    autoreset = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if autoreset != AutoresetMode.SAME_STEP:
        raise ValueError(
            f"PPO needs an env with SAME_STEP autoreset, got {autoreset}; build gymnasium envs with "
            "vector_kwargs={'autoreset_mode': AutoresetMode.SAME_STEP}, and rldiag/<game>-v0 or "
            "ProcgenVectorEnv with autoreset_mode=AutoresetMode.SAME_STEP, episode_statistics=True"
        )
    if envs.num_envs != cfg.num_envs:
        raise ValueError(f"envs has {envs.num_envs} sub-envs but cfg.num_envs = {cfg.num_envs}")
    obs_shape = envs.single_observation_space.shape

    # ---- agent and optimiser
    agent = make_agent(cfg, obs_shape, int(envs.single_action_space.n)).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    reward_normalizer = RewardNormalizer(cfg.num_envs, cfg.gamma, cfg.reward_clip)

    # ---- rollout storage (frames stay uint8)
    obs = torch.zeros((cfg.num_steps, cfg.num_envs) + tuple(obs_shape), dtype=torch.uint8, device=device)
    actions = torch.zeros((cfg.num_steps, cfg.num_envs), dtype=torch.long, device=device)
    logprobs = torch.zeros((cfg.num_steps, cfg.num_envs), device=device)
    rewards = torch.zeros((cfg.num_steps, cfg.num_envs), device=device)
    episode_ends = torch.zeros((cfg.num_steps, cfg.num_envs), device=device)
    values = torch.zeros((cfg.num_steps, cfg.num_envs), device=device)

    # ---- start, or resume from the checkpoint
    next_obs_np, _ = envs.reset(seed=cfg.seed)
    start_iteration, global_step, episodes = 1, 0, []
    ckpt_path = run_dir / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        check_resume_config(cfg, ckpt["config"])
        agent.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        reward_normalizer.load_state_dict(ckpt["reward_normalizer"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if "env_state" in ckpt and hasattr(envs, "set_state"):
            next_obs_np = envs.set_state(_env_state_from_tensors(ckpt["env_state"]))
        start_iteration, global_step = int(ckpt["iteration"]) + 1, int(ckpt["global_step"])
        episodes = [(int(s), float(r), int(n)) for s, r, n in ckpt["episodes"].tolist()]
    next_obs = torch.as_tensor(next_obs_np, device=device)
    logger = MetricLogger(run_dir, cfg, tensorboard=cfg.tensorboard, append=start_iteration > 1)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    start_time, start_step = time.perf_counter(), global_step
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            desc=progress_label or f"PPO {cfg.game}",
            unit="step",
            unit_scale=True,
            initial=global_step,
            total=cfg.num_iterations * cfg.batch_size,
            position=progress_position,
            leave=progress_position is None,
        )
    for iteration in range(start_iteration, cfg.num_iterations + 1):
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - (iteration - 1.0) / cfg.num_iterations)

        # ---- rollout
        iteration_episodes = []
        for step in range(cfg.num_steps):
            global_step += cfg.num_envs
            obs[step] = next_obs
            with torch.inference_mode(), mixed_precision():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            values[step], actions[step], logprobs[step] = value, action, logprob

            next_obs_np, reward, terminated, truncated, infos = envs.step(action.cpu().numpy())
            ended = np.logical_or(terminated, truncated)
            reward = reward_normalizer(reward, ended) if cfg.normalize_reward else reward
            if truncated.any() and "final_obs" in infos:  # bootstrap time-outs when the env can
                final = torch.as_tensor(np.stack(infos["final_obs"][truncated]), device=device)
                with torch.inference_mode(), mixed_precision():
                    reward = reward.copy()
                    reward[truncated] += cfg.gamma * agent.get_value(final).float().cpu().numpy()
            rewards[step] = torch.as_tensor(reward, device=device, dtype=torch.float32)
            episode_ends[step] = torch.as_tensor(ended, device=device, dtype=torch.float32)
            next_obs = torch.as_tensor(next_obs_np, device=device)
            if "_episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    ep = (global_step, float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i]))
                    iteration_episodes.append(ep)
                    logger.episode(*ep)

        # ---- advantages
        with torch.inference_mode(), mixed_precision():
            last_value = agent.get_value(next_obs).float()
        advantages, returns = compute_gae(rewards, values, episode_ends, last_value, cfg.gamma, cfg.gae_lambda)

        # ---- flatten the batch
        b_obs = obs.reshape((-1,) + tuple(obs_shape))
        b_actions, b_logprobs = actions.reshape(-1), logprobs.reshape(-1)
        b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)

        # ---- optimise the policy and value network
        for _epoch in range(cfg.update_epochs):
            b_inds = torch.randperm(cfg.batch_size, device=device)
            for start in range(0, cfg.batch_size, cfg.minibatch_size):
                mb = b_inds[start : start + cfg.minibatch_size]
                with mixed_precision():
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
                loss, stats = ppo_loss(
                    newlogprob,
                    b_logprobs[mb],
                    b_advantages[mb],
                    newvalue,
                    b_values[mb],
                    b_returns[mb],
                    entropy,
                    clip_coef=cfg.clip_coef,
                    clip_vloss=cfg.clip_vloss,
                    ent_coef=cfg.ent_coef,
                    vf_coef=cfg.vf_coef,
                    norm_adv=cfg.norm_adv,
                )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            if cfg.target_kl is not None and stats["approx_kl"] > cfg.target_kl:
                break

        # ---- logging
        y_pred, y_true = b_values.float().cpu().numpy(), b_returns.float().cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
        sps = (global_step - start_step) / (time.perf_counter() - start_time)
        ep_returns = [r for _, r, _ in iteration_episodes]
        logger.iteration(
            global_step,
            {
                "charts/learning_rate": optimizer.param_groups[0]["lr"],
                "charts/episodic_return": float(np.mean(ep_returns)) if ep_returns else float("nan"),
                "charts/episodic_length": float(np.mean([n for *_, n in iteration_episodes]))
                if iteration_episodes
                else float("nan"),
                **{f"losses/{k}": v for k, v in stats.items()},
                "losses/explained_variance": float(explained_var),
                "charts/SPS": sps,
            },
        )
        episodes.extend(iteration_episodes)
        if bar is not None:
            recent = [r for _, r, _ in episodes[-20:]]
            # tqdm shows env steps and steps/s itself
            bar.set_postfix_str("recent return " + (f"{np.mean(recent):.2f}" if recent else "n/a"), refresh=False)
            bar.update(cfg.batch_size)
        if cfg.video_every and iteration % cfg.video_every == 0:
            write_gif(obs[:, 0].cpu().numpy(), run_dir / "videos" / f"iteration_{iteration:06d}.gif")

        # ---- checkpoint
        if (cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0) or iteration == cfg.num_iterations:
            save_checkpoint(
                ckpt_path,
                cfg,
                agent,
                optimizer,
                scaler,
                reward_normalizer,
                envs,
                iteration,
                global_step,
                episodes,
            )
    logger.close()
    if bar is not None:
        bar.close()
    return PPOResult(agent, episodes, run_dir, global_step, time.perf_counter() - start_time)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints, logs and videos
# ---------------------------------------------------------------------------------------------------------


def save_checkpoint(
    path: Path,
    cfg: PPOConfig,
    agent: Agent,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    reward_normalizer: RewardNormalizer,
    envs: VectorEnv,
    iteration: int,
    global_step: int,
    episodes: list[tuple[int, float, int]],
) -> None:
    """Write everything needed to resume as tensors and plain values (``weights_only``), atomically."""
    ckpt: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "model": agent.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "reward_normalizer": reward_normalizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "iteration": iteration,
        "global_step": global_step,
        "episodes": torch.tensor(episodes, dtype=torch.float64).reshape(-1, 3),
    }
    if hasattr(envs, "get_state"):
        ckpt["env_state"] = _env_state_to_tensors(envs.get_state())
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_agent(
    path: str | Path,
    n_actions: int = 15,
    obs_shape: tuple[int, ...] = (64, 64, 3),
    map_location: str | torch.device = "cpu",
) -> tuple[Agent, PPOConfig]:
    """Rebuild a trained :class:`Agent` and its config from ``checkpoint.pt`` (weights only)."""
    ckpt = load_checkpoint(path, map_location=map_location, expect="ppo")
    cfg = PPOConfig(**ckpt["config"])
    agent = make_agent(cfg, obs_shape, n_actions)
    agent.load_state_dict(ckpt["model"])
    return agent.eval(), cfg


def check_resume_config(cfg: PPOConfig, saved: dict[str, Any]) -> None:
    """Refuse to resume a run under a different config (``total_timesteps`` may grow)."""
    current = dataclasses.asdict(cfg)
    saved = {**dataclasses.asdict(PPOConfig()), **saved}  # a field added since the checkpoint has its default
    differing = sorted(k for k in current if k != "total_timesteps" and saved[k] != current[k])
    if differing:
        details = "; ".join(f"{k}: checkpoint {saved[k]!r} vs now {current[k]!r}" for k in differing)
        raise ValueError(
            f"cannot resume: config differs from the checkpoint's ({details}). Use a new run "
            "directory or the checkpoint's settings."
        )


def _env_state_to_tensors(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "procgen": [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in state["procgen"]],
        "returns": torch.from_numpy(np.asarray(state["returns"])),
        "lengths": torch.from_numpy(np.asarray(state["lengths"])),
        "seed": int(state["seed"]),
    }


def _env_state_from_tensors(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "procgen": [t.cpu().numpy().tobytes() for t in state["procgen"]],
        "returns": state["returns"].cpu().numpy(),
        "lengths": state["lengths"].cpu().numpy(),
        "seed": int(state["seed"]),
    }


class MetricLogger:
    """CSV files (``progress.csv`` per iteration, ``episodes.csv`` per episode) and optional TensorBoard."""

    def __init__(self, run_dir: Path, cfg: PPOConfig, *, tensorboard: bool, append: bool) -> None:
        mode = "a" if append else "w"
        self._episodes_file = open(run_dir / "episodes.csv", mode, newline="")  # noqa: SIM115
        self._episodes = csv.writer(self._episodes_file)
        if not append:
            self._episodes.writerow(["global_step", "charts/episodic_return", "charts/episodic_length"])
        self._progress_path = run_dir / "progress.csv"
        self._progress_header = append and self._progress_path.exists()
        self._progress_mode = mode
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            table = "\n".join(f"|{k}|{v}|" for k, v in dataclasses.asdict(cfg).items())
            self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")

    def episode(self, global_step: int, episodic_return: float, length: int) -> None:
        self._episodes.writerow([global_step, episodic_return, length])
        if self.writer is not None:
            self.writer.add_scalar("charts/episodic_return", episodic_return, global_step)
            self.writer.add_scalar("charts/episodic_length", length, global_step)

    def iteration(self, global_step: int, metrics: dict[str, float]) -> None:
        with open(self._progress_path, self._progress_mode, newline="") as f:
            w = csv.DictWriter(f, fieldnames=["global_step", *metrics])
            if not self._progress_header:
                w.writeheader()
                self._progress_header = True
            w.writerow({"global_step": global_step, **metrics})
        self._progress_mode = "a"
        self._episodes_file.flush()
        if self.writer is not None:
            for k, v in metrics.items():
                if not k.startswith("charts/episodic"):
                    self.writer.add_scalar(k, v, global_step)

    def close(self) -> None:
        self._episodes_file.close()
        if self.writer is not None:
            self.writer.close()


def write_gif(frames: np.ndarray, path: Path, fps: int = 15) -> Path:
    """Write ``(time, row, column, 3)`` uint8 frames as an animated GIF (from observations, not render)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
