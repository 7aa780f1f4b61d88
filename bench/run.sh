#!/usr/bin/env bash
# The figures in bench/README.md: each row one `graphnet bench --compare torch` (graphnet and
# PyTorch timed in alternating bursts in one process, same thread count), then the table with
# the issue's must-reach bound beside each ratio and the load average each row started under.
# Usage: bash bench/run.sh [THREADS] [STEPS]   (defaults: 2 threads, 20 steps)
# A row that starts while something else keeps the machine busy (load average above the
# threads this run uses plus one), or during whose timed steps other processes kept more than
# half a core busy, is taken again, up to twice, after a pause.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
steps="${2:-20}"
out="bench/results"
mkdir -p "$out"
rows=("lenet5 64" "lenet5 256" "bench_classic 64" "bench_classic 256" "bench_classic 1"
      "cifar_resnet 64" "cifar_resnet 256")
reports=()
for row in "${rows[@]}"; do
    set -- $row
    report="$out/$1_$2.json"
    for attempt in 1 2 3; do
        graphnet bench "specs/$1.toml" --batch-size "$2" --threads "$threads" --steps "$steps" \
            --compare torch --format json > "$report"
        busy=$(python -c "import json,sys; r=json.load(open(sys.argv[1])); \
print(int((r.get('load_average') or 0) > int(sys.argv[2]) + 1 \
          or (r.get('other_cores') or 0) > 0.5))" "$report" "$threads")
        [ "$busy" = 0 ] && break
        echo "$1 at batch $2 ran while the machine was busy (attempt $attempt); retaking" >&2
        sleep 60
    done
    reports+=("$report")
done
python bench/table.py "${reports[@]}"
