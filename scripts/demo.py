"""The end-to-end demo behind `make demo`: every subsystem on built-in data, one HTML report.

    python scripts/demo.py --out demo_out [--only pathfinder,connectomics]

Each subsystem's demo module exposes ``run_demo(out_dir: Path, report: Report) -> None``; it works in
``out_dir/<name>/`` and adds its section (tables, PNG figures) to the report. A failing part is reported
on the page and makes the command exit non-zero, after the other parts have run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from shared.report import Report

PARTS = {
    "pathfinder": ("Pathfinder: hGRU on contour integration", "shared.pathfinder.demo"),
    "alignment": ("Vision alignment: saliency vs human maps", "shared.alignment.demo"),
    "connectomics": ("Connectomics: STAR neuron segmentation", "connectomics.demo"),
    "phenotypic": ("Phenotypic: Pheno-CA and scaling laws", "phenotypic.demo"),
    "rldiag": ("RL diagnostics: perceptual vs RL challenge", "rldiag.demo"),
    "tracking": ("Tracking: InT on PathTracker", "shared.tracking.demo"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="report folder")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    report = Report("recurrent-vision demo")
    failed = []
    for name in chosen:
        title, module = PARTS[name]
        print(f"== {title}", flush=True)
        start = time.perf_counter()
        try:
            importlib.import_module(module).run_demo(args.out / name, report)
        except Exception:
            failed.append(name)
            report.section(f"{title} (FAILED)", traceback.format_exc())
            traceback.print_exc()
        elapsed = time.perf_counter() - start
        if report.sections:
            report.sections[-1].seconds = elapsed
        print(f"   {name} took {elapsed:.0f} s", flush=True)
        report.write(args.out)  # rewrite after each part so a long run shows progress
    path = report.write(args.out)
    print(f"report: {path}")
    if failed:
        print(f"failed parts: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
