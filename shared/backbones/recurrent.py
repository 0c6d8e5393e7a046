"""What every recurrent backbone shares: the training-mode config and the run-the-engine forward pass.

A recurrent backbone defines four things and inherits the rest:

* ``make_drive(x)``: the fixed feed-forward drive computed once from the input;
* ``initial_state(drive)``: the state before the first step;
* ``step(drive, h, t)``: one step of the circuit (the map F that C-RBP differentiates at its fixed point);
* ``readout(h)``: the dense map returned to the caller, at the input resolution.

:meth:`RecurrentBackbone.forward_steps` runs them through :func:`shared.recurrence.run_recurrence` in the
configured ``mode`` and keeps the convergence statistics in ``model.last_stats``. ``model.timesteps`` and
``model.mode`` may be changed after construction (e.g. to run longer than trained at test time); the chrono
gate initialisation used the configured ``timesteps``.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from shared.backbones.base import Backbone, BackboneOutput
from shared.recurrence import CRBPConfig, RecurrenceStats, check_mode, run_recurrence

RecurrentNorm = Literal["batch", "group", "instance", "none", "batch_stats", "batch_per_step"]


@dataclass
class EngineOptions:
    """How the recurrence engine trains a circuit: the options every recurrent config shares (image circuits
    here, the tracking circuits in :mod:`shared.backbones.tracking.base`). The ``neumann_*``,
    ``lipschitz_penalty`` and ``penalty_lambda`` fields are :class:`shared.recurrence.CRBPConfig`'s, by name:
    one vocabulary from the YAML config to the engine.

    mode : ``"bptt"``, ``"truncated"`` (gradient through the last ``truncate_k`` steps) or ``"crbp"``.
    truncate_k : steps with a graph in ``truncated`` mode.
    neumann_iters : maximum Neumann terms in the C-RBP backward (published 15).
    neumann_stopping : apply the published C-RBP stopping rules (``||g|| > neumann_g_limit``, growing
        ``||v_k||``, ``||v_k|| < 1e-9``).
    neumann_g_limit : the absolute ``||g||`` threshold of the first rule (published 1.0); None disables
        it. Set None when the loss is summed rather than averaged or scaled by AMP's GradScaler: the
        rule is not scale-invariant and would otherwise stop at the first term (``stats.neumann_stop``
        then reads ``"g_norm"``).
    neumann_stop_on_growth : the second stopping rule (stop when ``||v_k||`` grows).
    neumann_tol : the third stopping rule (stop when ``||v_k|| <`` this; published 1e-9).
    neumann_damping : damping ``d`` in ``v_k = d v_{k-1} J`` (1.0 = none, as in the PyTorch code).
    lipschitz_penalty : compute the Lipschitz coefficient penalty of the last step while training; it is
        returned as ``stats.penalty`` (``model.last_stats.penalty``) for the caller to add (weighted) to
        the loss. None (default): on in ``crbp`` mode only, so plain BPTT pays nothing. ``True`` with
        ``mode="bptt"`` is C-BPTT (the C-RBP paper's comparison arm); ``False`` with ``crbp`` is plain RBP.
        Resolved at every call, so it follows a later change of ``model.mode``.
    penalty_lambda : the penalty's target ``lambda`` (published 0.9 for Pathfinder).
    """

    mode: Literal["bptt", "truncated", "crbp"] = "bptt"
    truncate_k: int = 1
    neumann_iters: int = 15
    neumann_stopping: bool = True
    neumann_g_limit: float | None = 1.0
    neumann_stop_on_growth: bool = True
    neumann_tol: float = 1e-9
    neumann_damping: float = 1.0
    lipschitz_penalty: bool | None = None
    penalty_lambda: float = 0.9

    def __post_init__(self) -> None:
        self.crbp_config()  # validates neumann_* and penalty_lambda with messages naming them

    def crbp_config(self) -> CRBPConfig:
        """The engine's :class:`CRBPConfig`: the fields of the same names (one vocabulary, no renaming)."""
        return CRBPConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(CRBPConfig)})


@dataclass
class RecurrentConfig(EngineOptions):
    """Options shared by every recurrent image/volume backbone: :class:`EngineOptions` plus

    in_channels : input channels.
    out_channels : channels of the full-resolution readout (1x1 conv); None returns the hidden state itself.
    timesteps : T >= 1, the number of recurrent steps (also sets the chrono gate-bias initialisation).
    norm : normalisation inside the recurrent step: ``"batch"``, ``"batch_stats"`` (BatchNorm with batch
        statistics in training and testing), ``"group"``, ``"instance"``, ``"none"`` (the same map at
        every step) or ``"batch_per_step"`` (one BatchNorm per timestep, BPTT/truncated
        only: rejected in C-RBP mode).
    """

    in_channels: int = 1
    out_channels: int | None = None
    timesteps: int = 8
    norm: RecurrentNorm = "instance"

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.out_channels is not None and self.out_channels < 1:
            raise ValueError(f"out_channels must be >= 1 or None, got {self.out_channels}")
        check_mode(self.mode, timesteps=self.timesteps, truncate_k=self.truncate_k)
        if self.mode == "crbp" and self.norm == "batch_per_step":
            raise ValueError(
                "norm='batch_per_step' keeps one BatchNorm per timestep, so the step is not the "
                "same map at every timestep; mode='crbp' needs a time-invariant norm "
                "('batch', 'batch_stats', 'group', 'instance' or 'none')"
            )
        super().__post_init__()


class RecurrentBackbone(Backbone, abc.ABC):
    """Base of hGRU/fGRU/gamma-Net backbones: runs the recurrence engine in the configured mode.

    ``model(x, return_steps=True).steps`` holds one readout per timestep; in ``crbp`` and ``truncated``
    mode the readouts of the steps without a graph are computed without a graph (for figures and RT
    metrics). ``model.last_stats`` is the :class:`shared.recurrence.RecurrenceStats` of the latest call.
    """

    recurrent = True

    def __init__(self, cfg: RecurrentConfig, spatial_dims: int) -> None:
        super().__init__()
        self.config, self.spatial_dims, self.in_channels = cfg, spatial_dims, cfg.in_channels
        self.timesteps, self.mode, self.truncate_k = cfg.timesteps, cfg.mode, cfg.truncate_k
        self.crbp = cfg.crbp_config()
        self.last_stats: RecurrenceStats | None = None

    @abc.abstractmethod
    def make_drive(self, x: torch.Tensor) -> Any:
        """The fixed feed-forward drive of every step, computed once from the input."""

    @abc.abstractmethod
    def initial_state(self, drive: Any) -> Any:
        """The state before the first step."""

    @abc.abstractmethod
    def step(self, drive: Any, h: Any, t: int) -> Any:
        """One recurrent step ``F(drive, h)``; ``t`` is the 0-based timestep."""

    @abc.abstractmethod
    def readout(self, h: Any) -> torch.Tensor:
        """The dense output (batch, out_channels, *spatial) of a state."""

    def forward_steps(self, x: torch.Tensor, return_steps: bool) -> BackboneOutput:
        check_mode(self.mode, timesteps=self.timesteps, truncate_k=self.truncate_k)
        if self.mode == "crbp" and any(getattr(m, "per_step", False) for m in self.modules()):
            raise ValueError(
                "mode='crbp' cannot be used with per-timestep parameters (norm='batch_per_step' "
                "or the 2018 hGRU's eta): they break the fixed point C-RBP differentiates"
            )
        drive = self.make_drive(x)
        result = run_recurrence(
            self.step,
            drive,
            lambda: self.initial_state(drive),
            timesteps=self.timesteps,
            mode=self.mode,
            truncate_k=self.truncate_k,
            crbp=self.crbp,
            record_fn=self.readout if return_steps else None,
        )
        self.last_stats = result.stats
        output = result.steps[-1] if return_steps else self.readout(result.state)
        return BackboneOutput(output, result.steps, result.stats)

    @torch.no_grad()
    def forward_states(self, x: torch.Tensor, timesteps: int | None = None) -> list[Any]:
        """The hidden state after every step, without a graph (for figures and RT metrics).

        Parameters
        ----------
        x : input (batch, in_channels, row, column) or (batch, in_channels, plane, row, column).
        timesteps : steps to run; defaults to ``self.timesteps`` (may exceed the trained T).

        Returns
        -------
        list of length T of states: Tensors (batch, hidden, *spatial) for hGRU/fGRU, tuples with one
        Tensor per level (fine to coarse) for gamma-Net.
        """
        self.check_input(x)
        drive = self.make_drive(x)
        result = run_recurrence(
            self.step,
            drive,
            lambda: self.initial_state(drive),
            timesteps=timesteps or self.timesteps,
            record_fn=lambda h: h,
        )
        self.last_stats = result.stats
        return result.steps
