"""Executes a notebook from `notebooks/` the way the suite checks every domain notebook.

Each notebook reads its scale (and output folder) from environment variables that the test sets, so the
same notebook a user runs at full size runs here in seconds. The kernel inherits this process's
environment; the package is installed editable, so the notebook imports it from any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, *, cwd: Path, env: dict[str, str], monkeypatch, timeout: int = 600):
    """Run ``notebooks/<name>.ipynb`` in ``cwd`` with ``env`` set; return the executed notebook.

    Also checks the notebook is committed without outputs (outputs belong to a run, not to the repository).
    """
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path} has outputs"
    assert os.environ["MPLBACKEND"] == "Agg"
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def execute_results(cell) -> list[str]:
    """The plain-text ``execute_result`` outputs of one executed cell."""
    return [o["data"]["text/plain"] for o in cell.get("outputs", []) if o.get("output_type") == "execute_result"]
