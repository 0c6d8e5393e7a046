"""Every Procgen game as a registered gymnasium env: ``rldiag/<game>-v0`` (run on ``import rldiag``).

``gymnasium.make("rldiag/coinrun-v0", **options)`` builds :class:`rldiag.envs.ProcgenEnv` (one env);
``gymnasium.make_vec("rldiag/coinrun-v0", num_envs=8, **options)`` builds
:class:`rldiag.envs.ProcgenVectorEnv` directly (procgen's own vectorised stepping, not a
``SyncVectorEnv`` of single envs) with gymnasium's conventions: ``NEXT_STEP`` autoreset and the
``episode`` key left to ``RecordEpisodeStatistics``. ``options`` are the env's keyword arguments
(``distribution_mode``, ``num_levels``, ``start_level``, ``simplified``, ...; ``seed`` and
``autoreset_mode`` too for the vector env).

gymnasium 1.x does not read plugin entry points (the ``gymnasium.envs`` entry-point group of gym < 1.0
is gone), so registration happens on import. Without importing rldiag first, name the module in the id:
``gymnasium.make("rldiag:rldiag/coinrun-v0")``.

Examples
--------
>>> import gymnasium, rldiag
>>> env = gymnasium.make("rldiag/starpilot-v0", distribution_mode="easy")
>>> env.observation_space.shape
(64, 64, 3)
>>> env.close()
"""

from __future__ import annotations

from typing import Any

import gymnasium
from gymnasium.vector import AutoresetMode

from rldiag.envs import GAMES, ProcgenVectorEnv

NAMESPACE = "rldiag"


def env_id(game: str) -> str:
    """The registered id of a game, e.g. ``"rldiag/coinrun-v0"``."""
    return f"{NAMESPACE}/{game}-v0"


def make_registered_vector_env(
    num_envs: int,
    game: str,
    *,
    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    episode_statistics: bool = False,
    **options: Any,
) -> ProcgenVectorEnv:
    """``gymnasium.make_vec``'s entry point: :class:`ProcgenVectorEnv` with gymnasium's defaults."""
    return ProcgenVectorEnv(
        game, num_envs, autoreset_mode=autoreset_mode, episode_statistics=episode_statistics, **options
    )


def register_games() -> None:
    """Register :func:`env_id` of every game (idempotent: ids already registered are left alone)."""
    for game in GAMES:
        if env_id(game) in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id(game),
            entry_point="rldiag.envs:ProcgenEnv",
            vector_entry_point="rldiag.registration:make_registered_vector_env",
            kwargs={"game": game},
            # procgen ends episodes at its own time-outs (rldiag.envs.TIMEOUTS): no TimeLimit wrapper
            max_episode_steps=None,
            nondeterministic=False,
        )
