"""End to end: the `train` script from the command line, resumed, and on a mismatched logdir."""

import json
import pickle
import subprocess
import sys

import pytest

# Each test trains the debug agent from the command line for a few hundred steps.
pytestmark = pytest.mark.slow

LOSSES = (
    'dyn',
    'rep',
    'rew',
    'con',
    'policy',
    'value',
    'repval',
    'image',
    'vector',
    'token',
    'count',
    'float2d',
    'int2d',
)


def main(logdir, *flags):
    cmd = [
        sys.executable,
        '-m',
        'dreamerv3.main',
        '--configs',
        'debug',
        '--jax.platform',
        'cpu',
        '--logdir',
        str(logdir),
        '--jax.precompile',
        'False',
        '--run.envs',
        '2',
        *flags,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def metrics(logdir):
    lines = (logdir / 'metrics.jsonl').read_text().splitlines()
    return [json.loads(line) for line in lines]


def checkpoint(logdir, name):
    folder = logdir / 'ckpt' / (logdir / 'ckpt' / 'latest').read_text().strip()
    assert (folder / 'done').exists()
    return pickle.loads((folder / f'{name}.pkl').read_bytes())


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp('train')
    result = main(logdir, '--run.steps', '300')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return logdir, result


def test_train_writes_what_a_user_expects(first_run):
    logdir, result = first_run
    assert (logdir / 'config.yaml').exists()
    assert (logdir / 'scores.jsonl').read_text().strip()
    keys = set().union(*metrics(logdir))
    for name in LOSSES:
        assert f'train/loss/{name}' in keys, sorted(keys)
    for name in ('episode/score', 'episode/length', 'fps/policy', 'fps/train', 'replay/items'):
        assert name in keys, name
    assert checkpoint(logdir, 'step') >= 300
    assert list((logdir / 'replay').glob('*.npz'))
    assert 'Finished training at step' in result.stdout


def test_same_command_resumes(first_run):
    logdir, _ = first_run
    step_before = checkpoint(logdir, 'step')
    updates_before = int(checkpoint(logdir, 'agent')['counters']['updates'])
    assert updates_before > 0
    result = main(logdir, '--run.steps', '600')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f'Training from step {step_before} ' in result.stdout
    assert checkpoint(logdir, 'step') >= 600
    assert int(checkpoint(logdir, 'agent')['counters']['updates']) > updates_before
    steps = [line['step'] for line in metrics(logdir)]
    assert steps == sorted(steps)


def test_other_model_size_on_same_logdir_is_a_clear_error(first_run):
    logdir, _ = first_run
    result = main(logdir, '--run.steps', '700', '--agent.dyn.rssm.deter', '16')
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    assert 'dyn/' in result.stderr and 'another config' in result.stderr
