"""The PPO hyper-parameters (:class:`PPOConfig`), apart from :mod:`rldiag.ppo` so that ``rldiag train --help``
builds its options without importing torch. :mod:`rldiag.ppo` re-exports it; use either name.

Examples
--------
>>> cfg = PPOConfig(total_timesteps=2048, num_envs=4, num_steps=64, num_minibatches=4)
>>> cfg.batch_size, cfg.minibatch_size, cfg.num_iterations
(256, 64, 8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class PPOConfig:
    """Every PPO hyper-parameter. Sizes derived from these (batch size, iterations) are properties."""

    # --- environment
    game: str = field(default="coinrun", metadata={"help": "Procgen game (one of rldiag.envs.GAMES)"})
    distribution_mode: str = field(default="easy", metadata={"help": "easy, hard or a game-specific mode"})
    num_levels: int = field(default=0, metadata={"help": "number of training levels (0 = unbounded)"})
    start_level: int = field(default=0, metadata={"help": "first level seed"})
    simplified: bool = field(default=False, metadata={"help": "perceptually simplified rendering"})
    # --- agent
    encoder: str = field(default="impala", metadata={"help": "impala, nature or a shared backbone name"})
    encoder_config: dict = field(default_factory=dict, metadata={"help": "encoder options (JSON)"})
    # --- run
    seed: int = field(default=1, metadata={"help": "seed of torch, numpy and the env's rand_seed"})
    total_timesteps: int = field(default=25_000_000, metadata={"help": "env steps over all envs"})
    num_envs: int = field(default=64, metadata={"help": "parallel environments"})
    num_steps: int = field(default=256, metadata={"help": "rollout length per env and iteration"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA if present), cpu or cuda[:i]"})
    amp: bool = field(default=True, metadata={"help": "float16 autocast + grad scaling on CUDA"})
    cpu_bf16: bool = field(
        default=False,
        metadata={"help": "opt-in bfloat16 autocast on the CPU (~2x faster CNN with AVX-512-BF16; not float32-exact)"},
    )
    torch_deterministic: bool = field(default=True, metadata={"help": "cudnn.deterministic"})
    # --- optimisation
    learning_rate: float = field(default=5e-4, metadata={"help": "Adam learning rate"})
    anneal_lr: bool = field(default=False, metadata={"help": "linearly anneal the learning rate to 0"})
    num_minibatches: int = field(default=8, metadata={"help": "minibatches per epoch"})
    update_epochs: int = field(default=3, metadata={"help": "passes over each rollout"})
    max_grad_norm: float = field(default=0.5, metadata={"help": "global gradient-norm clip"})
    target_kl: float | None = field(default=None, metadata={"help": "stop the update early above this KL"})
    # --- PPO objective
    gamma: float = field(default=0.999, metadata={"help": "discount factor"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda"})
    norm_adv: bool = field(default=True, metadata={"help": "normalise advantages per minibatch"})
    clip_coef: float = field(default=0.2, metadata={"help": "policy ratio clip"})
    clip_vloss: bool = field(default=True, metadata={"help": "clip the value loss like the policy"})
    ent_coef: float = field(default=0.01, metadata={"help": "entropy bonus coefficient"})
    vf_coef: float = field(default=0.5, metadata={"help": "value loss coefficient"})
    normalize_reward: bool = field(default=True, metadata={"help": "scale rewards by the return's std"})
    reward_clip: float = field(default=10.0, metadata={"help": "clip normalised rewards to +-this"})
    # --- logging and checkpoints
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard event files"})
    checkpoint_every: int = field(default=10, metadata={"help": "iterations between checkpoints (0: end only)"})
    video_every: int = field(default=0, metadata={"help": "iterations between GIFs of env 0 (0: none)"})

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.batch_size

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for impossible settings."""
        for name in ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"num_envs * num_steps = {self.batch_size} must be divisible by num_minibatches "
                f"= {self.num_minibatches}"
            )
        if self.num_iterations < 1:
            raise ValueError(
                f"total_timesteps = {self.total_timesteps} is less than one rollout "
                f"(num_envs * num_steps = {self.batch_size})"
            )
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got {self.gamma}, {self.gae_lambda}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        from rldiag.encoders import make_encoder  # torch: imported only when a config is validated

        try:  # an unknown encoder or options it does not take fail here, not after the first rollout
            make_encoder(self.encoder, **self.encoder_config)
        except TypeError as err:
            raise ValueError(
                f"encoder_config {self.encoder_config} does not fit encoder {self.encoder!r}: {err}"
            ) from None
