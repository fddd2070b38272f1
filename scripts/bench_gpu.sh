#!/usr/bin/env bash
# On one GPU: train-step throughput of the Atari model at size200m, size50m and size12m, then
# train_device on Craftax-Classic from pixels at size12m and size50m with 1 and 8 seeds.
# The first prints a table (compile s, s/update, XLA FLOPs/update, FLOP/s, % of peak, peak
# memory, XLA flags); the second one JSON line per setting (env steps/s and updates/s per seed,
# peak memory, hours to 1M steps per seed). With $OUT set both are also written there.
# Flags pass through to the first:
#   scripts/bench_gpu.sh --peak-tflops 989
#   scripts/bench_gpu.sh --configs debug --jax.platform cpu --updates 2   # tiny CPU check
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
timeout "${BENCH_GPU_TIMEOUT:-900}" python "$here/bench_gpu.py" "$@"
device_flags="${BENCH_DEVICE_FLAGS:---jax.platform cuda}"
# BENCH_DEVICE_CONFIGS= (empty) leaves this part out.
for size in ${BENCH_DEVICE_CONFIGS-size12m size50m}; do
  # shellcheck disable=SC2086
  timeout "${BENCH_DEVICE_TIMEOUT:-600}" python "$here/bench_device.py" --train \
    --task craftax_Craftax-Classic-Pixels-v1 --configs craftax "$size" --envs 16 \
    --seeds 1 8 --seconds "${BENCH_DEVICE_SECONDS:-60}" -- $device_flags \
    | tee -a "${OUT:-/tmp}/bench_device.jsonl"
done
