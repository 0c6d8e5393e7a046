"""The connectomics notebook runs end to end at tiny scale (simulate, train, predict, segment, evaluate)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "connectomics.ipynb"


def test_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CONNECTOMICS_NB_SCALE", "tiny")
    monkeypatch.setenv("CONNECTOMICS_NB_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NOTEBOOK.parents[1]), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "parameters; checkpoint" in outputs
    assert (tmp_path / "seg.zarr").exists() and (tmp_path / "pred.zarr" / "affs").exists()
    table = [o for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert table and "arand" in table[-1]["data"]["text/html"]
