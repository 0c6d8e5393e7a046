"""Every runtime dependency must import: pip's resolver does not catch runtime pins (e.g. pyarrow 26 needs
numpy 2 but installs under numpy<2), so an install that resolves can still be broken."""

import importlib
import subprocess
import sys

import pytest

MODULES = [
    "torch",
    "lightning",
    "jsonargparse",
    "numpy",
    "scipy",
    "zarr",
    "dask.array",
    "distributed",
    "skimage",
    "sklearn",
    "rdkit.Chem",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "gymnasium",
    "matplotlib",
    "tqdm",
    "h5py",
    "tifffile",
    "pycytominer",
    "captum",
    "tensorboard",
    "numba",
    "threadpoolctl",
    # dev extra: notebook runner and the peers tests/benchmarks compare against
    "nbclient",
    "nbformat",
    "copairs",
    "waterz",
    "mwatershed",
    "stable_baselines3",
    "ome_zarr.reader",
    "ome_zarr_models",
]


@pytest.mark.parametrize("name", MODULES)
def test_dependency_imports(name):
    importlib.import_module(name)


def test_procgen_imports_in_a_subprocess():
    # procgen drags in gym/gym3; import it in a child so gym never leaks into this test process
    code = "from procgen import ProcgenGym3Env; e = ProcgenGym3Env(num=1, env_name='coinrun'); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_numpy_is_below_2_for_procgen():
    import numpy

    assert int(numpy.__version__.split(".")[0]) < 2
