#!/usr/bin/env bash
# The figures in bench/README.md: each row one `graphnet bench --compare torch` (graphnet and
# PyTorch timed in alternating bursts in one process, same thread count), then the table with
# the issue's must-reach bound beside each ratio and the load average each row started under.
# Usage: bash bench/run.sh [THREADS] [STEPS] [ROWS]   (defaults: 2 threads, 20 steps, "issue")
# ROWS "issue" runs the nets and batches issue #14 bounds; "real" runs the real architectures
# in specs/ that no tuning looked at (ResNet-18 at 224×224, VGG-11, MobileNetV2, Inception).
# A row that starts while something else keeps the machine busy (load average above the
# threads this run uses plus one), or during whose timed steps other processes kept more than
# half a core busy, is taken again, up to twice, after a pause.
#
# Some machines set OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) for old OpenBLAS builds. That pins
# numpy's products to the named, often older, kernels, while PyTorch's oneDNN and MKL ignore it
# and use the whole CPU: on an AVX-512 CPU pinned to Haswell numpy multiplies at half its rate.
# For a like-for-like run, unset both in this command alone (the table's footer names the
# kernels numpy ran, and each row first checks that both frameworks agree):
#   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE bash bench/run.sh 2 20
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
steps="${2:-20}"
case "${3:-issue}" in
    issue) rows=("lenet5 64" "lenet5 256" "bench_classic 64" "bench_classic 256" "bench_classic 1"
                 "cifar_resnet 64" "cifar_resnet 256") ;;
    real) rows=("resnet18 8" "vgg11 64" "mobilenet_v2 64" "inception 64") ;;
    *) echo "bench/run.sh: ROWS must be issue or real, not '$3'" >&2; exit 2 ;;
esac
out="bench/results"
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    echo "note: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE pins numpy's BLAS kernels, PyTorch's not;" \
         "see the top of bench/run.sh for a like-for-like run" >&2
fi
mkdir -p "$out"
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
