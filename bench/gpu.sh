#!/usr/bin/env bash
# Runs the benchmarks on the lent CUDA machine (see README "Benchmarks"). Expects MLX staged
# by ../shared/tools/mlx-gpu-stage.sh (PYTHONPATH=/tmp/site) and the extra wheels in
# /tmp/whl. Usage: bash bench/gpu.sh main|peer ; logs and JSON go to $OUT.
set -uo pipefail
export PYTHONPATH=/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ ! -f /tmp/site/.rfai-wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/whl/*.whl && touch /tmp/site/.rfai-wheels
fi
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
W=/tmp/rfai-bench; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv | tee "$OUT/gpu.txt"
case "${1:-main}" in
  main)
    timeout 280 python3 bench/rollout.py --workdir $W --batch-size 32 --group-size 8 --max-new-tokens 512 --repeats 3 2>&1 | tee "$OUT/rollout.log"
    timeout 290 python3 bench/step.py --workdir $W --batch-size 32 --group-size 8 --max-new-tokens 512 --micro-batch-size 4 --steps 2 --json-out "$OUT/step.json" 2>"$OUT/step.err" | tee "$OUT/step.log"
    ;;
  memory)
    timeout 120 python3 bench/rollout.py --workdir $W --batch-size 32 --group-size 8 --max-new-tokens 512 --repeats 2 2>&1 | tee "$OUT/rollout_lora.log"
    timeout 200 python3 bench/step.py --workdir $W --batch-size 32 --group-size 8 --max-new-tokens 512 --micro-batch-size 4 --steps 2 --json-out "$OUT/step_mb4.json" 2>"$OUT/step_mb4.err" | tee "$OUT/step_mb4.log"
    timeout 200 python3 bench/step.py --workdir $W --batch-size 32 --group-size 8 --max-new-tokens 512 --micro-batch-size 8 --steps 2 --no-compile --json-out "$OUT/step_nocompile.json" 2>"$OUT/step_nocompile.err" | tee "$OUT/step_nocompile.log"
    ;;
  peer)
    timeout 560 python3 bench/step.py --workdir $W --batch-size 8 --group-size 8 --max-new-tokens 256 --micro-batch-size 8 --steps 1 --peer --json-out "$OUT/peer.json" 2>"$OUT/peer.err" | tee "$OUT/peer.log"
    ;;
  *) echo "usage: bench/gpu.sh main|memory|peer"; exit 2 ;;
esac
