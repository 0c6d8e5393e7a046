"""notebooks/alignment.ipynb runs end to end at a tiny scale."""

from notebook_runner import execute_results, run_notebook


def test_alignment_notebook_executes(tmp_path, monkeypatch):
    nb = run_notebook(
        "alignment", cwd=tmp_path, env={"ALIGNMENT_NB_SCALE": "tiny"}, monkeypatch=monkeypatch, timeout=300
    )
    assert (tmp_path / "alignment_saliency.png").stat().st_size > 0
    assert "harmonized" in execute_results(nb.cells[3])[0]
    assert "xi:" in "".join(o.get("text", "") for o in nb.cells[-1].outputs)
