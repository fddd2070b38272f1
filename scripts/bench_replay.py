"""Measure replay add, sample and update throughput for each selector; prints JSON.

Usage: python scripts/bench_replay.py [--steps 10000] [--batches 100] [--selectors uniform,...]
"""

import argparse
import json
import os
import platform
import time

import numpy as np

from embodied.core import sampling
from embodied.core.replay import Replay


def make_selector(name, capacity, seed):
    """The selector a config would build under this name."""
    prio = lambda: sampling.Prioritized(
        exponent=0.8, initial='inf', zero_on_sample=True, maxfrac=0.5, seed=seed
    )
    recency = lambda: sampling.Recency(1 / np.arange(1, capacity + 1) ** 1.0, seed=seed)
    if name == 'uniform':
        return sampling.Uniform(seed)
    if name == 'prioritized':
        return prio()
    if name == 'recency':
        return recency()
    if name == 'mixture':
        return sampling.Mixture(
            {'uniform': sampling.Uniform(seed), 'priority': prio(), 'recency': recency()},
            {'uniform': 0.5, 'priority': 0.3, 'recency': 0.2},
            seed=seed,
        )
    raise ValueError(f'Unknown selector {name!r}; use uniform, prioritized, recency, mixture.')


def make_steps(count, rng):
    """Distinct steps shaped like an Atari-sized observation plus small vectors."""
    return [
        {
            'image': rng.integers(0, 255, (64, 64, 3), np.uint8),
            'vector': rng.normal(size=8).astype(np.float32),
            'action': rng.normal(size=4).astype(np.float32),
            'reward': np.float32(rng.normal()),
            'is_first': np.bool_(i % 500 == 0),
            'is_last': np.bool_(i % 500 == 499),
            'is_terminal': np.bool_(False),
        }
        for i in range(count)
    ]


def bench(name, args, steps):
    """Time add, sample and update on a fresh replay."""
    replay = Replay(
        args.length,
        args.capacity,
        chunksize=args.chunksize,
        selector=make_selector(name, args.capacity, args.seed),
        seed=args.seed,
    )
    start = time.perf_counter()
    for index in range(args.steps):
        replay.add(steps[index % len(steps)], worker=index % args.workers)
    add = args.steps / (time.perf_counter() - start)
    replay.sample(args.batch)  # warm-up
    start = time.perf_counter()
    for _ in range(args.batches):
        data = replay.sample(args.batch)
    sample = args.batches / (time.perf_counter() - start)
    stepids = data['stepid'][:, 1:]
    update = {'stepid': stepids, 'priority': np.ones(stepids.shape[:2], np.float32)}
    start = time.perf_counter()
    for _ in range(args.batches):
        replay.update(update)
    updates = args.batches / (time.perf_counter() - start)
    stats = replay.stats()
    return {
        'add_steps_per_s': round(add, 1),
        'sample_batches_per_s': round(sample, 1),
        'sample_steps_per_s': round(sample * args.batch * args.length, 1),
        'update_batches_per_s': round(updates, 1),
        'items': stats['items'],
        'ram_gb': round(stats['ram_gb'], 4),
    }


def main():
    """Parse arguments, run every selector and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=10000, help='steps added per selector')
    parser.add_argument('--capacity', type=int, default=8000, help='replay capacity in items')
    parser.add_argument('--length', type=int, default=65, help='item length L')
    parser.add_argument('--chunksize', type=int, default=1024)
    parser.add_argument('--workers', type=int, default=4, help='interleaved env streams')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--batches', type=int, default=100, help='sample and update calls')
    parser.add_argument('--selectors', default='uniform,prioritized,recency,mixture')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    steps = make_steps(min(args.steps, 1000), np.random.default_rng(args.seed))
    # Untimed pass: the first large allocations of a process are slower (fresh pages).
    warmup = argparse.Namespace(**{**vars(args), 'batches': 10})
    bench('uniform', warmup, steps)
    results = {}
    for name in args.selectors.split(','):
        results[name] = bench(name, args, steps)
    print(
        json.dumps(
            {
                'machine': {
                    'cpu': platform.processor() or platform.machine(),
                    'cores': os.cpu_count(),
                    'python': platform.python_version(),
                    'numpy': np.__version__,
                },
                'args': vars(args),
                'step_bytes': sum(np.asarray(v).nbytes for v in steps[0].values()) + 20,
                'results': results,
            },
            indent=2,
        )
    )


if __name__ == '__main__':
    main()
