"""notebooks/alignment.ipynb runs end to end at a tiny scale."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "alignment.ipynb"


def test_alignment_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_NB_SCALE", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOK.parents[1]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert (tmp_path / "alignment_saliency.png").stat().st_size > 0
    scores = [o for o in nb.cells[3].outputs if o.get("output_type") == "execute_result"]
    assert "harmonized" in scores[0]["data"]["text/plain"]
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "xi:" in last
