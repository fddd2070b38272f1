"""End to end: the debug agent trains on real suites from the command line (Atari, Crafter)."""

import json
import subprocess
import sys

import pytest

# Each test trains the debug agent from the command line for a few hundred steps.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    'task, flags',
    [
        ('atari_pong', ['--env.atari.size', '64', '64']),
        ('crafter_reward', ['--env.crafter.logs', 'True']),
    ],
)
def test_debug_run_on_suite(tmp_path, task, flags):
    logdir = tmp_path / task
    cmd = [
        sys.executable,
        '-m',
        'dreamerv3.main',
        '--configs',
        'debug',
        '--jax.platform',
        'cpu',
        '--jax.precompile',
        'False',
        '--task',
        task,
        '--logdir',
        str(logdir),
        '--run.envs',
        '1',
        '--run.steps',
        '160',
        *flags,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in (logdir / 'metrics.jsonl').read_text().splitlines()]
    keys = set().union(*rows)
    assert 'train/loss/image' in keys and 'train/loss/policy' in keys, sorted(keys)
    assert max(row['step'] for row in rows) >= 160
    assert list((logdir / 'replay').glob('*.npz'))
