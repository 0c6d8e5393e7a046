"""The Learning Challenge Diagnosticator on Procgen: how much of a game's difficulty is perceptual and how
much is reinforcement learning. The console command is ``rldiag`` (also ``python -m rldiag.cli``).

Where things live:

* :mod:`rldiag.envs`: Procgen as a gymnasium ``VectorEnv`` (seeding, episode stats, get/set state,
  terminated vs truncated, simplified rendering); the only module that touches ``gym``/``gym3``.
* :mod:`rldiag.registration`: every game as the gymnasium id ``rldiag/<game>-v0`` (registered on import).
* :mod:`rldiag.sb3`: a Stable-Baselines3 ``VecEnv`` over :class:`~rldiag.envs.ProcgenVectorEnv`.
* :mod:`rldiag.encoders`: IMPALA-CNN, Nature-CNN or any ``shared`` backbone as the agents' encoder.
* :mod:`rldiag.ppo`: PPO, CleanRL style, readable top to bottom; checkpoint/resume; CSV + TensorBoard.
* :mod:`rldiag.distill`: behavioural cloning of an expert's actions (a LightningModule + DataModule).
* :mod:`rldiag.normalization`: the published per-game (R_min, R_max) table and its source.
* :mod:`rldiag.diagnose`: the pix / simp / bc conditions, normalised AUCs, PLC and RLC (our definitions),
  bootstrap intervals, resumable cells.
* :mod:`rldiag.sweep`: running cells serially or on dask.distributed (local cluster or a scheduler).
* :mod:`rldiag.taxonomy`: the two-axis taxonomy: labels, clusters, figure, CSV/JSON.
* :mod:`rldiag.cli`, :mod:`rldiag.demo`: the command line and the ``make demo`` section.
"""

from rldiag.registration import register_games

register_games()
