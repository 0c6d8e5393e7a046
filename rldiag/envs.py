"""Procgen as a gymnasium ``VectorEnv``, and the observation conditions the diagnostics compare.

:class:`ProcgenVectorEnv` adapts procgen's ``ProcgenGym3Env`` (the fast vectorised C++ path) to the
gymnasium 1.x vector API: ``reset(seed=...)`` / ``step(actions)`` returning ``(obs, reward, terminated,
truncated, info)``, ``Box(0, 255, (64, 64, 3), uint8)`` observations and ``Discrete(15)`` actions per
sub-environment. The old ``gym``/``gym3`` packages procgen depends on are imported only here.

Facts the adapter encodes (openai/procgen 0.10.7; see the project reference ``rldiag.md``):

* **Auto-reset in the same step** (gymnasium ``AutoresetMode.SAME_STEP``): when an episode ends, the
  observation returned is already the first of the next episode. procgen does not expose the final
  observation, so ``info`` has no ``"final_obs"``; agents treat truncated steps as terminal for procgen.
* **terminated vs truncated.** procgen reports only "episode over". An episode that reaches the game's step
  limit (:data:`TIMEOUTS`) without completing the level is *truncated*; every other end is *terminated*.
* **Seeding.** ``reset(seed=s)`` (re)creates the gym3 env with ``rand_seed=s``: the same seed, level range
  and actions reproduce the trajectory exactly. Without a seed the constructor's ``seed`` is used, never
  procgen's ``SystemRandom`` default. Re-creating leaks a little memory in procgen (openai/procgen#68), so
  reset once and keep the env.
* **Episode statistics** like gymnasium's ``RecordEpisodeStatistics``: when sub-env ``i`` ends an episode,
  ``info["episode"]["r"][i]`` / ``["l"][i]`` hold its return and length and ``info["_episode"][i]`` is
  True. ``info["level_seed"]``, ``info["prev_level_seed"]`` and ``info["prev_level_complete"]`` come from
  procgen.
* **State.** :meth:`ProcgenVectorEnv.get_state` / :meth:`~ProcgenVectorEnv.set_state` save and restore
  every sub-env (procgen's serialised game state, 21-37 KB of bytes each, plus the adapter's episode
  counters); a restored env replays identically.
* **Privileged state.** procgen 0.10.7 exposes no parsed game state for any of the 16 games: ``get_state``
  returns an undocumented serialisation whose layout differs between builds. rldiag therefore offers no
  privileged-state observation and says so (:data:`PRIVILEGED_STATE_GAMES` is empty); the perceptually
  simplified rendering (``simplified=True``) is the "perception made easy" condition.

Any other gymnasium vector env with image observations ``(H, W, C)`` uint8 and discrete actions works with
the agents through :func:`make_vector_env` (``"gymnasium:<id>"``), with gymnasium's own
``RecordEpisodeStatistics`` supplying the same ``info["episode"]`` keys.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from shared.validation import check_choice

#: The 16 Procgen games.
GAMES: tuple[str, ...] = (
    "bigfish",
    "bossfight",
    "caveflyer",
    "chaser",
    "climber",
    "coinrun",
    "dodgeball",
    "fruitbot",
    "heist",
    "jumper",
    "leaper",
    "maze",
    "miner",
    "ninja",
    "plunder",
    "starpilot",
)

#: Episode step limit per game (procgen source, as tabulated by sail-sg/envpool).
TIMEOUTS: dict[str, int] = {
    "bigfish": 6000,
    "bossfight": 4000,
    "caveflyer": 1000,
    "chaser": 1000,
    "climber": 1000,
    "coinrun": 1000,
    "dodgeball": 1000,
    "fruitbot": 1000,
    "heist": 1000,
    "jumper": 1000,
    "leaper": 500,
    "maze": 500,
    "miner": 1000,
    "ninja": 1000,
    "plunder": 4000,
    "starpilot": 1000,
}

_MODE_CODES = {"easy": 0, "hard": 1, "extreme": 2, "memory": 10, "exploration": 20}
_GAME_MODES: dict[str, tuple[int, ...]] = {
    "bigfish": (0, 1),
    "bossfight": (0, 1),
    "caveflyer": (0, 1, 10, 20),
    "chaser": (0, 1, 2),
    "climber": (0, 1, 20),
    "coinrun": (0, 1, 20),
    "dodgeball": (0, 1, 2, 10),
    "fruitbot": (0, 1),
    "heist": (0, 1, 10, 20),
    "jumper": (0, 1, 10, 20),
    "leaper": (0, 1, 2, 20),
    "maze": (0, 1, 10, 20),
    "miner": (0, 1, 10),
    "ninja": (0, 1, 20),
    "plunder": (0, 1),
    "starpilot": (0, 1, 2),
}

#: Distribution modes each game supports.
DISTRIBUTION_MODES: dict[str, tuple[str, ...]] = {
    g: tuple(m for m, c in _MODE_CODES.items() if c in codes) for g, codes in _GAME_MODES.items()
}

#: Games with a documented privileged (symbolic) state observation: none in procgen 0.10.7.
PRIVILEGED_STATE_GAMES: tuple[str, ...] = ()

#: The rendering options of the perceptually simplified condition.
SIMPLIFIED_OPTIONS: dict[str, bool] = {
    "use_backgrounds": False,
    "restrict_themes": True,
    "use_monochrome_assets": True,
}

#: Names of the 15 procgen actions, in action-index order (unused ones are no-ops in most games).
ACTION_NAMES: tuple[str, ...] = (
    "left-down",
    "left",
    "left-up",
    "down",
    "noop",
    "up",
    "right-down",
    "right",
    "right-up",
    "D",
    "A",
    "W",
    "S",
    "Q",
    "E",
)


def _procgen_env_class():
    """Import procgen quietly: ``import procgen`` imports the unmaintained ``gym``, which prints a banner."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stderr(io.StringIO()),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        from procgen import ProcgenGym3Env
    return ProcgenGym3Env


def procgen_game_names() -> tuple[str, ...]:
    """The game names the installed procgen build knows (to check :data:`GAMES` against)."""
    _procgen_env_class()
    from procgen.env import ENV_NAMES

    return tuple(ENV_NAMES)


def check_procgen_options(game: str, distribution_mode: str, num_levels: int, start_level: int) -> None:
    """Validate a game, its distribution mode and the level range, with errors listing valid values."""
    check_choice(game, GAMES, name="game")
    check_choice(distribution_mode, DISTRIBUTION_MODES[game], name=f"distribution_mode for {game}")
    if num_levels < 0 or start_level < 0:
        raise ValueError(
            f"num_levels and start_level must be >= 0 (0 levels = unbounded); "
            f"got num_levels={num_levels}, start_level={start_level}"
        )
    if distribution_mode == "exploration" and (num_levels, start_level) != (0, 0):
        raise ValueError("exploration mode fixes the level itself; leave num_levels=0 and start_level=0")


class ProcgenVectorEnv(VectorEnv):
    """``num_envs`` copies of one Procgen game behind the gymnasium ``VectorEnv`` API.

    Parameters
    ----------
    game : str
        One of :data:`GAMES`.
    num_envs : int
        Number of sub-environments stepped together.
    distribution_mode : str
        ``"easy"``, ``"hard"`` (procgen's default), or a game-specific mode in :data:`DISTRIBUTION_MODES`.
    num_levels, start_level : int
        Levels are drawn from ``[start_level, start_level + num_levels)``; ``num_levels=0`` is unbounded.
    seed : int
        ``rand_seed`` used by the first :meth:`reset` without an explicit seed.
    simplified : bool
        Perceptually simplified rendering (:data:`SIMPLIFIED_OPTIONS`: no backgrounds, one theme,
        monochrome sprites).
    use_sequential_levels, center_agent, paint_vel_info : bool
        procgen options, passed through.
    num_threads : int
        procgen's worker threads for stepping.

    Examples
    --------
    >>> env = ProcgenVectorEnv("coinrun", num_envs=2, distribution_mode="easy", seed=0)
    >>> obs, info = env.reset()
    >>> obs.shape, obs.dtype
    ((2, 64, 64, 3), dtype('uint8'))
    >>> obs, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.int64))
    >>> env.close()
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
    records_episode_statistics = True

    def __init__(
        self,
        game: str,
        num_envs: int,
        *,
        distribution_mode: str = "easy",
        num_levels: int = 0,
        start_level: int = 0,
        seed: int = 0,
        simplified: bool = False,
        use_sequential_levels: bool = False,
        center_agent: bool = True,
        paint_vel_info: bool = False,
        num_threads: int = 2,
    ) -> None:
        check_procgen_options(game, distribution_mode, num_levels, start_level)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.game = game
        self.num_envs = int(num_envs)
        self.distribution_mode = distribution_mode
        self.simplified = bool(simplified)
        self.timeout = TIMEOUTS[game]
        self._seed = int(seed)
        self._options: dict[str, Any] = {
            "env_name": game,
            "distribution_mode": distribution_mode,
            "use_sequential_levels": bool(use_sequential_levels),
            "center_agent": bool(center_agent),
            "paint_vel_info": bool(paint_vel_info),
            "num_threads": int(num_threads),
        }
        if distribution_mode != "exploration":
            self._options.update(num_levels=int(num_levels), start_level=int(start_level))
        if simplified:
            self._options.update(SIMPLIFIED_OPTIONS)
        self.single_observation_space = gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.single_action_space = gymnasium.spaces.Discrete(15)
        self.observation_space = gymnasium.spaces.Box(0, 255, (self.num_envs, 64, 64, 3), np.uint8)
        self.action_space = gymnasium.spaces.MultiDiscrete(np.full(self.num_envs, 15))
        self._env = None
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)

    @property
    def spec_summary(self) -> dict[str, Any]:
        """The options that define this env (saved with results for reproducibility)."""
        return {
            "game": self.game,
            "num_envs": self.num_envs,
            "seed": self._seed,
            "simplified": self.simplified,
            **{k: v for k, v in self._options.items() if k != "env_name"},
        }

    def _require_env(self):
        if self._env is None:
            raise RuntimeError("call reset() before step(), get_state() or set_state()")
        return self._env

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Create the procgen env with ``rand_seed = seed`` (or the constructor's seed) and observe it."""
        if options:
            raise ValueError(f"ProcgenVectorEnv.reset takes no options, got {sorted(options)}")
        if seed is not None:
            self._seed = int(seed)
        env_class = _procgen_env_class()
        self._env = env_class(num=self.num_envs, rand_seed=self._seed, **self._options)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        _, obs, _ = self._env.observe()
        return obs["rgb"].copy(), self._procgen_info()

    def _procgen_info(self) -> dict[str, Any]:
        raw = self._env.get_info()
        return {
            key: np.array([d[key] for d in raw]) for key in ("level_seed", "prev_level_seed", "prev_level_complete")
        }

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Act in every sub-env; ended episodes restart in the same step (their stats are in ``info``)."""
        env = self._require_env()
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be an integer array of shape ({self.num_envs},), got {actions.dtype} {actions.shape}"
            )
        if actions.min() < 0 or actions.max() >= 15:
            raise ValueError(f"actions must lie in [0, 15), got range [{actions.min()}, {actions.max()}]")
        env.act(actions.astype(np.int32))
        reward, obs, first = env.observe()
        info = self._procgen_info()
        reward = reward.astype(np.float64)
        self._returns += reward
        self._lengths += 1
        done = first.astype(bool)
        truncated = done & (self._lengths >= self.timeout) & (info["prev_level_complete"] == 0)
        terminated = done & ~truncated
        if done.any():
            info["episode"] = {"r": np.where(done, self._returns, 0.0), "l": np.where(done, self._lengths, 0)}
            info["_episode"] = done
            self._returns[done] = 0.0
            self._lengths[done] = 0
        return obs["rgb"].copy(), reward, terminated, truncated, info

    def get_state(self) -> dict[str, Any]:
        """Every sub-env's serialised procgen state plus the adapter's episode counters.

        Returns
        -------
        dict with ``"procgen"`` (list of ``num_envs`` bytes), ``"returns"`` (float64, (num_envs,)),
        ``"lengths"`` (int64, (num_envs,)) and ``"seed"``.
        """
        env = self._require_env()
        return {
            "procgen": list(env.callmethod("get_state")),
            "returns": self._returns.copy(),
            "lengths": self._lengths.copy(),
            "seed": self._seed,
        }

    def set_state(self, state: dict[str, Any]) -> np.ndarray:
        """Restore :meth:`get_state`'s output (creating the env if needed); return the current observation."""
        if len(state["procgen"]) != self.num_envs:
            raise ValueError(f"state holds {len(state['procgen'])} sub-env states, this env has {self.num_envs}")
        if self._env is None:
            self.reset(seed=int(state["seed"]))
        self._env.callmethod("set_state", list(state["procgen"]))
        self._returns[:] = np.asarray(state["returns"], dtype=np.float64)
        self._lengths[:] = np.asarray(state["lengths"], dtype=np.int64)
        _, obs, _ = self._env.observe()
        return obs["rgb"].copy()

    def close_extras(self, **kwargs: Any) -> None:
        self._env = None


def make_vector_env(env_id: str, num_envs: int, *, seed: int = 0, **kwargs: Any) -> VectorEnv:
    """Build a vector env from an id: ``"procgen:<game>"`` or ``"gymnasium:<registered id>"``.

    ``kwargs`` go to :class:`ProcgenVectorEnv` or to ``gymnasium.make_vec``. gymnasium envs are built with
    ``SAME_STEP`` autoreset (the final observation of an episode is in ``info["final_obs"]``, which PPO
    uses to bootstrap truncated episodes) and wrapped in ``RecordEpisodeStatistics`` so every env reports
    episodes the same way.

    Examples
    --------
    >>> env = make_vector_env("procgen:starpilot", 2, simplified=True)
    >>> env.single_action_space
    Discrete(15)
    """
    kind, _, name = env_id.partition(":")
    check_choice(kind, ("procgen", "gymnasium"), name=f"env id prefix of {env_id!r}")
    if kind == "procgen":
        return ProcgenVectorEnv(name, num_envs, seed=seed, **kwargs)
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    env = gymnasium.make_vec(
        name,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        **kwargs,
    )
    env.reset(seed=seed)
    return RecordEpisodeStatistics(env)
