"""Learning check on a laptop: DreamerV3 on CartPole-v1 must reach a mean score >= 100.

Runs the real command line, then reads scores.jsonl and prints the score curve, the wall-clock
time and a pass/fail verdict (exit status 1 on fail). Random play scores about 22. The command
runs with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 unless GLIBC_TUNABLES is set (huge pages for
XLA:CPU's buffers, as the README's CPU section explains).

`--loop host` (the default) trains gymnasium's CartPole-v1 with `train`; `--loop device` trains
gymnax's CartPole-v1 with `train_device`, `--seeds` seeds at once, with the same settings, and
checks every seed (each in <logdir>/seed<i> when there are several).

    python scripts/learning_check.py --logdir ~/logdir/cartpole
    python scripts/learning_check.py --loop device --seeds 3 --logdir ~/logdir/cartpole-device
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

FLAGS = [
    '--task',
    'gym_CartPole-v1',
    '--configs',
    'size1m',
    '--run.train_ratio',
    '64',
    '--run.envs',
    '1',
    '--jax.compute_dtype',
    'float32',
    '--jax.platform',
    'cpu',
]


def read_scores(logdir):
    """(steps, scores) of every finished episode in logdir/scores.jsonl."""
    path = pathlib.Path(logdir) / 'scores.jsonl'
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if 'episode/score' in row]
    return np.array([r['step'] for r in rows]), np.array([r['episode/score'] for r in rows])


def curve(steps, scores, every):
    """Mean score per bin of `every` env steps, as (bin end, mean, episodes) rows."""
    rows = []
    for end in np.arange(every, steps.max() + every, every):
        mask = (steps > end - every) & (steps <= end)
        if mask.any():
            rows.append((int(end), float(scores[mask].mean()), int(mask.sum())))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--logdir', default=str(pathlib.Path.home() / 'logdir/cartpole'))
    parser.add_argument('--steps', type=int, default=30000)
    parser.add_argument('--threshold', type=float, default=100.0)
    parser.add_argument('--bin', type=int, default=2500)
    parser.add_argument('--no-run', action='store_true', help='only evaluate an existing logdir')
    parser.add_argument('--loop', choices=('host', 'device'), default='host')
    parser.add_argument('--seeds', type=int, default=1, help='with --loop device')
    args, extra = parser.parse_known_args()
    flags = list(FLAGS)
    if args.loop == 'device':
        flags[1] = 'gymnax_CartPole-v1'
        flags += ['--script', 'train_device', '--run.seeds', str(args.seeds)]
        # The device replay is allocated whole: room for every step of the run, which is all
        # that the host replay's larger default ever holds here.
        flags += ['--replay.size', str(args.steps)]
    logdirs = [pathlib.Path(args.logdir)]
    if args.loop == 'device' and args.seeds > 1:
        logdirs = [logdirs[0] / f'seed{i}' for i in range(args.seeds)]
    start = time.time()
    if not args.no_run:
        cmd = [
            sys.executable,
            '-m',
            'dreamerv3.main',
            *flags,
            '--logdir',
            args.logdir,
            '--run.steps',
            str(args.steps),
            *extra,
        ]
        env = {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1', **os.environ}
        print('Running:', ' '.join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env)
    duration = time.time() - start
    passed = True
    for logdir in logdirs:
        steps, scores = read_scores(logdir)
        if not len(scores):
            sys.exit(f'No finished episodes in {logdir}/scores.jsonl.')
        final = float(scores[-10:].mean())
        print(f'{logdir}:')
        for end, mean, count in curve(steps, scores, args.bin):
            print(f'steps <= {end:6d}: mean score {mean:7.1f} over {count} episodes')
        summary = dict(
            logdir=str(logdir),
            final_mean_last10=round(final, 1),
            episodes=int(len(scores)),
            last_step=int(steps[-1]),
            wall_clock_s=round(duration, 1),
            env_steps_per_s=round(int(steps[-1]) / duration, 2) if not args.no_run else None,
            threshold=args.threshold,
            passed=final >= args.threshold,
        )
        print(json.dumps(summary))
        passed = passed and summary['passed']
    sys.exit(0 if passed else 1)


if __name__ == '__main__':
    main()
