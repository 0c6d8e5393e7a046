"""notebooks/rldiag.ipynb runs end to end at a tiny budget."""

from notebook_runner import NOTEBOOKS, execute_results, run_notebook


def test_rldiag_notebook_executes(tmp_path, monkeypatch):
    env = {"RLDIAG_NB_BUDGET": "512", "RLDIAG_NB_ENVS": "4", "RLDIAG_NB_OUT": str(tmp_path / "lcd")}
    nb = run_notebook("rldiag", cwd=NOTEBOOKS.parent, env=env, monkeypatch=monkeypatch)
    assert (tmp_path / "lcd" / "taxonomy.png").stat().st_size > 0
    assert "quadrant" in execute_results(nb.cells[-2])[0]
    assert (tmp_path / "lcd" / "cells" / "coinrun__bc__s1.json").exists()
