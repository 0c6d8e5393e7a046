#!/usr/bin/env bash
# GPU science in one command (see scripts/gpu_science.py for what it runs and its options):
#   scripts/gpu_science.sh                       # one H100/H200, about 9 minutes, prints one table
#   scripts/gpu_science.sh --toy --out /tmp/gs   # CPU smoke run at toy size
# Python: $PYTHON if set, else the repository's .venv, else python3 on the PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$root/scripts/gpu_science.py" "$@"
