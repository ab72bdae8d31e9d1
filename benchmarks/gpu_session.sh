#!/usr/bin/env bash
# One prepared GPU session (about 9 minutes on one H100/H200): everything that the CPU machine
# cannot afford, run side by side on one GPU, results packed into one archive.
#
#   bash benchmarks/gpu_session.sh DATA OUT [BUDGET_S]
#
#   1. benchmarks/speed.py --device cuda (training throughput per preset, clean GPU)
#   2. in parallel, sharing the GPU:
#      - seed-cnn and seed-transformer-h1/h2/h4, report protocol, full size, 100 epochs
#      - benchmarks/collapse.py --full: the seed transformer with time tokens (the fix), 100 epochs
#      - logmel-transformer (recommended recipe), standard 5-fold, seed 0: GPU wall time
#      - logmel-transformer with a wider, deeper encoder and 200 epochs (accuracy probe)
#   Jobs still running at BUDGET_S (default 540) are stopped; what they wrote is kept.
# Set SMOKE=1 to check the script itself on a CPU (1 epoch, one block; minutes on tiny data).
set -u
DATA=$1
OUT=$2
BUDGET=${3:-540}
T0=$(date +%s)
R=$OUT/gpu_runs
L=$R/logs
mkdir -p "$L"
source "$(dirname "$0")/gpu_lib.sh"  # PY, DEV, EXTRA, cache; gpu_env_and_cache, kill_tree
SF=("$PY" -m soundformer)

# log the machine; decode every clip once, so the parallel runs read the cache
gpu_env_and_cache "$DATA" "$L"

if [ "${SMOKE:-0}" != 1 ]; then
  timeout 90 "$PY" benchmarks/speed.py --device "$DEV" --data "$DATA" --steps 10 \
    --presets seed-cnn,logmel-cnn,logmel-transformer,seed-transformer-h1,seed-transformer-h4 >"$L/speed.txt" 2>&1
  echo "speed.py rc=$? after $(( $(date +%s) - T0 )) s"
fi

launch() {  # NAME CMD...: run in the background, log to $L/NAME.log, time it
  local name=$1; shift
  ( s=$(date +%s); "$@" >"$L/$name.log" 2>&1; rc=$?
    echo "$name rc=$rc wall=$(( $(date +%s) - s )) s" | tee -a "$L/walltimes.txt" ) &
}
cv() { "${SF[@]}" cv --data "$DATA" --device "$DEV" --quiet "$@" "${EXTRA[@]}"; }

for h in 1 2 4; do
  launch seed_h$h cv --preset seed-transformer-h$h --protocol report --jobs 2 --set train.threads=1 --out "$R/seed_h$h"
done
launch seed_cnn cv --preset seed-cnn --protocol report --jobs 4 --set train.threads=1 --out "$R/seed_cnn"
if [ "${SMOKE:-0}" = 1 ]; then COLL=(--epochs 1); else COLL=(--epochs 100 --full); fi
launch collapse_time "$PY" benchmarks/collapse.py --data "$DATA" "${COLL[@]}" --only "time tokens" --device "$DEV" \
  --threads 1 --out "$R/collapse_full"
launch lt_gpu_s0 cv --preset logmel-transformer --protocol standard --seed 0 --jobs 5 --set train.threads=1 \
  --out "$R/lt_gpu_s0"
launch lt_wide_s0 cv --preset logmel-transformer --protocol standard --seed 0 --jobs 5 --set train.threads=1 \
  --set model.dim=256 --set model.heads=8 --set model.mlp_dim=512 --set model.depth=6 --set train.epochs=200 \
  --out "$R/lt_wide_s0"

# wait for the jobs, but not past the budget
while [ -n "$(jobs -rp)" ] && [ $(( $(date +%s) - T0 )) -lt "$BUDGET" ]; do sleep 5; done
if [ -n "$(jobs -rp)" ]; then
  echo "budget of $BUDGET s reached; stopping: $(jobs -rp | wc -l) jobs"
  for pid in $(jobs -rp); do kill_tree "$pid"; done; sleep 3
fi
nvidia-smi --query-gpu=memory.used --format=csv 2>/dev/null
echo "total $(( $(date +%s) - T0 )) s"
cat "$L/walltimes.txt" 2>/dev/null
