"""The recurrence engine: run ``h_{t+1} = F(x, h_t)`` for T steps; train by BPTT, truncated BPTT or C-RBP.

Every recurrent backbone (hGRU, fGRU, gamma-Net) hands its one-step map to :func:`run_recurrence`::

    result = run_recurrence(step_fn, drive, h0, timesteps=8, mode="crbp")
    h_final, stats, steps = result          # a NamedTuple

``step_fn(drive, h, t) -> h`` is the cell: ``drive`` is the fixed feed-forward input (a Tensor or a tuple of
Tensors), ``h`` the state (a Tensor, or a tuple/list of Tensors such as gamma-Net's one state per level) and
``t`` the 0-based step index (only per-timestep layers read it; C-RBP assumes they do not exist).

Training modes
--------------
``bptt``
    Backpropagation through time: the graph of all T steps is kept (memory grows linearly in T).
``truncated``
    The first ``T - k`` steps run without a graph; gradients flow through the last ``k`` steps only.
``crbp``
    Contractive recurrent back-propagation (Linsley*, Ashok*, Govindarajan* et al., NeurIPS 2020,
    arXiv 2005.11362). ``T - 1`` steps run without a graph; the state is detached and one step is taken
    with a graph. An autograd Function that is the identity in the forward pass replaces the gradient of
    the final state by the Neumann series ``g = sum_k v J^k`` (``v = dL/dh*``, ``J = dF/dh`` at the last
    step), computed with vector-Jacobian products on the one tracked step. By the implicit function
    theorem ``g dF/dw`` is the gradient of the loss at the fixed point, so memory does not depend on T.
    It needs a local contraction (``||J|| < 1``); the Lipschitz coefficient penalty (LCP,
    :func:`lipschitz_penalty`) encourages one.
``bptt`` with the penalty (C-BPTT)
    ``CRBPConfig(lipschitz_penalty=True)`` computes the same LCP in ``bptt`` (and ``truncated``) mode, on the last
    step's Jacobian ``J = d h_T / d h_{T-1}`` taken on the BPTT graph, and returns it as ``stats.penalty``:
    the C-RBP paper's comparison arm. Unlike C-RBP, h_{T-1} is not detached, so the penalty's gradient
    also reaches the earlier steps; this is what the ``bptt`` branch of c-rbp/pathfinder_experiments
    ``models/hgrucleanSEG.py`` does (``autograd.grad(last_state, state_2nd_last, ones, create_graph=True)``
    on the undetached BPTT states; its ``BPTT_penmain14SEG.sh`` runs it). Plain BPTT (the default,
    ``lipschitz_penalty=None``) computes no penalty.

Every call returns :class:`RecurrenceStats`: the relative residual ``||h_t - h_{t-1}|| / ||h_t||`` per step
and, after ``backward()`` in C-RBP mode, the number of Neumann terms used, which stopping rule fired and
whether the Jacobian looked contractive. A non-contractive step is reported (``contractive=False`` and a
``RuntimeWarning``), never silently turned into a wrong gradient.

Notes
-----
* The Neumann backward is an ``autograd.Function`` calling ``torch.autograd.grad`` on the retained graph
  of the tracked step; there are no backward hooks and no global state, so it is safe under DDP (each
  rank runs its own series; parameter gradients are reduced as usual).
* The LCP needs double backward (``create_graph=True``) through the step, so it does not work under
  ``torch.compile``; compile the cell without the penalty or compute the penalty eagerly.
* The stopping rules are the heuristics of the public C-RBP code (``RBPFun``): 15 iterations; stop and keep
  the previous partial sum when ``||g|| > 1`` (an absolute threshold; raise it or set ``None`` for
  sum-reduced losses), when ``||v_k||`` grows, or when ``||v_k|| < 1e-9``. The code uses no damping; the
  TF ancestor (renmengye/inc-few-shot-attractor) used 0.9. All are options of :class:`CRBPConfig`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch

State = torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]
StepFn = Callable[[Any, Any, int], Any]
MODES = ("bptt", "truncated", "crbp")


@dataclass(frozen=True)
class CRBPConfig:
    """Options of the C-RBP backward pass and of the Lipschitz coefficient penalty.

    Attributes
    ----------
    neumann_iters : maximum number of Neumann terms ``v J^k`` (published: 15).
    neumann_stopping : apply the published early-stopping rules below; ``False`` runs all ``neumann_iters``.
    neumann_g_limit : stop (keeping the previous partial sum) when ``||g|| >`` this; ``None`` disables the
        rule. Absolute, as in the reference code, so it depends on the loss scale: disable it for summed
        losses or under AMP loss scaling (GradScaler), where it would stop at the first term.
    neumann_stop_on_growth : stop (keeping the previous partial sum) when ``||v_k|| > ||v_{k-1}||``.
    neumann_tol : stop when ``||v_k|| <`` this (published: 1e-9).
    neumann_damping : factor ``d`` in ``v_k = d v_{k-1} J`` (1.0 in the PyTorch code, 0.9 in its TF ancestor).
    lipschitz_penalty : compute the LCP on the last step while gradients are enabled and return it as
        ``stats.penalty``. None (default): on in ``crbp`` mode (C-RBP = RBP + LCP), off in the others.
        ``True`` with ``mode="bptt"`` is C-BPTT, the C-RBP paper's comparison arm: the same penalty, on the
        last step's Jacobian, added to a BPTT loss. ``False`` in ``crbp`` mode is plain RBP.
    penalty_lambda : the LCP target ``lambda`` (0.9 for Pathfinder, 0.95 for COCO in the reference).

    The field names are those of :class:`shared.backbones.RecurrentConfig` (and so of the YAML configs):
    one vocabulary from the config file to the engine.
    """

    neumann_iters: int = 15
    neumann_stopping: bool = True
    neumann_g_limit: float | None = 1.0
    neumann_stop_on_growth: bool = True
    neumann_tol: float = 1e-9
    neumann_damping: float = 1.0
    lipschitz_penalty: bool | None = None
    penalty_lambda: float = 0.9

    def __post_init__(self) -> None:
        if self.neumann_iters < 0:
            raise ValueError(f"neumann_iters must be >= 0, got {self.neumann_iters}")
        if self.neumann_g_limit is not None and self.neumann_g_limit <= 0:
            raise ValueError(f"neumann_g_limit must be > 0 or None, got {self.neumann_g_limit}")
        if not 0 < self.neumann_damping <= 1:
            raise ValueError(f"neumann_damping must be in (0, 1], got {self.neumann_damping}")
        if self.neumann_tol < 0:
            raise ValueError(f"neumann_tol must be >= 0, got {self.neumann_tol}")
        if self.penalty_lambda <= 0:
            raise ValueError(f"penalty_lambda must be > 0, got {self.penalty_lambda}")

    def penalty_in(self, mode: str) -> bool:
        """Whether the LCP is computed in ``mode`` (``lipschitz_penalty``, or None: only in ``crbp``)."""
        return mode == "crbp" if self.lipschitz_penalty is None else self.lipschitz_penalty


@dataclass
class RecurrenceStats:
    """Convergence statistics of one :func:`run_recurrence` call.

    The Neumann fields are written by the C-RBP backward pass, so they are ``None`` until ``backward()``
    has run (and stay ``None`` in the other modes).

    Attributes
    ----------
    mode : the training mode used.
    timesteps : T.
    residuals : ``||h_t - h_{t-1}|| / ||h_t||`` for t = 1..T (length T).
    tracked_steps : how many steps carry a graph (T, k or 1).
    neumann_iterations : Neumann terms added to ``g`` (C-RBP, after backward).
    neumann_stop : ``"max_iters"``, ``"g_norm"``, ``"growth"`` or ``"tol"`` (C-RBP, after backward).
    neumann_ratio : ``||v_K|| / ||v_0||`` for the last term computed, a contraction estimate.
    contractive : ``False`` when the Neumann terms grew (the series diverges: the gradient is an
        approximation); ``True`` when they shrank; ``None`` before backward / outside C-RBP.
    penalty : the LCP, a scalar Tensor with a graph (while training, when :meth:`CRBPConfig.penalty_in`
        the mode: C-RBP by default, C-BPTT on request), else ``None``. Add ``weight * penalty`` to the loss.
    """

    mode: str
    timesteps: int
    residuals: list[float] = field(default_factory=list)
    tracked_steps: int = 0
    neumann_iterations: int | None = None
    neumann_stop: str | None = None
    neumann_ratio: float | None = None
    contractive: bool | None = None
    penalty: torch.Tensor | None = None

    @property
    def final_residual(self) -> float:
        """The last step's relative residual (``nan`` when no step ran)."""
        return self.residuals[-1] if self.residuals else math.nan


class RecurrenceResult(NamedTuple):
    """What :func:`run_recurrence` returns: the final state, the statistics and the recorded steps."""

    state: State
    stats: RecurrenceStats
    steps: list[Any]


# --- state helpers: a state is a Tensor or a tuple/list of Tensors ---------------------------------------


def flatten_state(h: State) -> tuple[list[torch.Tensor], bool]:
    """``(tensors, was_single)``: the list of Tensors making up a state."""
    if isinstance(h, torch.Tensor):
        return [h], True
    if isinstance(h, (tuple, list)) and h and all(isinstance(t, torch.Tensor) for t in h):
        return list(h), False
    raise TypeError(f"a recurrent state must be a Tensor or a non-empty tuple/list of Tensors, got {type(h)}")


def unflatten_state(tensors: Sequence[torch.Tensor], single: bool) -> State:
    """Inverse of :func:`flatten_state`."""
    return tensors[0] if single else tuple(tensors)


def _norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((t.detach().float() ** 2).sum() for t in tensors))


def _detach(h: State, requires_grad: bool = False) -> State:
    tensors, single = flatten_state(h)
    return unflatten_state([t.detach().requires_grad_(requires_grad) for t in tensors], single)


def _differentiable(h: State) -> State:
    """``h`` with every Tensor in a graph: constants (e.g. a zero initial state) become leaves."""
    tensors, single = flatten_state(h)
    return unflatten_state([t if t.requires_grad else t.detach().requires_grad_(True) for t in tensors], single)


def _vjp(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    v: Sequence[torch.Tensor],
    *,
    create_graph: bool = False,
) -> list[torch.Tensor]:
    """``v J`` for ``J = d outputs / d inputs``; inputs the outputs do not depend on get zeros."""
    grads = torch.autograd.grad(
        list(outputs),
        list(inputs),
        grad_outputs=list(v),
        retain_graph=True,
        create_graph=create_graph,
        allow_unused=True,
    )
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


# --- C-RBP -----------------------------------------------------------------------------------------------


class _NeumannGradient(torch.autograd.Function):
    """Identity on the last state; backward replaces its gradient ``v`` by ``g = sum_k v J^k``.

    Inputs: the stats object, the C-RBP config, the number n of state tensors, then the n detached
    previous-state leaves and the n tracked last-state tensors (whose graph reaches the leaves).
    """

    @staticmethod
    def forward(ctx, stats: RecurrenceStats, cfg: CRBPConfig, n: int, *tensors: torch.Tensor):
        ctx.stats, ctx.cfg, ctx.n = stats, cfg, n
        ctx.save_for_backward(*tensors)
        return tuple(t.clone() for t in tensors[n:])

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        n, cfg, stats = ctx.n, ctx.cfg, ctx.stats
        saved = ctx.saved_tensors
        prev, last = saved[:n], saved[n:]
        v = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, last)]
        g = list(v)
        v_norm0 = v_norm = float(_norm(v))
        stop, used, grew, ratio = "max_iters", 0, False, 1.0
        if v_norm0 == 0.0:
            stop = "tol"
        else:
            with torch.enable_grad():
                for _ in range(cfg.neumann_iters):
                    v_new = [cfg.neumann_damping * t for t in _vjp(last, prev, v)]
                    new_norm = float(_norm(v_new))
                    g_new = [a + b for a, b in zip(g, v_new)]
                    ratio = new_norm / v_norm0
                    if new_norm > v_norm or not math.isfinite(new_norm):
                        grew = True
                    if cfg.neumann_stopping:
                        if cfg.neumann_g_limit is not None and float(_norm(g_new)) > cfg.neumann_g_limit:
                            stop = "g_norm"
                            break
                        if cfg.neumann_stop_on_growth and grew:
                            stop = "growth"
                            break
                        if new_norm < cfg.neumann_tol:
                            stop = "tol"
                            break
                    v, g, v_norm, used = v_new, g_new, new_norm, used + 1
        stats.neumann_iterations, stats.neumann_stop, stats.neumann_ratio = used, stop, ratio
        stats.contractive = not grew
        if grew:
            # a constant message, so Python's warning filter shows it once instead of at every step; the
            # numbers are in the stats (neumann_ratio, neumann_stop, neumann_iterations)
            warnings.warn(
                "C-RBP: the Neumann series diverges (||v_k|| grew from one term to the next): the recurrent "
                "step is not contractive at this fixed point, so the fixed-point gradient is unreliable "
                "(see RecurrenceStats.contractive / neumann_ratio). Add the Lipschitz penalty "
                "(stats.penalty) to the loss, lower the learning rate or use mode='bptt'.",
                RuntimeWarning,
                stacklevel=2,
            )
        return (None, None, None, *([None] * n), *g)


def lipschitz_penalty(step_fn: StepFn, drive: Any, h: State, *, lam: float = 0.9, t: int = 0) -> torch.Tensor:
    """The Lipschitz coefficient penalty (LCP) of one step at state ``h``.

    ``u = 1^T J`` (one vector-Jacobian product with an all-ones vector, ``J = dF/dh`` at ``h``) and
    ``pen = mean([u - lam]+^2)``, averaged over all state elements. The product is built with
    ``create_graph=True`` (double backward), so ``pen`` is differentiable in the step's parameters; add
    ``gamma_pen * pen`` to the task loss (Pathfinder reference: lam 0.9, gamma_pen 10). Not compatible with
    ``torch.compile``.

    Parameters
    ----------
    step_fn : ``step_fn(drive, h, t) -> h``.
    drive : the fixed input of the step.
    h : the state at which J is taken (detached internally).
    lam : the hinge ``lambda``.
    t : step index passed to ``step_fn``.

    Returns
    -------
    pen : scalar Tensor.

    Examples
    --------
    >>> w = torch.nn.Parameter(torch.full((3,), 2.0))
    >>> pen = lipschitz_penalty(lambda x, h, t: w * h + x, torch.zeros(3), torch.ones(3), lam=0.9)
    >>> round(float(pen.detach()), 4)   # u = 2 everywhere: (2 - 0.9)^2
    1.21
    """
    prev = _detach(h, requires_grad=True)
    last = step_fn(drive, prev, t)
    return _penalty_from(flatten_state(prev)[0], flatten_state(last)[0], lam)


def _penalty_from(prev: Sequence[torch.Tensor], last: Sequence[torch.Tensor], lam: float) -> torch.Tensor:
    u = _vjp(last, prev, [torch.ones_like(x) for x in last], create_graph=True)
    flat = torch.cat([x.flatten() for x in u])
    return torch.relu(flat - lam).pow(2).mean()


def jacobian_spectral_radius(
    step_fn: StepFn, drive: Any, h: State, *, iters: int = 30, t: int = 0, seed: int = 0
) -> float:
    """Estimate the spectral radius of ``J = dF/dh`` at ``h`` by power iteration on ``v -> v J``.

    Neumann back-propagation converges when this is below 1. Uses ``iters`` vector-Jacobian products of
    one step; the state is detached, parameters receive no gradient.

    Returns
    -------
    rho : ``||v_K J|| / ||v_K||`` after ``iters`` normalised iterations.

    Examples
    --------
    >>> rho = jacobian_spectral_radius(lambda x, h, t: 0.5 * h + x, torch.zeros(4), torch.ones(4))
    >>> round(rho, 6)
    0.5
    """
    with torch.enable_grad():
        prev = flatten_state(_detach(h, requires_grad=True))[0]
        single = isinstance(h, torch.Tensor)
        last = flatten_state(step_fn(drive, unflatten_state(prev, single), t))[0]
        gen = torch.Generator().manual_seed(seed)
        v = [torch.randn(x.shape, generator=gen).to(x) for x in last]
        rho = 0.0
        for _ in range(iters):
            norm = _norm(v)
            v = [x / norm for x in v]
            v = _vjp(last, prev, v)
            rho = float(_norm(v))
            if rho == 0.0:
                break
    return rho


# --- the engine --------------------------------------------------------------------------------------------


def check_mode(mode: str, *, timesteps: int, truncate_k: int) -> None:
    """Validate ``mode``, ``timesteps`` and ``truncate_k`` with messages naming them."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    if isinstance(truncate_k, bool) or not isinstance(truncate_k, int) or truncate_k < 1:
        raise ValueError(f"truncate_k must be an integer >= 1, got {truncate_k!r}")


def run_recurrence(
    step_fn: StepFn,
    drive: Any,
    h0: State | Callable[[], State],
    *,
    timesteps: int,
    mode: Literal["bptt", "truncated", "crbp"] = "bptt",
    truncate_k: int = 1,
    crbp: CRBPConfig | None = None,
    record_fn: Callable[[State], Any] | None = None,
) -> RecurrenceResult:
    """Run ``h_{t+1} = step_fn(drive, h_t, t)`` for ``timesteps`` steps in a training mode.

    Parameters
    ----------
    step_fn : the cell, ``step_fn(drive, h, t) -> h`` with ``h`` shaped like ``h0``.
    drive : fixed input of every step (Tensor or tuple of Tensors, e.g. (batch, channel, row, column)).
    h0 : initial state (Tensor or tuple/list of Tensors), or a zero-argument callable returning it; a
        callable is evaluated without a graph when the mode does not back-propagate into the initial state.
    timesteps : T >= 1.
    mode : ``"bptt"``, ``"truncated"`` or ``"crbp"`` (see the module docstring). With
        ``crbp.lipschitz_penalty=True`` the BPTT and truncated modes also return the LCP of the last step (C-BPTT).
    truncate_k : steps with a graph in ``truncated`` mode (``k >= T`` is BPTT).
    crbp : C-RBP options; defaults to ``CRBPConfig()``.
    record_fn : called on the state after every step; its results are returned in ``steps`` (use it for
        per-step readouts). Steps computed without a graph are recorded without a graph.

    Returns
    -------
    RecurrenceResult ``(state, stats, steps)``: the final state (in ``crbp`` mode wrapped so that its
    gradient is the Neumann series), :class:`RecurrenceStats`, and the list of ``record_fn`` results
    (empty without ``record_fn``).

    Examples
    --------
    >>> w = torch.nn.Parameter(torch.tensor(0.5))
    >>> x = torch.ones(4)
    >>> h, stats, _ = run_recurrence(lambda x, h, t: w * h + x, x, torch.zeros(4), timesteps=40, mode="crbp",
    ...                              crbp=CRBPConfig(neumann_g_limit=None, lipschitz_penalty=False))
    >>> h.sum().backward()          # h* = 2 and d h*/d w = h* / (1 - w) = 4 per element
    >>> round(float(w.grad), 2), stats.neumann_iterations
    (16.0, 15)
    """
    check_mode(mode, timesteps=timesteps, truncate_k=truncate_k)
    crbp = crbp or CRBPConfig()
    grad_on = torch.is_grad_enabled()
    if not grad_on:
        untracked = timesteps
    elif mode == "bptt":
        untracked = 0
    elif mode == "truncated":
        untracked = max(timesteps - truncate_k, 0)
    else:
        untracked = timesteps - 1
    stats = RecurrenceStats(mode=mode, timesteps=timesteps, tracked_steps=timesteps - untracked)
    if callable(h0):
        with torch.set_grad_enabled(grad_on and untracked == 0):
            h0 = h0()
    h = h0
    single = flatten_state(h)[1]
    steps: list[Any] = []
    residuals: list[torch.Tensor] = []

    def advance(h: State, t: int) -> State:
        new = step_fn(drive, h, t)
        with torch.no_grad():
            old_t, new_t = flatten_state(h)[0], flatten_state(new)[0]
            if len(old_t) != len(new_t) or any(a.shape != b.shape for a, b in zip(old_t, new_t)):
                raise ValueError(
                    f"step_fn changed the state's structure at step {t}: "
                    f"{[tuple(a.shape) for a in old_t]} -> {[tuple(b.shape) for b in new_t]}"
                )
            diff = _norm([b - a for a, b in zip(old_t, new_t)])
            residuals.append(diff / _norm(new_t).clamp_min(1e-12))
        return new

    with torch.no_grad():
        for t in range(untracked):
            h = advance(h, t)
            if record_fn is not None:
                steps.append(record_fn(h))
    if untracked == timesteps:
        pass_through = h
    elif mode == "crbp":
        prev = _detach(h, requires_grad=True)
        last = advance(prev, timesteps - 1)
        prev_t, last_t = flatten_state(prev)[0], flatten_state(last)[0]
        if crbp.penalty_in(mode):
            stats.penalty = _penalty_from(prev_t, last_t, crbp.penalty_lambda)
        wrapped = _NeumannGradient.apply(stats, crbp, len(prev_t), *prev_t, *last_t)
        pass_through = unflatten_state(list(wrapped), single)
        if record_fn is not None:
            steps.append(record_fn(pass_through))
    else:
        if untracked > 0:
            h = _detach(h)
        penalty = crbp.penalty_in(mode)
        for t in range(untracked, timesteps):
            if penalty and t == timesteps - 1:
                h = _differentiable(h)  # the last step's J = d h_T / d h_{T-1} needs a graph to h_{T-1}
                prev_t = flatten_state(h)[0]
            h = advance(h, t)
            if record_fn is not None:
                steps.append(record_fn(h))
        if penalty:
            stats.penalty = _penalty_from(prev_t, flatten_state(h)[0], crbp.penalty_lambda)
        pass_through = h
    stats.residuals = torch.stack(residuals).tolist() if residuals else []
    return RecurrenceResult(pass_through, stats, steps)
