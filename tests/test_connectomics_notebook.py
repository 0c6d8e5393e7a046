"""The connectomics notebook runs end to end at tiny scale (simulate, train, predict, segment, evaluate)."""

from notebook_runner import run_notebook


def test_notebook_runs(tmp_path, monkeypatch):
    env = {"CONNECTOMICS_NB_SCALE": "tiny", "CONNECTOMICS_NB_DIR": str(tmp_path)}
    nb = run_notebook("connectomics", cwd=tmp_path, env=env, monkeypatch=monkeypatch, timeout=300)
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "parameters; checkpoint" in outputs
    assert (tmp_path / "seg.zarr").exists() and (tmp_path / "pred.zarr" / "affs").exists()
    table = [o for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert table and "arand" in table[-1]["data"]["text/html"]
