"""Training-step throughput of DreamerV3 model sizes on one accelerator, as a table.

For each preset list (default: the Atari model at size200m, size50m and size12m, bfloat16,
batch 16 x 64) a fresh process builds the agent as `python -m dreamerv3.main` does, compiles the
train step ahead of time and times `--updates` updates on a fixed random batch. Each row holds
the compile seconds, seconds per update, the XLA-counted FLOPs per update, the achieved FLOP/s
and its fraction of the device's peak (`--peak-tflops`, default 989 for the dense bfloat16 peak
of an H200), the peak device memory and the XLA flags in effect. The table is printed; with
`--out DIR` (or the OUT environment variable) it is also written as bench_gpu.json and
bench_gpu.md there.

    scripts/bench_gpu.sh
    scripts/bench_gpu.sh --configs debug --jax.platform cpu --updates 2   # tiny, CPU only
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

DEFAULT_SETS = ('atari', 'atari size50m', 'atari size12m')


def measure(flags, updates, warmup):
    """Build, compile and time one configuration in this process; returns a result dict."""
    import jax
    import numpy as np

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from bench_train import random_batch, time_updates

    from dreamerv3 import config as configlib
    from dreamerv3 import main as mainlib

    # Only the train step is measured; without reports the report step compiles to nothing.
    fixed = ['--logdir', '/tmp/bench_gpu', '--jax.precompile', 'True', '--agent.report', 'False']
    config, _ = configlib.parse([*fixed, *flags])
    start = time.time()
    agent = mainlib.make_agent(config)
    build = time.time() - start
    compiled = agent._train
    cost = compiled.cost_analysis() if hasattr(compiled, 'cost_analysis') else None
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost['flops']) if cost and 'flops' in cost else None
    rng = np.random.default_rng(0)
    batch = next(iter(agent.stream(iter([random_batch(agent.spaces, config, rng)]))))
    carry = agent.init_train(config.batch_size)
    for _ in range(warmup):
        carry, _, _ = agent.train(carry, batch)
    jax.block_until_ready(carry)
    carry, durations = time_updates(agent, carry, [batch], updates)
    seconds = float(np.median(durations))
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get('peak_bytes_in_use')
    return dict(
        device=str(jax.devices()[0].device_kind),
        platform=jax.devices()[0].platform,
        batch=[config.batch_size, config.batch_length],
        compute_dtype=config.jax.compute_dtype,
        build_incl_compile_s=round(build, 1),
        sec_per_update=seconds,
        flops_per_update=flops,
        flops_per_s=flops / seconds if flops else None,
        peak_memory_gib=peak / 2**30 if peak else None,
        xla_flags=os.environ.get('XLA_FLAGS', ''),
    )


def row(result, peak_tflops):
    """One markdown table row of a result."""
    fmt = lambda x, f: '-' if x is None else format(x, f)
    frac = result['flops_per_s'] / (peak_tflops * 1e12) if result['flops_per_s'] else None
    return (
        f'| {result["configs"]} | {result["device"]} | {result["compute_dtype"]} | '
        f'{result["batch"][0]} x {result["batch"][1]} | {result["build_incl_compile_s"]:.1f} | '
        f'{result["sec_per_update"]:.4f} | {fmt(result["flops_per_update"], ".3e")} | '
        f'{fmt(result["flops_per_s"] and result["flops_per_s"] / 1e12, ".2f")} | '
        f'{fmt(frac and 100 * frac, ".1f")} | {fmt(result["peak_memory_gib"], ".2f")} |'
    )


def table(results, peak_tflops):
    """Markdown table of all results, followed by the XLA flags of the first one."""
    head = (
        '| configs | device | dtype | batch | build incl. compile (s) | s / update | '
        f'FLOPs / update | TFLOP/s | % of {peak_tflops:g} TFLOP/s | peak memory (GiB) |\n'
        '|---|---|---|---|---:|---:|---:|---:|---:|---:|'
    )
    lines = [head, *(row(r, peak_tflops) for r in results)]
    flags = results[0]['xla_flags'] if results else ''
    lines.append(f'\nXLA flags in effect: `{flags or "(none)"}`')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--updates', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--peak-tflops', type=float, default=989.0)
    parser.add_argument('--out', type=pathlib.Path, default=os.environ.get('OUT') or None)
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)
    args, flags = parser.parse_known_args()
    if args.one:
        print('RESULT ' + json.dumps(measure(flags, args.updates, args.warmup)), flush=True)
        return
    if '--configs' in flags:
        # One explicit configuration: the flags as given.
        runs = [flags]
    else:
        platform = [] if '--jax.platform' in flags else ['--jax.platform', 'cuda']
        runs = [['--configs', *s.split(), *platform, *flags] for s in DEFAULT_SETS]
    results = []
    for i, run in enumerate(runs):
        start = run.index('--configs') + 1
        label = ' '.join(run[start : start + _count(run)])
        print(f'[{i + 1}/{len(runs)}] {" ".join(run)}', flush=True)
        cmd = [sys.executable, __file__, '--one', '--updates', str(args.updates)]
        cmd += ['--warmup', str(args.warmup), *run]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
        if proc.returncode or not lines:
            sys.stderr.write(proc.stderr[-4000:])
            print(f'error: configuration {label!r} failed (exit {proc.returncode}).')
            sys.exit(1)
        result = json.loads(lines[-1][len('RESULT ') :])
        results.append({'configs': label, 'flags': run, **result})
    text = table(results, args.peak_tflops)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = dict(peak_tflops=args.peak_tflops, results=results)
        (args.out / 'bench_gpu.json').write_text(json.dumps(payload, indent=1) + '\n')
        (args.out / 'bench_gpu.md').write_text(text + '\n')
    print(f'benchmarked {len(results)} configurations')


def _count(run):
    """Number of preset names after --configs."""
    start = run.index('--configs') + 1
    end = next((i for i in range(start, len(run)) if run[i].startswith('--')), len(run))
    return end - start


if __name__ == '__main__':
    main()
