"""End to end: a `train` run resumed from the command line, and a mismatched logdir."""

import re

import helpers
import pytest
from helpers import LOSSES, metrics

from embodied.run import train

pytestmark = pytest.mark.slow


def main(logdir, *flags):
    return helpers.cli(logdir, '--run.envs', '2', *flags, timeout=600)


def checkpoint(logdir, name):
    return helpers.checkpoint(logdir / 'ckpt', name)


@pytest.fixture(scope='module')
def first_run(tmp_path_factory, shared_agent):
    """300 steps of the shared debug agent in this process; the command line resumes it."""
    logdir = tmp_path_factory.mktemp('train')
    config = helpers.config('--run.envs', '2', '--run.steps', '300', logdir=logdir)
    with helpers.settings_of(shared_agent[0]):
        out = helpers.run_script(train.train, config, helpers.reuse(*shared_agent))
    return logdir, out


def test_train_writes_what_a_user_expects(first_run):
    logdir, out = first_run
    assert (logdir / 'config.yaml').exists()
    assert (logdir / 'scores.jsonl').read_text().strip()
    keys = set().union(*metrics(logdir))
    for name in LOSSES:
        assert f'train/loss/{name}' in keys, sorted(keys)
    for name in ('episode/score', 'episode/length', 'fps/policy', 'fps/train', 'replay/items'):
        assert name in keys, name
    assert checkpoint(logdir, 'step') >= 300
    assert list((logdir / 'replay').glob('*.npz'))
    assert 'Finished training at step' in out


def test_same_command_resumes(first_run):
    logdir, _ = first_run
    step_before = checkpoint(logdir, 'step')
    updates_before = int(checkpoint(logdir, 'agent')['counters']['updates'])
    assert updates_before > 0
    # Not precompiled and no reports: it compiles only the policy and the train step, which the
    # first run left in the cache.
    flags = ('--jax.precompile', 'False', '--run.report_every', '0')
    result = main(logdir, '--run.steps', '400', *flags)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f'Training from step {step_before} ' in result.stdout
    assert checkpoint(logdir, 'step') >= 400
    assert int(checkpoint(logdir, 'agent')['counters']['updates']) > updates_before
    steps = [line['step'] for line in metrics(logdir)]
    assert steps == sorted(steps)


def test_other_model_size_on_same_logdir_is_a_clear_error(first_run):
    logdir, _ = first_run
    config = (logdir / 'config.yaml').read_text()
    # Precompiled (the default): the shapes are compared before anything compiles.
    result = main(logdir, '--run.steps', '700', '--agent.dyn.rssm.deter', '16')
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    assert 'Compil' not in result.stdout
    error = result.stderr
    assert 'does not fit this model' in error
    assert 'agent.dyn.rssm.deter (8 -> 16)' in error
    assert re.search(r'\n  dyn/\S+: saved float32\[[\d, ]+\], model float32\[[\d, ]+\]\n', error)
    assert '(0)' not in error and 'Missing' not in error
    assert (logdir / 'config.yaml').read_text() == config
