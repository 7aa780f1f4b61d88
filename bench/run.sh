#!/usr/bin/env bash
# The figures in bench/README.md: each row one `graphnet bench --compare torch` (graphnet and
# PyTorch timed in alternating bursts in one process, same thread count), then the table.
# Usage: bash bench/run.sh [THREADS] [STEPS]   (defaults: 2 threads, 20 steps)
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
steps="${2:-20}"
out="bench/results"
mkdir -p "$out"
for row in "lenet5 64" "lenet5 256" "bench_classic 64" "bench_classic 256"; do
    set -- $row
    graphnet bench "specs/$1.toml" --batch-size "$2" --threads "$threads" --steps "$steps" \
        --compare torch --format json > "$out/$1_$2.json"
done
python bench/table.py "$out"/lenet5_64.json "$out"/lenet5_256.json \
    "$out"/bench_classic_64.json "$out"/bench_classic_256.json
