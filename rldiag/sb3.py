"""A Stable-Baselines3 ``VecEnv`` over :class:`rldiag.envs.ProcgenVectorEnv` (SB3 2.x has no Procgen support).

SB3's ``PPO("CnnPolicy", env)`` refuses a gymnasium ``VectorEnv``; it needs its own ``VecEnv``
(auto-reset in the step, one ``info`` dict per sub-env). :class:`ProcgenSB3VecEnv` is that adapter: frames
stay ``(64, 64, 3)`` uint8 (SB3 wraps them in ``VecTransposeImage`` itself), finished episodes are reported
in SB3's ``Monitor`` format (``info["episode"] = {"r", "l"}``) so ``ep_info_buffer`` and the logger see them,
and ``info["TimeLimit.truncated"]`` marks procgen time-outs. procgen never renders the terminal state, so
there is no ``"terminal_observation"`` and SB3 treats time-outs as terminal (as rldiag's PPO and CleanRL
do). ``stable_baselines3`` is an optional dependency (the ``dev`` extra), imported when the adapter is
built.

Examples
--------
>>> from stable_baselines3 import PPO
>>> venv = ProcgenSB3VecEnv(ProcgenVectorEnv("starpilot", 4, distribution_mode="easy"))
>>> model = PPO("CnnPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, device="cpu")
>>> _ = model.learn(64)
>>> venv.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from rldiag.envs import ProcgenVectorEnv, _procgen_env_class

_procgen_env_class()  # import gym quietly before SB3 does (its import warns about the old gym)
from stable_baselines3.common.vec_env import VecEnv  # noqa: E402


class ProcgenSB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` view of a :class:`ProcgenVectorEnv` (which must auto-reset in the same step).

    Parameters
    ----------
    env : ProcgenVectorEnv
        Built with ``autoreset_mode=SAME_STEP`` and ``episode_statistics=True`` (its defaults).

    Attributes
    ----------
    episodes : list of float
        Return of every finished episode, in order (for benchmarks comparing learning).
    """

    def __init__(self, env: ProcgenVectorEnv) -> None:
        if env.autoreset_mode != AutoresetMode.SAME_STEP or not env.episode_statistics:
            raise ValueError(
                "ProcgenSB3VecEnv needs ProcgenVectorEnv(..., autoreset_mode=SAME_STEP, episode_statistics=True)"
            )
        self.env = env
        self.render_mode = env.render_mode
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self.episodes: list[float] = []
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        """Reset with the seed given to :meth:`seed` (else the env's own seed)."""
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.env.reset(seed=seed)
        self._reset_seeds()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{"level_seed": int(s)} for s in info["level_seed"]]
        for i in np.flatnonzero(done):
            infos[i]["episode"] = {"r": float(info["episode"]["r"][i]), "l": int(info["episode"]["l"][i])}
            infos[i]["TimeLimit.truncated"] = bool(truncated[i])
            self.episodes.append(float(info["episode"]["r"][i]))
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.env.render()
        return list(frames) if frames is not None else [None] * self.num_envs

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """The attribute of the procgen env (shared by all sub-envs), once per requested index."""
        target = self if attr_name in ("render_mode", "episodes") else self.env
        return [getattr(target, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        raise AttributeError(f"sub-envs of a procgen vector env have no separate methods ({method_name})")

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
