# Shared by gpu_session.sh and gpu_sweep.sh: source it. Sets PY (python, $PYTHON to override),
# DEV (cuda; cpu with SMOKE=1) and EXTRA (SMOKE=1: 1 epoch, one block, to check a script on a CPU).
PY=${PYTHON:-python3}
DEV=cuda
EXTRA=()
if [ "${SMOKE:-0}" = 1 ]; then
  DEV=cpu
  EXTRA=(--epochs 1 --set model.depth=1)
fi
export PYTHONUNBUFFERED=1 SOUNDFORMER_CACHE=${SOUNDFORMER_CACHE:-/tmp/sf_cache}

gpu_env_and_cache() {  # DATA LOGDIR: log the machine, then decode + resample every clip once into the cache
  {
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', 'cpus', os.cpu_count())"
  } 2>&1 | tee "$2/env.txt"
  "$PY" - "$1" <<'EOF' 2>&1 | tee "$2/cache.txt"
import os, sys, time
from soundformer.data.audio import load_many
from soundformer.data.sources import load_manifest
t0 = time.perf_counter()
items = load_manifest(sys.argv[1]).items
load_many([it.path for it in items], 16000, progress=False, threads=os.cpu_count() or 1)
print(f"decoded {len(items)} clips in {time.perf_counter() - t0:.1f} s")
EOF
}

kill_tree() {  # PID: stop a process and everything it started
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null
}
