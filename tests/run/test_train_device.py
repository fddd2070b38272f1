"""The `train_device` script: the train ratio, exact resumes and seeds that train independently."""

import pickle

import helpers
import jax
import numpy as np
import pytest

from embodied.jax import device_loop
from embodied.jax.setup import configure

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


def first(logdir, name):
    """An entry of the first checkpoint, the one of the initial state."""
    folder = min(p for p in (logdir / 'ckpt').iterdir() if (p / 'done').exists())
    return pickle.loads((folder / f'{name}.pkl').read_bytes())


@pytest.mark.slow
def test_a_seed_learns_the_same_alone_beside_others_and_resumed(tmp_path):
    """Seed 5 trains in run A beside seed 6, uninterrupted, and in run B beside seed 4, stopped
    after its checkpoint at half the steps and resumed: the same parameters, up to float
    rounding. Its initial state is that of a one-seed run with seed 5. One program (two
    seeds) serves all three runs."""
    from embodied.envs import registry
    from embodied.run import train_device

    a, b = tmp_path / 'a', tmp_path / 'b'
    printed = train(a, 32, '--run.seeds', '2', '--seed', '5')
    assert 'seed 0:' in printed and 'seed 1:' in printed
    for index in (0, 1):
        folder = a / f'seed{index}'
        assert (folder / 'config.yaml').exists(), folder
        names = helpers.keys(folder)
        for name in ('train/loss/dyn', 'train/loss/policy', 'fps/policy', 'replay/items'):
            assert name in names, (folder, name)
    train(b, 16, '--run.seeds', '2', '--seed', '4')
    printed = train(b, 32, '--run.seeds', '2', '--seed', '4')
    assert 'Loading checkpoint' in printed and 'from step 16' in printed
    assert 'Finished training at step 32' in printed
    initial, expected, got = (
        first(a / 'seed0', 'agent')['params'],
        params(a / 'seed0'),
        params(b / 'seed1'),
    )
    # The same updates up to float rounding: far closer than how far training moved them.
    for key in expected:
        moved = np.abs(expected[key] - initial[key]).max()
        assert np.abs(got[key] - expected[key]).max() <= 0.01 * moved + 1e-6, key
    other = params(a / 'seed1')
    assert any(not np.allclose(other[k], expected[k]) for k in expected)
    # A one-seed run of seed 5 starts from the same parameters, environments and replay.
    config = helpers.config(*FLAGS, '--seed', '5', logdir=tmp_path / 'one')
    agent = AGENTS['agent']
    with helpers.kept_jax_settings():
        configure(config.jax)
        env = registry.make_jax_env(config)
        program = device_loop.DeviceLoop(
            agent.model,
            env,
            config,
            [5],
            [[registry.env_seed(5, i) for i in range(2)]],
            agent.train_mesh,
        )
        state = program.init([agent.init_params(5)])
        alone = jax.device_get(state)
    # No weakly typed leaf: a state restored from a checkpoint (which has none) then has the
    # types of a new one, and a resumed run reuses the compiled program.
    assert not [x for x in jax.tree.leaves(state) if x.weak_type]
    for key, value in alone['params'].items():
        np.testing.assert_array_equal(value[0], initial[key], err_msg=key)
    leaves = jax.tree.leaves({k: alone[k] for k in train_device.DEVICE_KEYS})
    saved = first(a / 'seed0', 'device')['leaves']
    assert len(leaves) == len(saved)
    for ours, theirs in zip(leaves, saved):
        np.testing.assert_array_equal(ours[0], theirs)
    # 16 iterations of 2 environments; items of 5 steps (4 plus 1 of replay context).
    updates = helpers.checkpoint(b / 'seed1' / 'ckpt', 'agent')['counters']['updates']
    transitions = ready_transitions(envs=2, iterations=16, length=5, needed=2 * 4)
    assert transitions > 10 and abs(updates - 2 * transitions) <= 1
    rows = helpers.metrics(a / 'seed0')
    assert max(row.get('replay/updates', 0) for row in rows) == updates
