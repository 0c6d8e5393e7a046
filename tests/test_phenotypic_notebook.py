"""notebooks/phenotypic.ipynb runs end to end at tiny scale."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "phenotypic.ipynb"


def test_phenotypic_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("PHENO_NB_OUT", str(tmp_path / "nb"))
    monkeypatch.setenv("PHENO_NB_STEPS", "20")
    monkeypatch.setenv("PHENO_NB_COMPOUNDS", "90")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}
    ).execute()
    assert (tmp_path / "nb" / "scaling.png").stat().st_size > 0
    tasks = [o for o in nb.cells[-4].outputs if o.get("output_type") == "execute_result"]
    assert "molecule rediscovery" in tasks[0]["data"]["text/plain"]
    assert len(list((tmp_path / "nb" / "grid" / "cells").glob("*.json"))) == 3
