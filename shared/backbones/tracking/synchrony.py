"""The synchrony loss of the CV-RNN: phases within an object agree, phases of different objects spread out.

Ported from S4b1n3/feature_tracker ``featuretracker_models/utils/complex_functions.py`` ``synch_loss`` (the
same form as KomplexNet ``SmallModel.synch_loss``), vectorised over batch and frames. For one frame with
G object groups, group g of |g| pixels with phases theta_p::

    synch   = 1 - (1/G) sum_g |sum_{p in g} exp(i theta_p)| / |g|
    desynch = sum_{m=1}^{floor(G/2)} 1 / (2 G m^2) |sum_g exp(i m thetabar_g)|^2
    thetabar_g = angle(sum_{p in g} exp(i theta_p))
    loss    = (synch + desynch) / (1 + G/2 sum_{m=1}^{floor(G/2)} 1/m^2)

``synch`` is 0 when each group is in phase; ``desynch`` is 0 when the G group phases are evenly spread
(``sum_g exp(i m thetabar_g) = 0`` for ``m < G``); the denominator is the reference's ``loss_bound``. The
reference sums this over frames of the batch mean (``CVInT.forward``) and adds it to BCE with weight
``loss_coef1`` (1).

Groups come from the object-id masks of :mod:`shared.data.tracking_video` (0 background, 1 markers,
2 target, 3+k distractor k). Markers are never a group. By default every id >= 2 present in the frame is
its own group and the background is none (the tracking contract's choice).

**The reference's groups** (verified, ``tests/test_tracking_reference.py``): ``synch_loss`` reads the RGB
mask video of ``feature_tracker/utils_drawing.py`` ``plot_frame_mask``, whose red channel holds the start
and goal markers (excluded), green *every distractor* (255 each: ``independent_distractors=0`` in
``gen_stim.sh``) and blue the target, and it adds the remaining background as a third group. So the
reference has exactly three groups: background, all distractors together, target. That is
``merge_distractors=True, include_background=True`` here, which equals the reference's loss up to:

* its ``+ 1e-6`` added to every pixel's cosine and sine in every group's sums (a bias of about
  ``1e-6 H W`` per sum; left out);
* its ``+ pi`` shift of all phases (a global rotation: no effect while every group is present);
* empty groups: the reference's G is always 3 (an empty group counts with size 1 and mean angle
  ``atan2(1e-6 H W, 1e-6 H W) = pi/4``); here G counts the groups present in the frame, and a frame without
  any group adds 0. With the reference grouping a group is empty only in a video without distractors.

Examples
--------
>>> masks = torch.tensor([[[[2, 2], [3, 3]]]])               # one frame, two objects
>>> spread = torch.tensor([[[[0.5, 0.5], [0.5 + torch.pi, 0.5 + torch.pi]]]])
>>> abs(float(synchrony_loss(spread, masks))) < 1e-6          # in phase within, opposite between
True
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from shared.backbones.tracking.complex_ops import magnitude, stable_angle
from shared.validation import check_ndim, check_shape_equal


def synchrony_loss(
    phase: torch.Tensor,
    masks: torch.Tensor,
    *,
    include_background: bool = False,
    merge_distractors: bool = False,
    frame_reduction: Literal["sum", "mean"] = "sum",
) -> torch.Tensor:
    """The reference's synch + desynch loss of a phase video against per-frame object masks.

    Parameters
    ----------
    phase : float Tensor (batch, frame, row, column), radians (e.g. ``model(x, return_steps=True)
        .aux["phase"]`` of ``cvrnn``).
    masks : integer Tensor (batch, frame, row, column) of object ids (0 background, 1 markers, 2 target,
        3+k distractor k).
    include_background : also treat id 0 as a group (the reference does).
    merge_distractors : all distractors (ids >= 3) form one group (the reference does); False: one group each.
    frame_reduction : ``"sum"`` over frames of the batch mean (reference) or ``"mean"`` over frames.

    Returns
    -------
    Scalar Tensor, differentiable in ``phase``; per frame in [0, 1].

    Examples
    --------
    >>> masks = torch.tensor([[[[2, 0], [3, 1]]]])
    >>> round(float(synchrony_loss(torch.zeros(1, 1, 2, 2), masks)), 6)  # synch 0, desynch 4/4, bound 2
    0.5
    >>> ids = torch.tensor([[[[2, 3], [4, 0]]]])                 # target, two distractors, background
    >>> third = 2 * torch.pi / 3                                  # the reference's optimum: 3 groups spread
    >>> phase = torch.tensor([[[[0.0, third], [third, -third]]]])
    >>> abs(float(synchrony_loss(phase, ids, merge_distractors=True, include_background=True))) < 1e-6
    True
    """
    check_ndim(phase, 4, name="phase", axes="(batch, frame, row, column)")
    check_shape_equal(phase, masks, names=("phase", "masks"))
    if masks.is_floating_point():
        raise TypeError(f"masks must hold integer object ids, got dtype {masks.dtype}")
    if frame_reduction not in ("sum", "mean"):
        raise ValueError(f"frame_reduction must be 'sum' or 'mean', got {frame_reduction!r}")
    ids = masks.long().flatten(2)  # (B, T, P)
    if merge_distractors:
        ids = ids.clamp_max(3)
    n_ids = max(int(ids.max()) + 1, 3) if ids.numel() else 3
    one_hot = F.one_hot(ids.clamp_min(0), n_ids).to(phase.dtype)  # (B, T, P, K)
    keep = torch.ones(n_ids, dtype=torch.bool, device=phase.device)
    keep[1] = False
    keep[0] = include_background
    groups = one_hot[..., keep]  # (B, T, P, G)
    theta = phase.flatten(2)
    cos_sum = torch.einsum("btpg,btp->btg", groups, torch.cos(theta))
    sin_sum = torch.einsum("btpg,btp->btg", groups, torch.sin(theta))
    size = groups.sum(dim=2)
    present = size > 0
    n_groups = present.sum(dim=-1)  # (B, T)
    denominator = n_groups.clamp_min(1).to(phase.dtype)
    order = magnitude(cos_sum, sin_sum) / size.clamp_min(1)
    synch = 1 - (order * present).sum(-1) / denominator
    mean_angle = stable_angle(cos_sum, sin_sum)  # (B, T, G)
    max_m = int(n_groups.max()) // 2 if n_groups.numel() else 0
    desynch = torch.zeros_like(synch)
    bound = torch.ones_like(synch)
    for m in range(1, max_m + 1):
        active = (n_groups // 2 >= m).to(phase.dtype)
        re = (torch.cos(m * mean_angle) * present).sum(-1)
        im = (torch.sin(m * mean_angle) * present).sum(-1)
        desynch = desynch + active * (re**2 + im**2) / (2 * denominator * m**2)
        bound = bound + active * 0.5 * denominator / m**2
    per_frame = (synch + desynch) / bound * (n_groups > 0)  # (B, T)
    batch_mean = per_frame.mean(dim=0)
    return batch_mean.sum() if frame_reduction == "sum" else batch_mean.mean()
