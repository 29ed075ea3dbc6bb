#!/usr/bin/env bash
# The prepared GPU check (issue 20): PPO and DQN on a synthetic market, first on the CPU, then with
# num_gpus_per_learner=1; both sets of figures are merged into bench/results.json.
# Needs a CUDA build of torch:  make install TORCH_INDEX=https://download.pytorch.org/whl/cu128
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() else 3)' \
  || { echo "bench/gpu.sh: no CUDA device visible to torch; nothing measured" >&2; exit 3; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" -m bench.gpu --gpus 0
"$PY" -m bench.gpu --gpus 1
"$PY" - <<'PY'
import json
r = json.load(open("bench/results.json"))
for algo in ("ppo", "dqn"):
    cpu, gpu = r.get(f"rllib_{algo}_cpu_trained_per_s"), r.get(f"rllib_{algo}_gpu_trained_per_s")
    print(algo, "cpu", cpu, "gpu", gpu, "device", r.get(f"rllib_{algo}_gpu_device"))
PY
