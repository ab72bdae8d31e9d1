#!/usr/bin/env bash
# Multi-seed recipe sweep on one GPU: many 5-fold runs of logmel-transformer, several at once.
#
#   bash benchmarks/gpu_sweep.sh DATA OUT VARIANTS [BUDGET_S] [PARALLEL]
#
# VARIANTS is a text file, one variant per line: a name, then the --set overrides that make it
# (blank lines and lines starting with # are skipped), e.g.
#     base
#     ls01  --set train.label_smoothing=0.1
# Each variant runs `soundformer cv --protocol standard` once per seed in $SEEDS (default
# "0 1 2"), PARALLEL (default 3) runs at a time, each with its five fold models as five processes
# (--jobs 5). Order: variant by variant in file order (ORDER=variant, the default), or seed by
# seed with the variants in turn (ORDER=seed: base_s0, other_s0, base_s1, ...), so that a budget
# that cuts the sweep short still leaves paired runs. On one GPU the recipe's small steps are
# bound by kernel launches, so fifteen processes share it well. No run starts after BUDGET_S
# (default 480); runs still going at KILL_AT seconds (default BUDGET_S + 60) are stopped.
# Results: OUT/NAME_sSEED/ (run folders, read them with benchmarks/results_table.py --ablation),
# logs in OUT/logs/. With TTA_CROPS=N each finished run is also scored with N evaluation crops
# beside each whole window (benchmarks/tta.py --crops N, the same fold models both ways, table in
# OUT/logs/tta_NAME_sSEED.txt), while its checkpoints are still on the machine.
# Set SMOKE=1 to check the script itself on a CPU (1 epoch, one block; minutes on tiny data).
set -u
[ $# -ge 3 ] || { echo "usage: bash benchmarks/gpu_sweep.sh DATA OUT VARIANTS [BUDGET_S] [PARALLEL]" >&2; exit 2; }
DATA=$1
OUT=$2
VARIANTS=$3
BUDGET=${4:-480}
PARALLEL=${5:-3}
SEEDS=${SEEDS:-0 1 2}
ORDER=${ORDER:-variant}
KILL_AT=${KILL_AT:-$(( BUDGET + 60 ))}
TTA_CROPS=${TTA_CROPS:-0}
case "$TTA_CROPS" in ''|*[!0-9]*) echo "TTA_CROPS must be a whole number of crops (0 = off), not '$TTA_CROPS'" >&2; exit 2 ;; esac
# the queue, one "NAME SEED OVERRIDES..." line per run, in the order asked for; checked before
# anything else runs
[ -r "$VARIANTS" ] || { echo "cannot read the variants file '$VARIANTS'" >&2; exit 2; }
variants=$(grep -v -e '^[[:space:]]*$' -e '^[[:space:]]*#' "$VARIANTS")
[ -n "$variants" ] || { echo "the variants file '$VARIANTS' names no variant (one per line: NAME [--set ...])" >&2; exit 2; }
queue=()
case "$ORDER" in
  variant) while read -r name rest; do for seed in $SEEDS; do queue+=("$name $seed $rest"); done; done <<<"$variants" ;;
  seed) for seed in $SEEDS; do while read -r name rest; do queue+=("$name $seed $rest"); done <<<"$variants"; done ;;
  *) echo "ORDER must be 'variant' or 'seed', not '$ORDER'" >&2; exit 2 ;;
esac

T0=$(date +%s)
L=$OUT/logs
mkdir -p "$L"
source "$(dirname "$0")/gpu_lib.sh"  # PY, DEV, EXTRA, cache; gpu_env_and_cache, kill_tree
elapsed() { echo $(( $(date +%s) - T0 )); }

# log the machine; decode every clip once, so the parallel runs read the cache
gpu_env_and_cache "$DATA" "$L"

for entry in "${queue[@]}"; do
  read -r name seed rest <<<"$entry"
  read -r -a overrides <<<"$rest"
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do sleep 2; done
  if [ "$(elapsed)" -ge "$BUDGET" ]; then echo "budget reached at $(elapsed) s: not starting ${name}_s$seed"; continue; fi
  run=${name}_s$seed
  echo "start $run at $(elapsed) s: ${overrides[*]}"
  ( s=$(date +%s)
    "$PY" -m soundformer cv --preset logmel-transformer --data "$DATA" --protocol standard --device "$DEV" \
      --quiet --seed "$seed" --jobs 5 --set train.threads=1 "${overrides[@]}" "${EXTRA[@]}" \
      --out "$OUT/$run" >"$L/$run.log" 2>&1
    rc=$?
    echo "$run rc=$rc wall=$(( $(date +%s) - s )) s" | tee -a "$L/walltimes.txt"
    if [ "$rc" = 0 ] && [ "$TTA_CROPS" -gt 0 ]; then
      "$PY" "$(dirname "$0")/tta.py" "$OUT/$run" --hops 1.0 --rolls "" --crops "$TTA_CROPS" --threads 2 \
        >"$L/tta_$run.txt" 2>&1
    fi ) &
done

while [ -n "$(jobs -rp)" ] && [ "$(elapsed)" -lt "$KILL_AT" ]; do sleep 3; done
if [ -n "$(jobs -rp)" ]; then
  echo "stopping $(jobs -rp | wc -l) runs at $(elapsed) s"
  for pid in $(jobs -rp); do kill_tree "$pid"; done; sleep 3
fi
echo "total $(elapsed) s"
