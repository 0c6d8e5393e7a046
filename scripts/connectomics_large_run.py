"""The "done when" run of issue 4: fit -> predict -> segment -> evaluate from the CLI on a simulated volume
whose data is many times larger than the peak memory of any step, with interruptions, resumes and identity
checks.

Steps (each a ``python -m connectomics.cli ...`` subprocess under ``/usr/bin/time``, which reports its peak
RSS; a killed step has no figure):

1. ``simulate`` the test volume (skipped when complete; the same command finishes an interrupted one);
2. ``fit`` a small U-Net (features [8, 16]) for ``--train-steps`` steps on a separate, small simulated
   volume, so the affinities, fragments and scores mean something (``--checkpoint`` uses a given one);
3. ``predict``: SIGKILLed after a third of its blocks, then rerun (resumes); an uninterrupted
   ``predict --roi`` over the z-slab(s) where the kill happened (blocks of both runs) must be identical;
4. ``segment``: SIGKILLed during its fragment stage, then rerun (resumes); an uninterrupted ``segment`` of
   the same affinities must give identical fragments and segmentations;
5. ``evaluate`` against the simulated labels (blockwise contingency table).

Data sizes are the level-0 arrays' uncompressed bytes (``shape x itemsize``). Two ratios are reported: all
data of the pipeline / each step's peak RSS, and each step's own input + output / its peak RSS.

    nice -n 10 .venv/bin/python scripts/connectomics_large_run.py --work /tmp/large3 --shape 256,1024,1024
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIM_CHUNKS = "32,128,128"
MODEL = {"features": [8, 16], "downsample": [[1, 2, 2]], "kernel_size": [3, 3, 3], "norm": "none"}


def run(args: list[str], log: Path, *, kill_when: Callable[[], bool] | None = None) -> dict:
    """Run ``python -m connectomics.cli ARGS`` (output appended to ``log``); exit code, seconds, peak RSS.

    ``kill_when`` (a callable) is polled; when it returns True the process group is SIGKILLed.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rss_file = log.with_suffix(".rss")
    rss_file.unlink(missing_ok=True)
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ connectomics {' '.join(args)}\n")
        out.flush()
        # /usr/bin/time (a small C program) forks the CLI: a fork straight from this Python process would
        # count this process's resident pages in the child's peak (Linux keeps the pre-exec high-water mark)
        proc = subprocess.Popen(
            ["/usr/bin/time", "-q", "-f", "%M", "-o", str(rss_file), sys.executable, "-m", "connectomics.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        killed = False
        while kill_when is not None and proc.poll() is None:
            if kill_when():
                os.killpg(proc.pid, signal.SIGKILL)  # the CLI under /usr/bin/time, not only time itself
                killed = True
                break
            time.sleep(0.2)
        code = proc.wait()
    text = rss_file.read_text().split() if rss_file.exists() else []
    rss = int(text[-1]) / 1024 if text and text[-1].isdigit() and not killed else None
    result = {
        "code": code,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mib": None if rss is None else round(rss, 1),
    }
    if code != 0 and not killed:
        raise RuntimeError(f"connectomics {' '.join(args)} failed ({result}); see {log}")
    return result


def n_markers(folder: Path, stage: str = "") -> int:
    """Done-markers in ``folder`` (of one ``stage`` of a job, e.g. segment's ``fragments``)."""
    names = os.listdir(folder) if folder.is_dir() else []
    return len([n for n in names if n.startswith(f"{stage}-")] if stage else names)


def nbytes(path: str) -> int:
    """Uncompressed bytes of a volume's level-0 array."""
    from connectomics.io import open_volume

    data = open_volume(path).data
    return int(np.prod(data.shape)) * data.dtype.itemsize


def identical(a_path: str, b_path: str, slabs: list[tuple[int, int]]) -> bool:
    """Whether two volumes are equal voxel for voxel over the z-ranges ``slabs``, read one slab at a time."""
    from connectomics.io import open_volume

    a, b = open_volume(a_path).data, open_volume(b_path).data
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    for z0, z1 in slabs:
        index = (slice(None),) * (a.ndim - 3) + (slice(z0, z1),)
        if not np.array_equal(np.asarray(a[index].compute()), np.asarray(b[index].compute())):
            return False
    return True


def train_checkpoint(work: Path, steps: int, log: Path, report: dict) -> Path:
    """``connectomics fit`` a small U-Net on its own simulated volume; returns ``last.ckpt``."""
    import yaml

    ckpt = work / "fit" / "checkpoints" / "last.ckpt"
    if ckpt.exists():
        return ckpt
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": steps,
            "accelerator": "cpu",
            "devices": 1,
            "log_every_n_steps": 20,
            "default_root_dir": str(work / "fit"),
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 0,
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(ckpt.parent), "save_last": True},
                }
            ],
        },
        "model": {"backbone": "unet3d", "backbone_config": MODEL, "lr": 0.003},
        "data": {
            "train": [str(work / "fit" / "train.zarr")],
            "simulate": {"sources": ["sstem"], "shape": [32, 192, 192], "seed": 5},
            "crop_shape": [8, 64, 64],
            "batch_size": 4,
            "samples_per_epoch": 4 * steps,
        },
    }
    (work / "fit").mkdir(parents=True, exist_ok=True)
    (work / "fit" / "fit.yaml").write_text(yaml.safe_dump(config))
    report["steps"]["fit (not counted)"] = run(["fit", "--config", str(work / "fit" / "fit.yaml")], log)
    return ckpt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/connectomics_large"))
    parser.add_argument("--shape", default="256,1024,1024", help="test volume plane,row,column")
    parser.add_argument("--checkpoint", type=Path, default=None, help="an AffinityModel checkpoint (default: fit)")
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--predict-block", default="32,128,128")
    parser.add_argument("--predict-context", default="6,16,16")
    parser.add_argument("--segment-block", default="32,128,128")
    parser.add_argument("--segment-context", default="2,16,16")
    parser.add_argument("--thresholds", default="0.3,0.5,0.7")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from connectomics.blocks import Roi, block_grid, parse_coordinate
    from connectomics.simulate import BOOKKEEPING

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "run.log"
    shape = parse_coordinate(args.shape, name="--shape")
    volume = Roi((0, 0, 0), shape)
    report: dict = {"shape": list(shape), "voxels": int(np.prod(shape)), "steps": {}}

    # 1. the test volume
    sim = work / "sim.zarr"
    n_chunks = len(block_grid(volume, parse_coordinate(SIM_CHUNKS, name="chunks")))
    if n_markers(sim / BOOKKEEPING / "done", "block") < n_chunks:  # an older container: simulate finds it done
        sim_args = [
            "simulate",
            str(sim),
            "--shape",
            args.shape,
            "--chunks",
            SIM_CHUNKS,
            "--seed",
            "1",
            "--workers",
            str(args.workers),
            "--quiet",
        ]
        report["steps"]["simulate (not counted)"] = run(sim_args, log)  # the same command resumes

    # 2. the model
    ckpt = args.checkpoint or train_checkpoint(work, args.train_steps, log, report)

    # 3. predict: killed, resumed, compared with an uninterrupted run over the slab(s) of the kill
    pred, done = f"{work}/pred.zarr/affs", work / "pred.zarr/affs/0/.job/done"
    predict = [
        "predict",
        str(ckpt),
        f"{sim}/raw",
        pred,
        "--block",
        args.predict_block,
        "--context",
        args.predict_context,
        "--workers",
        str(args.workers),
        "--no-progress",
    ]
    blocks = block_grid(volume, parse_coordinate(args.predict_block, name="--predict-block"))
    if n_markers(done) < len(blocks):
        step = run(predict, log, kill_when=lambda: n_markers(done) >= len(blocks) // 3)
        step["blocks_done"] = n_markers(done)
        report["steps"]["predict (killed)"] = step
    done_at_kill = {int(i) for i in os.listdir(done)}
    report["steps"]["predict (resumed)"] = run(predict, log)
    # the z-slab of blocks with the most blocks from both runs (dask does not finish blocks in id order)
    slabs: dict[int, list] = {}
    for b in blocks:
        slabs.setdefault(b.write_roi.begin[0], []).append(b)
    mixed = {
        z: min(sum(b.block_id in done_at_kill for b in bs), sum(b.block_id not in done_at_kill for b in bs))
        for z, bs in slabs.items()
    }
    z0 = max(mixed, key=mixed.get)
    z1 = max(b.write_roi.end[0] for b in slabs[z0])
    if mixed[z0] == 0:  # every slab was finished by one run only: span one slab of each
        z0 = min(z for z, bs in slabs.items() if any(b.block_id in done_at_kill for b in bs))
        z1 = max(
            b.write_roi.end[0] for z, bs in slabs.items() for b in bs if any(c.block_id not in done_at_kill for c in bs)
        )
    in_slab = [b for b in blocks if z0 <= b.write_roi.begin[0] < z1]
    ref = f"{work}/pred_ref.zarr/affs"
    report["steps"]["predict --roi (reference)"] = run(
        predict[:3] + [ref] + predict[4:] + ["--roi", f"{z0}:{z1},0:{shape[1]},0:{shape[2]}"], log
    )
    report["predict_identity"] = {
        "slab_planes": [z0, z1],
        "blocks_from_killed_run": sum(b.block_id in done_at_kill for b in in_slab),
        "blocks_from_resumed_run": sum(b.block_id not in done_at_kill for b in in_slab),
        "identical": identical(pred, ref, [(z, min(z + 8, z1)) for z in range(z0, z1, 8)]),
    }

    # 4. segment: killed in the fragment stage, resumed, compared with an uninterrupted run
    thresholds = [float(t) for t in args.thresholds.split(",")]
    segment = [
        "segment",
        pred,
        str(work / "seg.zarr"),
        "--thresholds",
        args.thresholds,
        "--block",
        args.segment_block,
        "--context",
        args.segment_context,
        "--workers",
        str(args.workers),
        "--no-progress",
    ]
    seg_done = work / "seg.zarr/fragments/0/.job/done"
    n_seg_blocks = len(block_grid(volume, parse_coordinate(args.segment_block, name="--segment-block")))
    if not (work / "seg.zarr" / f"seg_{thresholds[-1]:g}").exists():
        step = run(segment, log, kill_when=lambda: n_markers(seg_done, "fragments") >= n_seg_blocks // 2)
        step["fragment_blocks_done"] = n_markers(seg_done, "fragments")
        report["steps"]["segment (killed)"] = step
    report["steps"]["segment (resumed)"] = run(segment, log)
    segment_ref = segment[:2] + [str(work / "seg_ref.zarr")] + segment[3:]
    report["steps"]["segment (uninterrupted reference)"] = run(segment_ref, log)
    names = ["fragments"] + [f"seg_{t:g}" for t in thresholds]
    slabs = [(z, min(z + 16, shape[0])) for z in range(0, shape[0], 16)]
    report["segment_identity"] = {
        n: identical(f"{work}/seg.zarr/{n}", f"{work}/seg_ref.zarr/{n}", slabs) for n in names
    }

    # 5. evaluate
    metrics, evaluated = work / "metrics.json", names[1 + len(thresholds) // 2]
    report["steps"]["evaluate"] = run(
        ["evaluate", f"{work}/seg.zarr/{evaluated}", f"{sim}/labels", "--json", str(metrics), "--quiet"], log
    )
    report["metrics"] = json.loads(metrics.read_text())

    # data sizes and ratios
    sizes = {"raw": nbytes(f"{sim}/raw"), "labels": nbytes(f"{sim}/labels"), "affinities": nbytes(pred)}
    sizes.update({n: nbytes(f"{work}/seg.zarr/{n}") for n in names})
    step_data = {
        "predict": sizes["raw"] + sizes["affinities"],
        "segment": sizes["affinities"] + sum(sizes[n] for n in names),
        "evaluate": sizes[evaluated] + sizes["labels"],
    }
    total = sum(sizes.values())
    report["data_gib"] = {k: round(v / 2**30, 3) for k, v in sizes.items()} | {"total": round(total / 2**30, 2)}
    ratios = {}
    for name, step in report["steps"].items():
        kind = name.split()[0]  # the --roi reference predicts one slab only: not a whole-volume step
        if step["peak_rss_mib"] and kind in step_data and "--roi" not in name:
            peak = step["peak_rss_mib"] * 2**20
            ratios[name] = {
                "peak_rss_mib": step["peak_rss_mib"],
                "all_data_over_peak": round(total / peak, 1),
                "step_data_over_peak": round(step_data[kind] / peak, 1),
            }
    report["ratios"] = ratios
    report["min_all_data_over_peak"] = min(r["all_data_over_peak"] for r in ratios.values())
    report["min_step_data_over_peak"] = min(r["step_data_over_peak"] for r in ratios.values())
    text = json.dumps(report, indent=2)
    print(text)
    (work / "large_run_report.json").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
