"""The small shared pieces: validators, safe checkpoint loading, the console-command dispatcher, the report."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from shared import checkpoints, validation
from shared.cli import Subcommand, run_subcommands
from shared.report import Report


def test_check_ndim_names_variable_and_axes():
    with pytest.raises(ValueError, match=r"raw must have 3 axes \(plane, row, column\), got 2"):
        validation.check_ndim(np.zeros((4, 4)), 3, name="raw", axes="(plane, row, column)")


def test_check_dtype_kind_and_finite():
    validation.check_dtype_kind(np.zeros(3, np.uint64), "iu", name="labels")
    with pytest.raises(TypeError, match="labels must have an integer dtype, got float32"):
        validation.check_dtype_kind(np.zeros(3, np.float32), "iu", name="labels")
    with pytest.raises(TypeError, match="float32"):
        validation.check_dtype_kind(torch.zeros(3), "iu", name="t")
    with pytest.raises(ValueError, match=r"raw contains 1 NaN and 1 infinite value\(s\); first at index \(0, 1\)"):
        validation.check_finite(np.array([[0.0, np.nan], [np.inf, 1.0]]), name="raw")


def test_check_choice_and_shapes():
    with pytest.raises(ValueError, match="mode must be one of 'a', 'b'; got 'c'"):
        validation.check_choice("c", ("a", "b"), name="mode")
    with pytest.raises(ValueError, match=r"raw and labels must have the same shape, got \(2,\) and \(3,\)"):
        validation.check_shape_equal(np.zeros(2), np.zeros(3), names=("raw", "labels"))


def test_check_existing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="config does not exist"):
        validation.check_existing_path(tmp_path / "nope.yaml", name="config")
    with pytest.raises(ValueError, match="must be a file"):
        validation.check_existing_path(tmp_path, name="config", kind="file")
    assert validation.check_existing_path(tmp_path, name="root", kind="dir") == tmp_path.resolve()


class _Tiny(torch.nn.Module):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.width = width
        self.lin = torch.nn.Linear(width, 1)


def test_load_lightning_module_roundtrip(tmp_path):
    model = _Tiny(4)
    path = tmp_path / "m.ckpt"
    hparams = {"width": 4, "_instantiator": "lightning.pytorch.cli.instantiate_module"}  # as LightningCLI saves
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, path)
    loaded = checkpoints.load_lightning_module(_Tiny, path)
    assert torch.equal(loaded.lin.weight, model.lin.weight)
    assert not loaded.training


def test_load_checkpoint_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"obj": _Tiny()}, path)  # a whole module is pickled code, not weights
    with pytest.raises(ValueError, match="weights_only=True"):
        checkpoints.load_checkpoint(path)


def test_load_checkpoint_missing_and_not_lightning(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoints.load_checkpoint(tmp_path / "missing.ckpt")
    path = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="no 'state_dict'"):
        checkpoints.load_lightning_module(_Tiny, path)


def _echo(argv):
    print("echo", *argv)
    return 3


def test_run_subcommands_dispatch_and_help(capsys):
    subs = {"echo": Subcommand("tests.test_shared_core:_echo", "print the arguments")}
    assert run_subcommands("prog", "A manual.", subs, ["echo", "a", "b"]) == 3
    assert "echo a b" in capsys.readouterr().out
    assert run_subcommands("prog", "A manual.", subs, ["--help"]) == 0
    out = capsys.readouterr().out
    assert "A manual." in out and "print the arguments" in out
    assert run_subcommands("prog", "A manual.", subs, ["nope"]) == 2
    assert "unknown subcommand 'nope'" in capsys.readouterr().err


def test_report_writes_tables_and_relative_figures(tmp_path):
    import matplotlib.pyplot as plt

    fig_path = tmp_path / "part" / "fig.png"
    fig_path.parent.mkdir()
    plt.figure()
    plt.plot([0, 1])
    plt.savefig(fig_path)
    plt.close("all")
    report = Report("demo <test>")
    section = report.section("Part", "first paragraph\n\nsecond")
    section.add_table("numbers", pd.DataFrame({"model": ["a"], "acc": [0.5]}))
    section.add_figure("a figure", fig_path)
    html = Path(report.write(tmp_path)).read_text()
    assert "demo &lt;test&gt;" in html and "<td>0.5</td>" in html
    assert "src='part/fig.png'" in html
    assert html.count("<p>") >= 2


class _Payload:
    """Unpickling this would create a file: a stand-in for code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def hostile_checkpoint(path: Path, marker: Path) -> Path:
    """A Lightning-looking checkpoint whose state_dict carries a pickle payload (used by CLI tests too)."""
    torch.save({"state_dict": {"w": _Payload(marker)}, "hyper_parameters": {}}, path)
    return path


def test_hostile_checkpoint_is_refused_unread(tmp_path):
    path = hostile_checkpoint(tmp_path / "evil.ckpt", tmp_path / "pwned")
    with pytest.raises(checkpoints.CheckpointError, match="refused checkpoint .*could run code"):
        checkpoints.load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_empty_and_truncated_checkpoints_name_the_problem(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(4096)}, "hyper_parameters": {"width": 3}}, good)
    data = good.read_bytes()
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(checkpoints.CheckpointError, match=r"is empty \(0 bytes\)"):
        checkpoints.load_checkpoint(tmp_path / "empty.ckpt")
    # cut points that made torch raise RuntimeError ("central directory") and OSError ([Errno 22])
    for n in (100, len(data) // 2, len(data) - 30, len(data) - 1):
        (tmp_path / "cut.ckpt").write_bytes(data[:n])
        with pytest.raises(checkpoints.CheckpointError, match="is truncated or corrupt"):
            checkpoints.load_checkpoint(tmp_path / "cut.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint at all")
    with pytest.raises(checkpoints.CheckpointError, match="not a PyTorch checkpoint"):
        checkpoints.load_checkpoint(tmp_path / "text.ckpt")


def test_checkpoint_of_another_subsystem_is_named(tmp_path):
    path = tmp_path / "pf.ckpt"
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"backbone": "hgru", "readout": "reference", "lipschitz_weight": 10.0}},
        path,
    )

    class IBPModule(_Tiny):  # the class name is what identifies the expected kind
        pass

    with pytest.raises(
        checkpoints.CheckpointError, match="this is a Pathfinder checkpoint .*; expected a phenotypic IBP checkpoint"
    ):
        checkpoints.load_lightning_module(IBPModule, path)
    with pytest.raises(checkpoints.CheckpointError, match="this is a Pathfinder checkpoint"):
        checkpoints.load_checkpoint(path, expect="ppo")
    torch.save({"state_dict": {}, "hyper_parameters": {"depthh": 3}}, path)  # unknown kind, wrong arguments
    with pytest.raises(checkpoints.CheckpointError, match=r"hyper-parameters \['depthh'\] are not arguments"):
        checkpoints.load_lightning_module(_Tiny, path)
    torch.save({"state_dict": {"lin.weight": torch.zeros(1, 9)}, "hyper_parameters": {"width": 3}}, path)
    with pytest.raises(checkpoints.CheckpointError, match="does not rebuild as a _Tiny checkpoint: .*size mismatch"):
        checkpoints.load_lightning_module(_Tiny, path)
