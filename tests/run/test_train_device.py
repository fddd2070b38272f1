"""The `train_device` script: the train ratio, exact resumes and seeds that train independently."""

import pickle

import helpers
import numpy as np
import pytest

from embodied.jax import device_loop

# CartPole with two environments; a batch of 2 x 4 steps, and 2 updates per environment step
# once the replay holds a batch's worth of items. Every checkpoint is kept, the initial one too.
FLAGS = (
    '--script',
    'train_device',
    '--task',
    'gymnax_CartPole-v1',
    '--run.envs',
    '2',
    '--run.device_chunk',
    '8',
    '--batch_size',
    '2',
    '--batch_length',
    '4',
    '--run.train_ratio',
    '16',
    '--run.log_every',
    '1',
    '--run.keep_checkpoints',
    '10',
)


# The agent the in-process runs share, built by the first.
AGENTS = {}


def train(logdir, steps, *flags):
    """Run the script in this process until `steps` env steps; returns what it printed.

    The runs share one agent: the script takes only its model and initial parameters (of the
    seeds it is given), which do not depend on the seed of the agent it was built with.
    """
    from dreamerv3 import main
    from embodied.run.train_device import train_device

    config = helpers.config(*FLAGS, '--run.steps', str(steps), *flags, logdir=logdir)
    with helpers.kept_jax_settings():
        if 'agent' not in AGENTS:
            AGENTS['agent'] = main.make_agent(config.update({'jax.precompile': False}))
        return helpers.run_script(train_device, config, lambda _: AGENTS['agent'])


def params(logdir):
    return helpers.checkpoint(logdir / 'ckpt', 'agent')['params']


def ready_transitions(envs, iterations, length, needed):
    """Transitions after which the host replay holds `needed` items, counted as the host loop
    adds them: environment by environment, an item per `length` steps of an environment."""
    count = 0
    for iteration in range(iterations):
        for env in range(envs):
            items = (env + 1) * max(0, iteration + 2 - length)
            items += (envs - env - 1) * max(0, iteration + 1 - length)
            count += items >= needed
    return count


def test_updates_follow_the_train_ratio_of_the_host_loop():
    from embodied.core import clock

    ratio = clock.Ratio(64 / (16 * 64))
    steps, envs = 3000, 4

    def ready(iteration, env):
        return iteration * envs + env >= 100

    counts = device_loop.schedule(ratio, 0, envs, steps, ready)
    assert abs(counts.sum() - (steps * envs - 100) / 16) <= 1
    assert counts[: 100 // envs].sum() == 0


def first_params(logdir):
    """The parameters of the first checkpoint, the initial ones."""
    folder = min(p for p in (logdir / 'ckpt').iterdir() if (p / 'done').exists())
    return pickle.loads((folder / 'agent.pkl').read_bytes())['params']


@pytest.mark.slow
def test_seed_of_a_run_and_a_resumed_run_of_that_seed_learn_the_same(tmp_path):
    # Two seeds, uninterrupted.
    seeds = tmp_path / 'seeds'
    printed = train(seeds, 32, '--run.seeds', '2', '--seed', '5')
    assert 'seed 0:' in printed and 'seed 1:' in printed
    for index in (0, 1):
        folder = seeds / f'seed{index}'
        assert (folder / 'config.yaml').exists(), folder
        names = helpers.keys(folder)
        for name in ('train/loss/dyn', 'train/loss/policy', 'fps/policy', 'replay/items'):
            assert name in names, (folder, name)
    # Seed 1 alone, stopped after its checkpoint at half the steps and resumed.
    one = tmp_path / 'one'
    train(one, 16, '--seed', '6')
    printed = train(one, 32, '--seed', '6')
    assert 'Loading checkpoint' in printed and 'from step 16' in printed
    assert 'Finished training at step 32' in printed
    initial, expected, got = first_params(one), params(seeds / 'seed1'), params(one)
    for key, value in first_params(seeds / 'seed1').items():
        np.testing.assert_array_equal(value, initial[key], err_msg=key)
    # The same updates up to float rounding: far closer than how far training moved them.
    for key in expected:
        moved = np.abs(expected[key] - initial[key]).max()
        assert np.abs(got[key] - expected[key]).max() <= 0.01 * moved + 1e-6, key
    other = params(seeds / 'seed0')
    assert any(not np.allclose(other[k], expected[k]) for k in expected)
    # 16 iterations of 2 environments; items of 5 steps (4 plus 1 of replay context).
    updates = helpers.checkpoint(one / 'ckpt', 'agent')['counters']['updates']
    transitions = ready_transitions(envs=2, iterations=16, length=5, needed=2 * 4)
    assert transitions > 10 and abs(updates - 2 * transitions) <= 1
    rows = helpers.metrics(seeds / 'seed1')
    assert max(row.get('replay/updates', 0) for row in rows) == updates
