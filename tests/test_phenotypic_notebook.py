"""notebooks/phenotypic.ipynb runs end to end at tiny scale."""

from notebook_runner import NOTEBOOKS, execute_results, run_notebook


def test_phenotypic_notebook_executes(tmp_path, monkeypatch):
    env = {"PHENO_NB_OUT": str(tmp_path / "nb"), "PHENO_NB_STEPS": "20", "PHENO_NB_COMPOUNDS": "90"}
    nb = run_notebook("phenotypic", cwd=NOTEBOOKS.parent, env=env, monkeypatch=monkeypatch, timeout=300)
    assert (tmp_path / "nb" / "scaling.png").stat().st_size > 0
    assert "molecule rediscovery" in execute_results(nb.cells[-4])[0]
    assert len(list((tmp_path / "nb" / "grid" / "cells").glob("*.json"))) == 3
