"""End to end: the debug agent trains on real suites from the command line (Atari, Crafter)."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'run'))
import runhelpers  # noqa: E402

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
    result = runhelpers.main(
        logdir,
        '--jax.precompile',
        'False',
        '--task',
        task,
        '--run.envs',
        '1',
        '--run.steps',
        '160',
        *flags,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = runhelpers.metrics(logdir)
    keys = set().union(*rows)
    assert 'train/loss/image' in keys and 'train/loss/policy' in keys, sorted(keys)
    assert max(row['step'] for row in rows) >= 160
    assert list((logdir / 'replay').glob('*.npz'))
