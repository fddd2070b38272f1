"""End to end: the `train` script from the command line, resumed, and on a mismatched logdir."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'run'))
import runhelpers  # noqa: E402
from runhelpers import LOSSES, metrics  # noqa: E402

# Each test trains the debug agent from the command line for a few hundred steps.
pytestmark = pytest.mark.slow


def main(logdir, *flags):
    return runhelpers.main(
        logdir, '--jax.precompile', 'False', '--run.envs', '2', *flags, timeout=600
    )


def checkpoint(logdir, name):
    return runhelpers.checkpoint(logdir / 'ckpt', name)


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
