"""hGRU vs a feedforward baseline with at least as many parameters on small Pathfinder-14 (CPU-sized).

    python scripts/pathfinder_experiment.py --out runs/pathfinder_experiment [--seconds-per-model 150]

Writes results.csv, results.json and accuracy_vs_parameters.png; see shared/pathfinder/experiment.py.
"""

import sys

from shared.pathfinder.experiment import main

if __name__ == "__main__":
    sys.exit(main())
