#!/usr/bin/env bash
# Runs one command alternately in an older checkout and in this tree, N times each, and prints
# the last line of every run's output: the way the speed comparisons in docs/benchmarks.md are
# taken (same machine, same sitting, alternating runs).
#
#   git worktree add /tmp/base <commit>
#   scripts/side_by_side.sh /tmp/base 3 python scripts/bench_train.py --configs size1m \
#     --task dummy_disc --jax.platform cpu --jax.compute_dtype float32 --jax.precompile False
#
# Each run starts in the checkout's root with PYTHONPATH set to it, so its own packages load.
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 BASE_CHECKOUT RUNS COMMAND [ARGS...]" >&2
  exit 2
fi
base=$(cd "$1" && pwd)
runs=$2
shift 2
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "RUNS must be a positive number of runs per checkout, got '$runs'." >&2
  exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
for i in $(seq 1 "$runs"); do
  for tree in "$base" "$here"; do
    name=$([ "$tree" = "$base" ] && echo base || echo this)
    load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')
    echo "[$i/$runs] $name ($tree) at $(date +%T), load $load:"
    (cd "$tree" && PYTHONPATH="$tree" "$@" 2>&1 | tail -n 1)
  done
done
echo "Done: $runs runs in each of $base and $here."
