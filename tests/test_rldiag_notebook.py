"""notebooks/rldiag.ipynb runs end to end at a tiny budget."""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "rldiag.ipynb"


def test_rldiag_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDIAG_NB_BUDGET", "512")
    monkeypatch.setenv("RLDIAG_NB_ENVS", "4")
    monkeypatch.setenv("RLDIAG_NB_OUT", str(tmp_path / "lcd"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}
    ).execute()
    assert (tmp_path / "lcd" / "taxonomy.png").stat().st_size > 0
    table = [o for o in nb.cells[-2].outputs if o.get("output_type") == "execute_result"]
    assert "quadrant" in table[0]["data"]["text/plain"]
    assert os.path.exists(tmp_path / "lcd" / "cells" / "coinrun__bc__s1.json")
