"""Device and mixed-precision choices, in one place so no module hard-codes a device."""

from __future__ import annotations

import contextlib

import torch


def default_device() -> torch.device:
    """The CUDA device when one is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Mixed precision (float16 autocast) on CUDA; a no-op context on the CPU.

    CPU autocast to bfloat16 is slower than float32 on most CPUs and changes numerics, so it is not used.
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def lightning_precision() -> str:
    """The Lightning ``precision`` string to use by default: ``"16-mixed"`` on CUDA, ``"32-true"`` on CPU."""
    return "16-mixed" if torch.cuda.is_available() else "32-true"
