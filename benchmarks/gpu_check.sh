#!/usr/bin/env bash
# The GPU check in one command (≤ 8 minutes on one GPU): bash benchmarks/gpu_check.sh [OUT.json]
# It writes one JSON of figures (benchmarks/gpu_check.py says which); without CUDA it stops with exit 2.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
exec timeout 480 "$PYTHON" benchmarks/gpu_check.py -o "${1:-gpu_check.json}"
