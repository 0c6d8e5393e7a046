"""What the recurrent tracking models share: the training-mode config, the per-frame recurrence, the readout.

A recurrent video model takes one recurrent step per frame: step ``t`` reads frame ``min(t, T - 1)``. The
steps run through :func:`shared.recurrence.run_recurrence`, so ``mode`` works as for the image circuits
and the engine's :class:`shared.recurrence.RecurrenceStats` come back in ``.stats``.

What C-RBP means for a per-frame circuit
----------------------------------------
C-RBP differentiates a *fixed point* ``h* = F(x, h*)`` of a step with a fixed drive ``x``. While the
frames play, the drive changes at every step, so there is no fixed point to differentiate. Here
``mode="crbp"`` therefore needs ``settle_steps >= 1``: after the last frame the circuit keeps stepping on
the last frame (fixed drive) for ``settle_steps`` more steps, and C-RBP differentiates the fixed point
of that last-frame map, treating the state reached after the video as (an approximation of) it. The
gradient then reaches the parameters only through the last frame's step (the front end sees frame T - 1;
earlier frames shape the state but are not differentiated). This is a different training signal from
BPTT, not an approximation of it; ``stats.contractive`` / ``neumann_ratio`` report whether the
last-frame map was contractive. ``mode="crbp"`` with ``settle_steps=0`` is rejected.

``settle_steps`` may also be used with BPTT/truncated BPTT (extra steps on the last frame, gradients
through them). ``truncated`` keeps the graph of the last ``truncate_k`` steps.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn as nn

from shared.backbones.base import Backbone, BackboneOutput
from shared.backbones.recurrent import EngineOptions
from shared.recurrence import RecurrenceStats, check_mode, run_recurrence


@dataclass
class TrackingRecurrentConfig(EngineOptions):
    """Options shared by the recurrent tracking models: :class:`shared.backbones.recurrent.EngineOptions`
    (``mode``, ``truncate_k``, the C-RBP ``neumann_*`` options and the Lipschitz penalty, reaching the engine
    exactly as the image circuits' do; see the module docstring for what C-RBP means here) plus

    in_channels : input channels (RGB: 3).
    settle_steps : extra steps on the last frame after the video (needed, >= 1, by ``crbp``).
    """

    in_channels: int = 3
    settle_steps: int = 0

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if isinstance(self.settle_steps, bool) or self.settle_steps < 0:
            raise ValueError(f"settle_steps must be an integer >= 0, got {self.settle_steps!r}")
        check_mode(self.mode, timesteps=1, truncate_k=self.truncate_k)
        check_settle(self.mode, self.settle_steps)
        super().__post_init__()


def check_settle(mode: str, settle_steps: int) -> None:
    """Reject C-RBP without a settle phase: without a fixed drive there is no fixed point."""
    if mode == "crbp" and settle_steps < 1:
        raise ValueError(
            "mode='crbp' needs settle_steps >= 1: the drive changes at every frame, so a fixed "
            "point (what C-RBP differentiates) exists only when the circuit keeps stepping on the "
            "last frame; set settle_steps (e.g. 8) or use mode='bptt'/'truncated'"
        )


class VideoDrive(NamedTuple):
    """The fixed input of every step: front-end features of all frames and the raw video."""

    features: torch.Tensor  # (batch, channels, frame, row, column)
    video: torch.Tensor  # (batch, in_channels, frame, row, column)

    @property
    def frames(self) -> int:
        return self.features.shape[2]

    def frame(self, t: int) -> torch.Tensor:
        """Features (batch, channels, row, column) of the frame step ``t`` reads (the last one after T)."""
        return self.features[:, :, min(t, self.frames - 1)]

    @property
    def goal(self) -> torch.Tensor:
        """The goal-marker map: the blue channel of frame 0, (batch, 1, row, column)."""
        return self.video[:, 2:3, 0]


class GoalReadout(nn.Module):
    """The published InT readout: ``conv(e_T)`` with the blue channel of frame 0, 5x5 conv, mean, Linear(1, 1).

    pathtracker-models ``models/InT.py`` (``readout_conv`` 1x1, ``target_conv`` 5x5 with zero bias,
    ``avg_pool2d`` over the whole map, ``readout_dense``); the CV-RNN (feature_tracker ``CVInT.py``) uses a
    3x3 ``readout_conv``.

    Parameters
    ----------
    channels : channels of the state read.
    kernel_size : size of ``readout_conv`` (InT 1, CV-RNN 3).
    pool : ``"mean"`` (reference): the mean over the whole map, so a response at the goal is diluted by
        the map's area (1/1024 at 32x32 px); ``"goal"``: the mean weighted by the goal map, which reads the
        map at the goal marker (not in the reference; see BENCHMARKS.md "Tracking").

    Examples
    --------
    >>> head = GoalReadout(4)
    >>> head(torch.rand(2, 4, 8, 8), torch.rand(2, 1, 8, 8)).shape
    torch.Size([2, 1])
    """

    def __init__(self, channels: int, kernel_size: int = 1, pool: Literal["mean", "goal"] = "mean") -> None:
        super().__init__()
        if pool not in ("mean", "goal"):
            raise ValueError(f"pool must be 'mean' or 'goal', got {pool!r}")
        self.pool = pool
        self.readout_conv = nn.Conv2d(channels, 1, kernel_size, padding=kernel_size // 2)
        self.target_conv = nn.Conv2d(2, 1, 5, padding=2)
        nn.init.zeros_(self.target_conv.bias)
        self.dense = nn.Linear(1, 1)

    def forward(self, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Logits (batch, 1) from a state (batch, channels, row, column) and the goal map (batch, 1, row, column)."""
        y = self.target_conv(torch.cat([self.readout_conv(state), goal], dim=1))
        if self.pool == "goal":
            weight = goal.clamp(min=0)
            return self.dense((y * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp(min=1e-6))
        return self.dense(y.mean(dim=(2, 3)))


class RecurrentVideoBackbone(Backbone, abc.ABC):
    """Base of ``int``, ``cvrnn`` and ``convgru``: one step per frame through the recurrence engine.

    Subclasses implement ``make_drive(video) -> VideoDrive``, ``initial_state(drive)``,
    ``step(drive, h, t)`` and ``readout(h, drive) -> (batch, 1)``, and may call :meth:`record` inside
    ``step`` to report per-step maps (returned in ``aux``). ``model.mode`` and ``model.settle_steps`` may be
    changed after construction. ``first_frame_only`` names the parameter prefixes used only for the state
    before frame 0: they get no gradient in ``truncated``/``crbp`` modes, where frame 0 runs without a graph.
    """

    recurrent = True
    spatial_dims = 3
    input_kind = "video"
    out_channels = 1
    first_frame_only: tuple[str, ...] = ()

    def __init__(self, cfg: TrackingRecurrentConfig) -> None:
        super().__init__()
        self.config, self.in_channels = cfg, cfg.in_channels
        self.mode, self.truncate_k, self.settle_steps = cfg.mode, cfg.truncate_k, cfg.settle_steps
        self.crbp = cfg.crbp_config()
        self.last_stats: RecurrenceStats | None = None
        self._trace: dict[str, list[torch.Tensor]] = {}

    @abc.abstractmethod
    def make_drive(self, video: torch.Tensor) -> VideoDrive:
        """Front-end features of every frame, computed once."""

    @abc.abstractmethod
    def initial_state(self, drive: VideoDrive) -> Any:
        """The state before the first frame."""

    @abc.abstractmethod
    def step(self, drive: VideoDrive, h: Any, t: int) -> Any:
        """One step on frame ``min(t, T - 1)``."""

    @abc.abstractmethod
    def readout(self, h: Any, drive: VideoDrive) -> torch.Tensor:
        """Logits (batch, 1) of a state."""

    def record(self, name: str, value: torch.Tensor) -> None:
        """Keep a per-step map (batch, row, column) for ``aux[name]``."""
        self._trace.setdefault(name, []).append(value)

    def forward_steps(self, x: torch.Tensor, return_steps: bool) -> BackboneOutput:
        frames = x.shape[2]
        steps = frames + self.settle_steps
        check_mode(self.mode, timesteps=steps, truncate_k=self.truncate_k)
        check_settle(self.mode, self.settle_steps)
        self._trace = {}
        drive = self.make_drive(x)
        result = run_recurrence(
            self.step,
            drive,
            lambda: self.initial_state(drive),
            timesteps=steps,
            mode=self.mode,
            truncate_k=self.truncate_k,
            crbp=self.crbp,
            record_fn=(lambda h: self.readout(h, drive)) if return_steps else None,
        )
        self.last_stats = result.stats
        output = result.steps[-1] if return_steps else self.readout(result.state, drive)
        aux = {name: self._per_frame(values, frames) for name, values in self._trace.items()}
        self._trace = {}
        return BackboneOutput(output, result.steps, result.stats, aux)

    @staticmethod
    def _per_frame(values: list[torch.Tensor], frames: int) -> torch.Tensor:
        """One entry per frame, (batch, frame, row, column); the last frame's is the last settle step's."""
        return torch.stack(values[: frames - 1] + values[-1:], dim=1)
