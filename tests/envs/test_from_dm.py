"""FromDM and the `dm` suite on a small hand-written dm_env environment."""

import sys
import types

import dm_env
import numpy as np
import pytest
from dm_env import specs

import embodied
from embodied.envs import registry
from embodied.envs.from_dm import FromDM


class Counter(dm_env.Environment):
    """Counts to `length`; odd episodes end by termination, even ones by truncation."""

    def __init__(self, length=4, discount=0.0):
        self.length = length
        self.final_discount = discount
        self.t = 0
        self.episode = 0
        self.actions = []

    def observation_spec(self):
        return {
            'count': specs.Array((1,), np.float64, 'count'),
            'reward': specs.Array((), np.float64, 'reward'),
            'a/b': specs.BoundedArray((2,), np.float32, 0.0, 1.0, 'a/b'),
            'empty': specs.Array((0,), np.float32, 'empty'),
        }

    def action_spec(self):
        return specs.DiscreteArray(3, name='action')

    def reset(self):
        self.t = 0
        self.episode += 1
        return dm_env.restart(self._obs())

    def step(self, action):
        self.actions.append(action)
        self.t += 1
        if self.t < self.length:
            return dm_env.transition(1.0, self._obs())
        if self.episode % 2:
            return dm_env.TimeStep(dm_env.StepType.LAST, 2.0, self.final_discount, self._obs())
        return dm_env.truncation(2.0, self._obs())

    def _obs(self):
        return {
            'count': np.array([self.t], np.float64),
            'reward': np.float64(-self.t),
            'a/b': np.full(2, 0.5, np.float32),
            'empty': np.zeros(0, np.float32),
        }


def act(action=0, reset=False):
    return {'action': np.int32(action), 'reset': np.bool_(reset)}


def test_spaces_renames_and_drops():
    env = FromDM(Counter())
    assert set(env.obs_space) == {
        'reward',
        'is_first',
        'is_last',
        'is_terminal',
        'count',
        'obs_reward',
        'a_b',
    }
    np.testing.assert_array_equal(env.obs_space['a_b'].high, [1.0, 1.0])
    assert env.obs_space['count'].dtype == np.float64
    assert set(env.act_space) == {'action', 'reset'}
    assert env.act_space['action'].classes == 3


def test_termination_and_truncation():
    inner = Counter(length=3)
    env = FromDM(inner)
    episodes = []
    for _ in range(2):
        trajectory = [env.step(act(reset=True))]
        trajectory += [env.step(act(2)) for _ in range(3)]
        episodes.append(trajectory)
    terminated, truncated = episodes
    assert terminated[0]['is_first'] and terminated[0]['reward'] == 0
    assert not terminated[0]['is_terminal']
    assert [float(o['reward']) for o in terminated] == [0.0, 1.0, 1.0, 2.0]
    assert [bool(o['is_last']) for o in terminated] == [False, False, False, True]
    assert [bool(o['is_terminal']) for o in terminated] == [False, False, False, True]
    assert truncated[-1]['is_last'] and not truncated[-1]['is_terminal']
    assert terminated[2]['obs_reward'] == -2
    assert inner.actions == [2] * 6


def test_last_step_resets_on_the_next_call():
    env = FromDM(Counter(length=1))
    env.step(act(reset=True))
    assert env.step(act())['is_last']
    assert env.step(act())['is_first']


def test_discounts_other_than_zero_or_one_are_rejected():
    env = FromDM(Counter(length=1, discount=0.5))
    env.step(act(reset=True))
    with pytest.raises(ValueError, match='0.5'):
        env.step(act())


def test_random_steps_through_wrap_env(rollout):
    env = embodied.wrap_env(FromDM(Counter(length=5)))
    assert env.obs_space['count'].dtype == np.float32
    trajectory = rollout(env, 240)
    assert sum(bool(o['is_last']) for o in trajectory) == 40
    assert sum(bool(o['is_terminal']) for o in trajectory) == 20
    assert all(o['count'].dtype == np.float32 for o in trajectory)


def test_integer_bounded_action_high_is_exclusive():
    class Bounded(Counter):
        def action_spec(self):
            return specs.BoundedArray((2,), np.int64, 0, 4, 'action')

    env = FromDM(Bounded())
    np.testing.assert_array_equal(env.act_space['action'].high, [5, 5])


def test_dm_suite_builds_from_a_factory_path(monkeypatch):
    module = types.ModuleType('fake_dm_envs')
    module.make_counter = lambda length=4: Counter(length=length)
    monkeypatch.setitem(sys.modules, 'fake_dm_envs', module)
    env = registry.load('dm')('fake_dm_envs:make_counter', length=2)
    env.step(act(reset=True))
    env.step(act())
    assert env.step(act())['is_last']
    with pytest.raises(ValueError, match='<module>:<factory>'):
        registry.load('dm')('no_colon_here')
    with pytest.raises(ValueError, match='nothing_here'):
        registry.load('dm')('fake_dm_envs:nothing_here')
