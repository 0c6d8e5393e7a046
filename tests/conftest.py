"""Test-suite settings: headless plotting and one torch thread per xdist worker (CI has 2 cores)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")
torch.set_num_threads(1)
