"""Test-suite settings: headless plotting, one torch thread per xdist worker (CI has 2 cores), no help cache."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# the suite never reads or writes the user's --help cache (shared.cli.cached_help): a kept help would skip the
# rendering that tests of LightningCLI commands look at; tests of the cache turn it on in a temporary folder
os.environ["RV_HELP_CACHE"] = "0"

import matplotlib  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")
torch.set_num_threads(1)
