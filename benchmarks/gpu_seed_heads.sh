#!/usr/bin/env bash
# The report's transformer at full size on one GPU: seed-transformer-h1/h2/h4 on the report
# protocol (per head count four fold models: train on three of folds 1-4, validate on the
# fourth, test on fold 5; 100 epochs, Adam 1e-3, best epoch chosen on the validation fold), all
# twelve fold models side by side on the one GPU (one step of this model keeps a GPU about a
# third busy, so several processes fill it).
#
#   bash benchmarks/gpu_seed_heads.sh DATA OUT [MAX_MINUTES]
#
# MAX_MINUTES (default 6.5) becomes train.max_minutes: a fold model that reaches it before its
# 100 epochs stops there and is selected and tested like any other; its summary.json says how
# many epochs it ran (epochs_run), so a shortened run is never mistaken for a full one.
# last.pt (weights + Adam state, 0.6 GB at this size) is written every 25 epochs only.
# Read the results with: python benchmarks/results_table.py OUT/seed_h1 OUT/seed_h2 OUT/seed_h4
# Set SMOKE=1 to check the script itself on a CPU (1 epoch, one block; minutes on tiny data).
set -u
DATA=$1
OUT=$2
MAX_MINUTES=${3:-6.5}
T0=$(date +%s)
L=$OUT/logs
mkdir -p "$L"
source "$(dirname "$0")/gpu_lib.sh"  # PY, DEV, EXTRA, cache; gpu_env_and_cache, kill_tree

gpu_env_and_cache "$DATA" "$L"

for h in 1 2 4; do
  ( s=$(date +%s)
    "$PY" -m soundformer cv --preset "seed-transformer-h$h" --data "$DATA" --protocol report --device "$DEV" \
      --quiet --jobs 4 --set train.threads=1 --set train.checkpoint_every=25 \
      --set "train.max_minutes=$MAX_MINUTES" "${EXTRA[@]}" --out "$OUT/seed_h$h" >"$L/seed_h$h.log" 2>&1
    echo "seed_h$h rc=$? wall=$(( $(date +%s) - s )) s" | tee -a "$L/walltimes.txt" ) &
done

# GPU load every 20 s while they run
( while sleep 20; do
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
  done >"$L/gpu_load.txt" ) &
monitor=$!
while [ "$(jobs -rp | wc -l)" -gt 1 ]; do sleep 3; done
kill_tree "$monitor"
echo "total $(( $(date +%s) - T0 )) s"
