"""Complex-valued layers of the CV-RNN, on pairs of real tensors (real part, imaginary part).

Ported from S4b1n3/feature_tracker ``featuretracker_models/utils/complex_functions.py`` (``stable_angle``,
``apply_layer``, ``apply_layer_from_real``, ``apply_activation_function``, ``ComplexConvolution2D``,
``RealToComplexConvolution2D``) and S4b1n3/KomplexNet ``smaller_complex_model.py``
(``SmallModel.update_phases``, the Kuramoto step). A complex map is carried as two real tensors
``(re, im)`` of shape (batch, channel, row, column) rather than a complex dtype, so the recurrence engine
(its residual norms, its Neumann series) sees ordinary real states.

* **R2C** (real to complex): two real convolutions give ``psi = f_re(x) + i f_im(x)``; magnitude
  ``|psi|``, phase ``angle(psi)``.
* **CConv** (complex to complex): ONE real convolution f applied to both parts, ``psi = f(Re z) + i f(Im z)``;
  magnitude ``0.5 |psi| + 0.5 f(|z|)`` (the "classic term" ``f(|z|)``), phase ``angle(psi)``.
* **Activation** (both, ``apply_activ=True`` in the reference): ``ReLU(InstanceNorm(magnitude))`` (affine,
  per-sample statistics) with the phase kept.

``complex_valued=False`` gives the real-valued control of the same layer: every parameter and every
magnitude computation are kept, every phase is set to 0, so the layer passes non-negative magnitudes and no
phase information (the control of the CV-RNN comparison; our construction, not in the reference).

Examples
--------
>>> conv = CConv(2, 3, kernel_size=3)
>>> re, im = conv(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))
>>> re.shape, bool(torch.isfinite(magnitude(re, im)).all())
(torch.Size([1, 3, 8, 8]), True)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def magnitude(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    """``|re + i im|`` with a zero (not NaN) gradient at ``0 + 0i``, like PyTorch's complex ``abs``.

    Examples
    --------
    >>> re = torch.zeros(2, requires_grad=True)
    >>> magnitude(re, torch.tensor([0.0, 2.0])).sum().backward()
    >>> re.grad.tolist()
    [0.0, 0.0]
    """
    square = re * re + im * im
    positive = square > 0
    return torch.where(
        positive, torch.sqrt(torch.where(positive, square, torch.ones_like(square))), torch.zeros_like(square)
    )


def stable_angle(re: torch.Tensor, im: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``angle(re + i im)`` with finite gradients: parts within ``eps`` of 0 are replaced by ``eps``.

    The reference ``stable_angle`` writes ``eps`` into those parts of a clone, so they get no gradient and
    ``0 + 0i`` has angle ``pi / 4``; this does the same with ``torch.where``.

    Parameters
    ----------
    re, im : real Tensors of one shape.
    eps : the replacement value.

    Returns
    -------
    Tensor of angles in (-pi, pi], same shape.

    Examples
    --------
    >>> round(float(stable_angle(torch.tensor(0.0), torch.tensor(0.0))), 4)   # pi / 4
    0.7854
    >>> round(float(stable_angle(torch.tensor(-1.0), torch.tensor(1.0))), 4)  # 3 pi / 4
    2.3562
    """
    re = torch.where(re.abs() < eps, torch.full_like(re, eps), re)
    im = torch.where(im.abs() < eps, torch.full_like(im, eps), im)
    return torch.atan2(im, re)


def to_cartesian(mag: torch.Tensor, phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mag cos phase, mag sin phase)``: the reference's ``get_complex_number`` as a real pair."""
    return mag * torch.cos(phase), mag * torch.sin(phase)


class _ComplexLayer(nn.Module):
    """Shared activation: ``ReLU(InstanceNorm(magnitude))``, phase kept (or zeroed in the real control).

    ``activation=False`` is the reference's ``apply_activ=False`` (magnitude and phase passed unchanged).
    """

    def __init__(self, channels: int, complex_valued: bool, activation: bool) -> None:
        super().__init__()
        self.complex_valued = complex_valued
        self.norm = nn.InstanceNorm2d(channels, affine=True) if activation else None

    def activate(self, mag: torch.Tensor, phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.norm is not None:
            mag = F.relu(self.norm(mag))
        return mag, phase if self.complex_valued else torch.zeros_like(phase)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The activated output as ``(re, im)``."""
        return to_cartesian(*self.polar(*args))


class R2C(_ComplexLayer):
    """Real -> complex convolution (the reference ``RealToComplexConvolution2D`` with ``apply_activ``).

    Parameters
    ----------
    in_channels, out_channels : channels.
    kernel_size : odd size ('same' zero padding, no bias: ``biases=False`` in every CV-RNN use).
    complex_valued : False zeroes the output phase (the real-valued control).
    activation : apply ``ReLU(InstanceNorm(magnitude))`` (the reference's ``apply_activ``).

    Examples
    --------
    >>> layer = R2C(2, 4, kernel_size=3)
    >>> mag, phase = layer.polar(torch.rand(1, 2, 6, 6))
    >>> bool((mag >= 0).all()) and phase.shape == (1, 4, 6, 6)
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        complex_valued: bool = True,
        activation: bool = True,
    ) -> None:
        super().__init__(out_channels, complex_valued, activation)
        self.conv_re = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.conv_im = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def polar(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Magnitude and phase (batch, out_channels, row, column) of the activated output of real ``x``."""
        re, im = self.conv_re(x), self.conv_im(x)
        return self.activate(magnitude(re, im), stable_angle(re, im))


class CConv(_ComplexLayer):
    """Complex -> complex convolution (the reference ``ComplexConvolution2D`` with ``apply_activ``).

    ``psi = f(re) + i f(im)``; magnitude ``0.5 |psi| + 0.5 f(|z|)``, phase ``angle(psi)``; then the
    activation. Parameters as in :class:`R2C`.

    Examples
    --------
    >>> layer = CConv(1, 1, kernel_size=1)
    >>> with torch.no_grad():
    ...     _ = layer.conv.weight.fill_(2.0)
    >>> mag, phase = layer.polar(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    >>> round(float(phase[0, 0, 0, 0].detach()), 4)   # angle(2i) = pi / 2, kept by the activation
    1.5708
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        complex_valued: bool = True,
        activation: bool = True,
    ) -> None:
        super().__init__(out_channels, complex_valued, activation)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def pre_activation(self, re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Magnitude ``0.5 |psi| + 0.5 f(|z|)`` and phase ``angle(psi)`` before the activation."""
        psi_re, psi_im = self.conv(re), self.conv(im)
        mag = 0.5 * magnitude(psi_re, psi_im) + 0.5 * self.conv(magnitude(re, im))
        return mag, stable_angle(psi_re, psi_im)

    def polar(self, re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Magnitude and phase of the activated output of ``re + i im``."""
        return self.activate(*self.pre_activation(re, im))


def gaussian_kernel(channels: int, size: int, *, mean_r: float = 0.0, std_r: float = 0.5) -> torch.Tensor:
    """KomplexNet's Gaussian coupling kernel, ``exp(-(d - mean_r)^2 / (2 std_r^2))`` on a [-1, 1] grid.

    Returns
    -------
    Tensor (channels, channels, size, size): the same spatial profile for every channel pair.

    Examples
    --------
    >>> k = gaussian_kernel(2, 3)
    >>> k.shape, float(k[0, 0, 1, 1])
    (torch.Size([2, 2, 3, 3]), 1.0)
    """
    axis = torch.linspace(-1.0, 1.0, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    dist = torch.sqrt(x**2 + y**2)
    profile = torch.exp(-((dist - mean_r) ** 2) / (2.0 * std_r**2))
    return profile.expand(channels, channels, size, size).clone()


class KuramotoCoupling(nn.Module):
    """One Kuramoto phase step with a local coupling kernel K (KomplexNet ``update_phases``).

    With ``b = tanh(magnitude)``::

        dphi = lr * [cos(phi) (K * (b sin phi) - eps S_sin) - sin(phi) (K * (b cos phi) - eps S_cos)]

    where ``S_*`` sums ``b sin phi`` / ``b cos phi`` over channels and pixels of each sample. This is
    ``lr * sum_j K_ij b_j sin(phi_j - phi_i)`` minus a global desynchronising term. K is learned
    (KomplexNet's ``"endtoend"`` mode) and starts at :func:`gaussian_kernel`. The reference convolves with
    ``padding="same"`` (zeros); so does this.

    Parameters
    ----------
    channels : channels of the phase map.
    kernel_size : odd spatial size of K (reference 5).
    lr : ``lr_kuramoto`` (reference 1).
    epsilon : the global desynchronisation weight (reference 0).

    Examples
    --------
    >>> step = KuramotoCoupling(1, kernel_size=3)
    >>> phase = torch.zeros(1, 1, 4, 4)
    >>> bool((step(torch.ones(1, 1, 4, 4), phase) == phase).all())   # in-phase units stay in phase
    True
    """

    def __init__(self, channels: int, kernel_size: int = 5, *, lr: float = 1.0, epsilon: float = 0.0) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kuramoto_kernel must be a positive odd integer, got {kernel_size}")
        self.kernel = nn.Parameter(gaussian_kernel(channels, kernel_size))
        self.lr, self.epsilon = lr, epsilon

    def forward(self, mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """The updated phase (batch, channel, row, column)."""
        b = torch.tanh(mag)
        b_cos, b_sin = torch.cos(phase) * b, torch.sin(phase) * b
        pad = self.kernel.shape[-1] // 2
        c_cos = F.conv2d(b_cos, self.kernel, padding=pad)
        c_sin = F.conv2d(b_sin, self.kernel, padding=pad)
        s_cos = b_cos.sum(dim=(1, 2, 3), keepdim=True)
        s_sin = b_sin.sum(dim=(1, 2, 3), keepdim=True)
        update = torch.cos(phase) * (c_sin - self.epsilon * s_sin) - torch.sin(phase) * (c_cos - self.epsilon * s_cos)
        return phase + self.lr * update
