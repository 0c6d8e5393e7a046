"""Procgen as a gymnasium ``VectorEnv``, and the observation conditions the diagnostics compare.

:class:`ProcgenVectorEnv` adapts procgen's ``ProcgenGym3Env`` (the fast vectorised C++ path) to the
gymnasium 1.x vector API: ``reset(seed=...)`` / ``step(actions)`` returning ``(obs, reward, terminated,
truncated, info)``, ``Box(0, 255, (64, 64, 3), uint8)`` observations and ``Discrete(15)`` actions per
sub-environment. The old ``gym``/``gym3`` packages procgen depends on are imported only here.

Facts the adapter encodes (openai/procgen 0.10.7; see the project reference ``rldiag.md``):

* **Auto-reset.** procgen restarts an ended episode inside the same step and never renders the terminal
  state. Two gymnasium modes (``autoreset_mode``):

  - ``AutoresetMode.SAME_STEP`` (the default; rldiag's PPO uses it): the observation returned with
    ``terminated``/``truncated`` is already the first of the next episode. There is no ``"final_obs"``
    in ``info``: the terminal frame does not exist, and PPO treats procgen time-outs as terminal.
  - ``AutoresetMode.NEXT_STEP`` (gymnasium's default, what its observation wrappers require): the step
    that ends an episode returns the episode's *last rendered frame* (the one the final action was taken
    on; the terminal state itself is never rendered); the next step ignores that sub-env's action and
    returns the new episode's first frame with reward 0 (the sub-env's procgen state is restored after the
    shared ``act``, so the new episode starts exactly where procgen started it; one sub-env state save and
    restore per episode end, about 0.5 ms on the 2-core development VM).

* **terminated vs truncated.** procgen reports only "episode over". An episode that reaches the game's step
  limit (:data:`TIMEOUTS`) without completing the level is *truncated*; every other end is *terminated*.
* **Seeding.** ``reset(seed=s)`` (re)creates the gym3 env with ``rand_seed=s``: the same seed, level range
  and actions reproduce the trajectory exactly. Without a seed the constructor's ``seed`` is used, never
  procgen's ``SystemRandom`` default. Re-creating leaks a little memory in procgen (openai/procgen#68), so
  reset once and keep the env.
* **Episode statistics** (``episode_statistics=True``, the default, an rldiag option): when sub-env ``i``
  ends an episode, ``info["episode"]["r"][i]`` / ``["l"][i]`` hold its return and length and
  ``info["_episode"][i]`` is True, the keys gymnasium's ``RecordEpisodeStatistics`` writes (kept in the
  env so checkpoints resume them). With ``episode_statistics=False`` the key is left to that wrapper.
  ``info["level_seed"]``, ``info["prev_level_seed"]`` and ``info["prev_level_complete"]`` come from
  procgen, each with its gymnasium mask (``info["_level_seed"]``, ...).
* **Rendering.** ``render_mode="rgb_array"``: :meth:`ProcgenVectorEnv.render` returns each sub-env's
  current 64 x 64 observation frame (procgen's own 512 x 512 renderer reportedly drops throughput
  from ~5k to ~400 steps/s, openai/procgen#62; unverified here).
* **State.** :meth:`ProcgenVectorEnv.get_state` / :meth:`~ProcgenVectorEnv.set_state` save and restore
  every sub-env (procgen's serialised game state, 21-37 KB of bytes each, plus the adapter's episode
  counters); a restored env replays identically.
* **Privileged state.** procgen 0.10.7 exposes no parsed game state for any of the 16 games: ``get_state``
  returns an undocumented serialisation whose layout differs between builds. rldiag therefore offers no
  privileged-state observation and says so (:data:`PRIVILEGED_STATE_GAMES` is empty); the perceptually
  simplified rendering (``simplified=True``) is the "perception made easy" condition.

The gymnasium registration (:mod:`rldiag.registration`, run on ``import rldiag``) exposes every game as
``rldiag/<game>-v0``: ``gymnasium.make`` gives the single env :class:`ProcgenEnv` and ``gymnasium.make_vec``
this vector env with gymnasium's defaults (``NEXT_STEP`` autoreset, ``episode`` left to
``RecordEpisodeStatistics``).

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


#: The per-sub-env ``info`` keys procgen reports.
_PROCGEN_INFO_KEYS = ("level_seed", "prev_level_seed", "prev_level_complete")


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
    autoreset_mode : AutoresetMode or str
        ``SAME_STEP`` (default; rldiag's PPO) or ``NEXT_STEP`` (gymnasium's default); module docstring.
    episode_statistics : bool
        Write ``info["episode"]``/``info["_episode"]`` here (default) or leave them to gymnasium's
        ``RecordEpisodeStatistics`` (``False``).
    render_mode : {None, "rgb_array"}
        ``"rgb_array"``: :meth:`render` returns the sub-envs' current observation frames.

    Examples
    --------
    >>> env = ProcgenVectorEnv("coinrun", num_envs=2, distribution_mode="easy", seed=0)
    >>> obs, info = env.reset()
    >>> obs.shape, obs.dtype
    ((2, 64, 64, 3), dtype('uint8'))
    >>> obs, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.int64))
    >>> env.close()
    """

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
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        episode_statistics: bool = True,
        render_mode: str | None = None,
    ) -> None:
        check_procgen_options(game, distribution_mode, num_levels, start_level)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        autoreset_mode = AutoresetMode(autoreset_mode)
        check_choice(autoreset_mode, (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP), name="autoreset_mode")
        check_choice(render_mode, (None, "rgb_array"), name="render_mode")
        self.game = game
        self.num_envs = int(num_envs)
        self.distribution_mode = distribution_mode
        self.simplified = bool(simplified)
        self.timeout = TIMEOUTS[game]
        self.autoreset_mode = autoreset_mode
        self.episode_statistics = bool(episode_statistics)
        self.render_mode = render_mode
        self.metadata = {"autoreset_mode": autoreset_mode, "render_modes": ["rgb_array"], "render_fps": 15}
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
        self._obs = np.zeros(self.observation_space.shape, dtype=np.uint8)  # last returned frames
        # NEXT_STEP: sub-envs whose episode ended last step, with the next episode's first frame and state
        self._pending = np.zeros(self.num_envs, dtype=bool)
        self._pending_obs = np.zeros(self.observation_space.shape, dtype=np.uint8)
        self._pending_states: list[bytes | None] = [None] * self.num_envs
        self._pending_info: dict[str, np.ndarray] = {}

    @property
    def spec_summary(self) -> dict[str, Any]:
        """The options that define this env (saved with results for reproducibility)."""
        return {
            "game": self.game,
            "num_envs": self.num_envs,
            "seed": self._seed,
            "simplified": self.simplified,
            "autoreset_mode": self.autoreset_mode.value,
            **{k: v for k, v in self._options.items() if k != "env_name"},
        }

    def _require_env(self):
        if self.closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; create a new env")
        if self._env is None:
            raise RuntimeError("call reset() before step(), get_state(), set_state() or render()")
        return self._env

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Create the procgen env with ``rand_seed = seed`` (or the constructor's seed) and observe it.

        procgen has one ``rand_seed`` per vector env, so ``seed`` is one integer (not one per sub-env).
        """
        if self.closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; create a new env")
        if options:
            raise ValueError(f"ProcgenVectorEnv.reset takes no options, got {sorted(options)}")
        if seed is not None:
            if not isinstance(seed, int | np.integer):
                raise TypeError(f"seed must be one int (procgen seeds the whole vector env), got {seed!r}")
            self._seed = int(seed)
        env_class = _procgen_env_class()
        self._env = env_class(num=self.num_envs, rand_seed=self._seed, **self._options)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._pending[:] = False
        self._pending_states = [None] * self.num_envs
        _, obs, _ = self._env.observe()
        self._obs = obs["rgb"].copy()
        return self._obs.copy(), self._procgen_info()

    def _procgen_info(self) -> dict[str, Any]:
        raw = self._env.get_info()
        info: dict[str, Any] = {}
        for key in _PROCGEN_INFO_KEYS:
            info[key] = np.array([d[key] for d in raw])
            info[f"_{key}"] = np.ones(self.num_envs, dtype=bool)  # gymnasium's per-key mask: every sub-env
        return info

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Act in every sub-env; ended episodes restart as ``autoreset_mode`` says (module docstring)."""
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
        obs = obs["rgb"].copy()
        info = self._procgen_info()
        reward = reward.astype(np.float64)
        resetting = self._pending.copy()
        if resetting.any():  # NEXT_STEP: undo the shared act for sub-envs that were starting an episode
            for i in np.flatnonzero(resetting):
                self._set_sub_state(i, self._pending_states[i])
                for key, values in self._pending_info.items():
                    info[key][i] = values[i]
            obs[resetting] = self._pending_obs[resetting]
            reward[resetting] = 0.0
        self._returns[~resetting] += reward[~resetting]
        self._lengths[~resetting] += 1
        done = first.astype(bool) & ~resetting
        truncated = done & (self._lengths >= self.timeout) & (info["prev_level_complete"] == 0)
        terminated = done & ~truncated
        if done.any():
            if self.episode_statistics:
                info["episode"] = {"r": np.where(done, self._returns, 0.0), "l": np.where(done, self._lengths, 0)}
                info["_episode"] = done
            self._returns[done] = 0.0
            self._lengths[done] = 0
            if self.autoreset_mode == AutoresetMode.NEXT_STEP:
                self._pending_obs[done] = obs[done]
                for i in np.flatnonzero(done):
                    self._pending_states[i] = self._get_sub_state(i)
                self._pending_info = {k: info[k].copy() for k in _PROCGEN_INFO_KEYS}
                obs[done] = self._obs[done]  # the episode's last rendered frame
        self._pending = done if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros_like(done)
        self._obs = obs
        return obs.copy(), reward, terminated, truncated, info

    def _get_sub_state(self, index: int) -> bytes:
        """One sub-env's serialised state (procgen's ``get_state`` does this for every sub-env)."""
        from procgen.env import MAX_STATE_SIZE

        buf = self._env._ffi.new(f"char[{MAX_STATE_SIZE}]")
        n = self._env.call_c_func("get_state", index, buf, MAX_STATE_SIZE)
        return bytes(self._env._ffi.buffer(buf, n))

    def _set_sub_state(self, index: int, state: bytes) -> None:
        self._env.call_c_func("set_state", index, state, len(state))

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Each sub-env's current ``(64, 64, 3)`` uint8 frame with ``render_mode="rgb_array"``, else None."""
        self._require_env()
        if self.render_mode is None:
            return None
        return tuple(self._obs.copy())

    def get_state(self) -> dict[str, Any]:
        """Every sub-env's serialised procgen state plus the adapter's episode counters.

        Returns
        -------
        dict with ``"procgen"`` (list of ``num_envs`` bytes), ``"returns"`` (float64, (num_envs,)),
        ``"lengths"`` (int64, (num_envs,)) and ``"seed"``; with ``NEXT_STEP`` autoreset also the pending
        resets (``"pending"``, ``"pending_obs"``, ``"pending_states"``, ``"pending_info"``, ``"obs"``).
        """
        env = self._require_env()
        state = {
            "procgen": list(env.callmethod("get_state")),
            "returns": self._returns.copy(),
            "lengths": self._lengths.copy(),
            "seed": self._seed,
        }
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            state.update(
                pending=self._pending.copy(),
                pending_obs=self._pending_obs.copy(),
                pending_states=list(self._pending_states),
                pending_info={k: v.copy() for k, v in self._pending_info.items()},
                obs=self._obs.copy(),
            )
        return state

    def set_state(self, state: dict[str, Any]) -> np.ndarray:
        """Restore :meth:`get_state`'s output (creating the env if needed); return the current observation."""
        if len(state["procgen"]) != self.num_envs:
            raise ValueError(f"state holds {len(state['procgen'])} sub-env states, this env has {self.num_envs}")
        if self._env is None:
            self.reset(seed=int(state["seed"]))
        self._require_env().callmethod("set_state", list(state["procgen"]))
        self._returns[:] = np.asarray(state["returns"], dtype=np.float64)
        self._lengths[:] = np.asarray(state["lengths"], dtype=np.int64)
        _, obs, _ = self._env.observe()
        self._obs = obs["rgb"].copy()
        if "pending" in state:
            self._pending = np.asarray(state["pending"], dtype=bool).copy()
            self._pending_obs = np.asarray(state["pending_obs"], dtype=np.uint8).copy()
            self._pending_states = list(state["pending_states"])
            self._pending_info = {k: np.array(v) for k, v in state["pending_info"].items()}
            self._obs = np.asarray(state["obs"], dtype=np.uint8).copy()
        return self._obs.copy()

    def close_extras(self, **kwargs: Any) -> None:
        self._env = None


class ProcgenEnv(gymnasium.Env):
    """One Procgen game as a single gymnasium ``Env`` (passes ``gymnasium.utils.env_checker.check_env``).

    Built on a one-env :class:`ProcgenVectorEnv`. ``reset(seed=s)`` starts procgen with ``rand_seed=s``;
    ``reset()`` after an episode end continues procgen's level stream at no cost, and any other
    ``reset()`` re-creates procgen's env with a ``rand_seed`` drawn from ``self.np_random`` (re-creating
    leaks a little memory, openai/procgen#68). The observation returned with ``terminated``/``truncated``
    is the episode's last rendered frame: procgen never renders the terminal state. ``render()`` with
    ``render_mode="rgb_array"`` returns the current observation frame.

    Parameters
    ----------
    game : str
        One of :data:`GAMES`.
    render_mode : {None, "rgb_array"}
    **options
        :class:`ProcgenVectorEnv` options: ``distribution_mode``, ``num_levels``, ``start_level``,
        ``simplified``, ``use_sequential_levels``, ``center_agent``, ``paint_vel_info``.

    Examples
    --------
    >>> env = ProcgenEnv("coinrun", distribution_mode="easy")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, int(info["level_seed"]) >= 0
    ((64, 64, 3), True)
    >>> obs, reward, terminated, truncated, info = env.step(4)
    >>> env.close()
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, game: str, *, render_mode: str | None = None, **options: Any) -> None:
        check_choice(render_mode, (None, "rgb_array"), name="render_mode")
        unknown = set(options) - {
            "distribution_mode",
            "num_levels",
            "start_level",
            "simplified",
            "use_sequential_levels",
            "center_agent",
            "paint_vel_info",
        }
        if unknown:
            raise TypeError(f"unknown ProcgenEnv option(s): {', '.join(sorted(unknown))}")
        self._vec = ProcgenVectorEnv(game, 1, num_threads=0, episode_statistics=False, **options)
        self.game = game
        self.render_mode = render_mode
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self._obs: np.ndarray | None = None
        self._next_episode: tuple[np.ndarray, dict] | None = None  # procgen's already started next episode

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options:
            raise ValueError(f"ProcgenEnv.reset takes no options, got {sorted(options)}")
        if seed is None and self._next_episode is not None:
            obs, info = self._next_episode
        else:
            rand_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
            obs, info = self._vec.reset(seed=rand_seed)
        self._next_episode = None
        self._obs = obs[0]
        return self._obs.copy(), _first_env_info(info)

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._next_episode is not None:
            raise RuntimeError("the episode is over: call reset() before step()")
        obs, reward, terminated, truncated, info = self._vec.step(np.array([action], dtype=np.int64))
        if terminated[0] or truncated[0]:
            self._next_episode = (obs, info)
        else:
            self._obs = obs[0]
        return self._obs.copy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), _first_env_info(info)

    def render(self) -> np.ndarray | None:
        if self._obs is None:
            raise RuntimeError("call reset() before render()")
        return self._obs.copy() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        self._vec.close()


def _first_env_info(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v[0].item() for k, v in info.items() if not k.startswith("_") and isinstance(v, np.ndarray)}


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
