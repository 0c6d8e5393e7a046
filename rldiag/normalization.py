"""Per-game return normalisation for Procgen: ``n = (R - R_min) / (R_max - R_min)``.

The constants are copied from openai/train-procgen, ``train_procgen/constants.py`` (the code release of
Cobbe et al. 2020, "Leveraging Procedural Generation to Benchmark Reinforcement Learning", ICML), which is
the table the Procgen paper reports. Third-party copies of the paper's table differ for a few entries (easy
``jumper`` and ``leaper`` are sometimes given as (3, 10)); rldiag uses the code file and records
:data:`SOURCE` with every result so scores can be re-normalised later.

``R_min`` is roughly the score of a policy without useful observations and ``R_max`` roughly the maximum
achievable score (the paper's wording; not independently verified here).
"""

from __future__ import annotations

import numpy as np

from shared.validation import check_choice

SOURCE = "openai/train-procgen train_procgen/constants.py (Cobbe et al. 2020, Procgen Benchmark, Table of R_min/R_max)"

#: ``{game: {mode: (R_min, R_max)}}`` for the easy and hard distribution modes.
RETURN_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "bigfish": {"easy": (1.0, 40.0), "hard": (0.0, 40.0)},
    "bossfight": {"easy": (0.5, 13.0), "hard": (0.5, 13.0)},
    "caveflyer": {"easy": (3.5, 12.0), "hard": (2.0, 13.4)},
    "chaser": {"easy": (0.5, 13.0), "hard": (0.5, 14.2)},
    "climber": {"easy": (2.0, 12.6), "hard": (1.0, 12.6)},
    "coinrun": {"easy": (5.0, 10.0), "hard": (5.0, 10.0)},
    "dodgeball": {"easy": (1.5, 19.0), "hard": (1.5, 19.0)},
    "fruitbot": {"easy": (-1.5, 32.4), "hard": (-0.5, 27.2)},
    "heist": {"easy": (3.5, 10.0), "hard": (2.0, 10.0)},
    "jumper": {"easy": (1.0, 10.0), "hard": (1.0, 10.0)},
    "leaper": {"easy": (1.5, 10.0), "hard": (1.5, 10.0)},
    "maze": {"easy": (5.0, 10.0), "hard": (4.0, 10.0)},
    "miner": {"easy": (1.5, 13.0), "hard": (1.5, 20.0)},
    "ninja": {"easy": (3.5, 10.0), "hard": (2.0, 10.0)},
    "plunder": {"easy": (4.5, 30.0), "hard": (3.0, 30.0)},
    "starpilot": {"easy": (2.5, 64.0), "hard": (1.5, 35.0)},
}


def return_range(game: str, distribution_mode: str = "easy") -> tuple[float, float]:
    """The published ``(R_min, R_max)`` of a game in a distribution mode (``"easy"`` or ``"hard"``).

    Raises ``ValueError`` listing the valid games or modes otherwise (the paper publishes no constants for
    the extreme, memory or exploration modes).

    Examples
    --------
    >>> return_range("coinrun", "easy")
    (5.0, 10.0)
    """
    check_choice(game, RETURN_RANGES, name="game")
    check_choice(distribution_mode, RETURN_RANGES[game], name=f"distribution_mode with constants for {game}")
    return RETURN_RANGES[game][distribution_mode]


def normalize_return(returns, game: str, distribution_mode: str = "easy", *, clip: bool = True) -> np.ndarray:
    """Normalise raw episode returns: ``(R - R_min) / (R_max - R_min)``, clipped to [0, 1] if ``clip``.

    Parameters
    ----------
    returns : array_like of float, any shape
        Raw episode returns.
    game, distribution_mode : str
        Which row of :data:`RETURN_RANGES` to use.
    clip : bool
        Clip to [0, 1] (the diagnostics' convention: a score below ``R_min`` counts as no learning).

    Returns
    -------
    ndarray of float64, same shape as ``returns``

    Examples
    --------
    >>> normalize_return([5.0, 7.5, 12.0], "coinrun").tolist()
    [0.0, 0.5, 1.0]
    """
    r_min, r_max = return_range(game, distribution_mode)
    n = (np.asarray(returns, dtype=np.float64) - r_min) / (r_max - r_min)
    return np.clip(n, 0.0, 1.0) if clip else n
