"""BSuite (which the reference could not construct)."""

import numpy as np
import pytest

import embodied
from embodied.envs import registry
from embodied.envs.bsuite import BSuite, BSuiteFinished


def test_catch_spaces_and_random_steps(rollout):
    inner = registry.load('bsuite')('catch')  # '/0' is appended
    assert inner.task == 'catch/0'
    assert inner.obs_space['observation'].shape == (50,)  # (10, 5) board flattened
    assert inner.act_space['action'].classes == 3
    env = embodied.wrap_env(inner)
    assert env.act_space['action'].dtype == np.int32
    trajectory = rollout(env, 200)
    lasts = [i for i, o in enumerate(trajectory) if o['is_last']]
    assert lasts[:3] == [9, 19, 29]  # Catch episodes take 9 steps after the reset
    assert all(trajectory[i]['is_terminal'] for i in lasts)
    assert all(abs(trajectory[i]['reward']) == 1 for i in lasts)
    assert all(o['observation'].shape == (50,) for o in trajectory)


def test_no_global_numpy_patch():
    BSuite('catch/0')
    assert 'int' not in np.__dict__  # the reference patched np.int globally


def test_run_ends_after_the_episode_budget():
    env = BSuite('catch/0', exit_after=0)
    env.max_episodes = 2
    reset = {'action': np.int32(0), 'reset': np.bool_(True)}
    step = {'action': np.int32(0), 'reset': np.bool_(False)}
    env.step(reset)
    for _ in range(9):
        env.step(step)
    env.step(reset)
    for _ in range(8):
        env.step(step)
    with pytest.raises(BSuiteFinished, match='catch/0'):
        env.step(step)


def test_results_csv_with_logdir(tmp_path):
    env = BSuite('catch/0', logdir=tmp_path)
    env.step({'action': np.int32(0), 'reset': np.bool_(True)})
    for _ in range(9):
        env.step({'action': np.int32(0), 'reset': np.bool_(False)})
    assert list(tmp_path.glob('*.csv'))
