"""The "done when" run of issue 4: predict -> segment -> evaluate from the CLI on a volume much larger than
the memory of any process of the pipeline, with an interruption and a resume.

Steps (each a ``python -m connectomics.cli ...`` subprocess whose peak RSS is read with ``os.wait4``):

1. ``simulate`` the volume (skipped when it exists with the same settings; ``--resume`` finishes it);
2. write a model checkpoint (``--checkpoint`` to use a trained one; by default a small untrained U-Net, so
   the evaluation figures test the pipeline, not the model);
3. ``predict``: killed after a third of its blocks, then rerun to completion (resume); an uninterrupted
   ``predict --roi`` over a slab holding blocks of both runs must be identical to the resumed output;
4. ``segment``: killed during its fragment stage, then rerun to completion;
5. ``evaluate`` against the simulated labels (blockwise contingency table).

The size of the data (raw + labels + affinities + fragments + segmentations, uncompressed) is compared
with the largest peak RSS of any step.

    .venv/bin/python scripts/connectomics_large_run.py --work /tmp/large --shape 64,768,768
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], *, kill_when=None) -> tuple[int, float, float]:
    """Run ``python -m connectomics.cli ARGS``; return (exit code, seconds, peak RSS in MiB).

    ``kill_when`` (a callable) is polled; when it returns True the process is killed with SIGKILL.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    # /usr/bin/time (a small C program) forks the CLI: a fork straight from this Python process would
    # count this process's resident pages in the child's peak (Linux keeps the pre-exec high-water mark)
    rss_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"connectomics_rss_{os.getpid()}.txt"
    proc = subprocess.Popen(["/usr/bin/time", "-q", "-f", "%M", "-o", str(rss_file), sys.executable, "-m",
                             "connectomics.cli", *args], env=env, start_new_session=True)
    while kill_when is not None:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if kill_when():
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI under /usr/bin/time, not only time itself
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    else:
        pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = rss_file.read_text().split() if rss_file.exists() else []
    rss = int(text[-1]) / 1024 if text and text[-1].isdigit() else float("nan")  # killed: no figure
    return proc.returncode, time.perf_counter() - start, rss


def n_markers(folder: Path) -> int:
    return len(os.listdir(folder)) if folder.is_dir() else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/connectomics_large"))
    parser.add_argument("--shape", default="64,768,768")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--predict-block", default="32,128,128")
    parser.add_argument("--segment-block", default="32,128,128")
    parser.add_argument("--thresholds", default="0.5")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from connectomics.blocks import parse_coordinate
    from connectomics.io import open_volume

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    shape = parse_coordinate(args.shape, name="--shape")
    report: dict = {"shape": list(shape), "steps": {}}

    sim = work / "sim.zarr"
    sim_args = ["simulate", str(sim), "--shape", args.shape, "--chunks", "32,128,128", "--seed", "1",
                "--workers", str(args.workers), "--quiet"]
    if not (sim / "raw").exists() or not (sim / "labels").exists():
        code, secs, rss = run(sim_args + (["--resume"] if sim.exists() else []))
        report["steps"]["simulate"] = {"code": code, "seconds": round(secs, 1), "peak_rss_mib": round(rss, 1)}

    ckpt = args.checkpoint
    if ckpt is None:
        import torch

        from connectomics.train import AffinityModel

        ckpt = work / "tiny_unet.ckpt"
        if not ckpt.exists():
            torch.manual_seed(0)
            model = AffinityModel(backbone="unet3d", backbone_config={"features": [4], "kernel_size": [3, 3, 3],
                                                                      "norm": "none"})
            torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, ckpt)

    pred = work / "pred.zarr"
    predict = ["predict", str(ckpt), f"{sim}/raw", f"{pred}/affs", "--block", args.predict_block,
               "--context", "2,8,8", "--workers", str(args.workers), "--no-progress"]
    done = work / "pred.zarr.blockwise/affs/done"
    z, y, x = shape
    bz, by, bx = parse_coordinate(args.predict_block, name="--predict-block")
    n_blocks = -(-z // bz) * -(-y // by) * -(-x // bx)
    code, secs, rss = run(predict, kill_when=lambda: n_markers(done) >= n_blocks // 3)
    report["steps"]["predict (killed)"] = {"code": code, "seconds": round(secs, 1), "peak_rss_mib": round(rss, 1),
                                           "blocks_done": n_markers(done), "blocks": n_blocks}
    code, secs, rss = run(predict)
    report["steps"]["predict (resumed)"] = {"code": code, "seconds": round(secs, 1), "peak_rss_mib": round(rss, 1)}
    # an uninterrupted reference over a slab of blocks finished by both runs
    done_ids = sorted(int(i) for i in os.listdir(done))
    roi = f"0:{bz},0:{min(y, 2 * by)},0:{x}"
    ref = ["predict", str(ckpt), f"{sim}/raw", f"{work}/ref.zarr/affs", "--block", args.predict_block,
           "--context", "2,8,8", "--roi", roi, "--workers", str(args.workers), "--no-progress"]
    code, secs, rss = run(ref)
    a = np.asarray(open_volume(f"{pred}/affs").data[:, :bz, : 2 * by].compute())
    b = np.asarray(open_volume(f"{work}/ref.zarr/affs").data[:, :bz, : 2 * by].compute())
    report["predict_resume_identical_on_slab"] = bool(np.array_equal(a, b))
    report["n_done_markers"] = len(done_ids)

    seg = work / "seg.zarr"
    segment = ["segment", f"{pred}/affs", str(seg), "--thresholds", args.thresholds, "--block",
               args.segment_block, "--context", "2,16,16", "--workers", str(args.workers), "--no-progress"]
    frag_done = work / "seg.zarr.blockwise/fragments_done"
    sz, sy, sx = parse_coordinate(args.segment_block, name="--segment-block")
    n_segment_blocks = -(-z // sz) * -(-y // sy) * -(-x // sx)
    code, secs, rss = run(segment, kill_when=lambda: n_markers(frag_done) >= n_segment_blocks // 2)
    report["steps"]["segment (killed)"] = {"code": code, "seconds": round(secs, 1), "peak_rss_mib": round(rss, 1),
                                           "fragment_blocks_done": n_markers(frag_done)}
    code, secs, rss = run(segment)
    report["steps"]["segment (resumed)"] = {"code": code, "seconds": round(secs, 1), "peak_rss_mib": round(rss, 1)}

    threshold = float(args.thresholds.split(",")[0])
    evaluate = ["evaluate", f"{seg}/seg_{threshold:g}", f"{sim}/labels", "--json", str(work / "metrics.json"),
                "--quiet"]
    code, secs, rss = run(evaluate)
    report["steps"]["evaluate"] = {"code": code, "seconds": round(secs, 1), "peak_rss_mib": round(rss, 1)}
    if (work / "metrics.json").exists():
        report["metrics"] = json.loads((work / "metrics.json").read_text())

    voxels = int(np.prod(shape))
    n_channels = int(open_volume(f"{pred}/affs").data.shape[0])
    n_thresholds = len(args.thresholds.split(","))
    data_bytes = voxels * (1 + 8 + 4 * n_channels + 8 + 8 * n_thresholds)
    peaks = [step["peak_rss_mib"] for step in report["steps"].values()]
    peak = max(p for p in peaks if p == p)  # NaN (a killed step) has no figure
    report["data_gib_uncompressed"] = round(data_bytes / 2**30, 2)
    report["raw_plus_affinities_gib"] = round(voxels * (1 + 4 * n_channels) / 2**30, 2)
    report["max_peak_rss_mib"] = peak
    report["data_over_peak_rss"] = round(data_bytes / 2**20 / peak, 2)
    print(json.dumps(report, indent=2))
    (work / "large_run_report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
