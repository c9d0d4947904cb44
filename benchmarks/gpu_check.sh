#!/usr/bin/env bash
# The GPU check: bash benchmarks/gpu_check.sh [--device cpu] [--keep DIR] [--no-bench]
# Tiny real runs through every path (one PASS/FAIL line each), then on a GPU the step-time and
# epoch-time benchmarks, whose rows it appends to benchmarks/RESULTS.md. No network, no ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 benchmarks/gpu_check.py "$@"
