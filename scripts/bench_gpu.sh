#!/usr/bin/env bash
# Train-step throughput of the Atari model at size200m, size50m and size12m on one GPU.
# Prints a table (compile s, s/update, XLA FLOPs/update, FLOP/s, % of peak, peak memory, XLA
# flags); with $OUT set it also writes bench_gpu.json and bench_gpu.md there. Flags pass through:
#   scripts/bench_gpu.sh --peak-tflops 989
#   scripts/bench_gpu.sh --configs debug --jax.platform cpu --updates 2   # tiny CPU check
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${BENCH_GPU_TIMEOUT:-900}" python "$here/bench_gpu.py" "$@"
