"""FromGym on gymnasium (and old-gym-API) environments."""

import gymnasium as gym
import numpy as np
import pytest

import embodied
from embodied.envs import registry
from embodied.envs.from_gym import FromGym


def act(reset=False, **values):
    return {'reset': np.bool_(reset), **values}


def test_cartpole_spaces_and_default_obs_key():
    env = registry.load('gym')('CartPole-v1')
    assert env.obs_space['image'].shape == (4,)  # kept under `image`, as in the reference
    assert env.obs_space['image'].dtype == np.float32
    assert env.act_space['action'].dtype == np.int32 and env.act_space['action'].classes == 2
    vector = FromGym('CartPole-v1', obs_key='vector')
    assert 'vector' in vector.obs_space and 'image' not in vector.obs_space


def test_cartpole_random_steps_end_by_termination(rollout):
    env = embodied.wrap_env(FromGym('CartPole-v1', seed=0))
    trajectory = rollout(env, 300)
    lasts = [obs for obs in trajectory if obs['is_last']]
    assert len(lasts) >= 3  # random play drops the pole within ~30 steps
    assert all(obs['is_terminal'] for obs in lasts)


def test_truncation_is_last_but_not_terminal():
    env = FromGym('CartPole-v1', max_episode_steps=6, seed=0)
    obs = env.step(act(reset=True, action=np.int32(0)))
    assert obs['is_first'] and obs['reward'] == 0
    flags = []
    for index in range(6):
        obs = env.step(act(action=np.int32(index % 2)))  # alternate to keep the pole up
        flags.append((bool(obs['is_last']), bool(obs['is_terminal'])))
    assert flags == [(False, False)] * 5 + [(True, False)]
    assert env.step(act(action=np.int32(0)))['is_first']


def test_pendulum_continuous_actions_are_normalized(rollout):
    inner = FromGym('Pendulum-v1', seed=0)
    assert inner.act_space['action'].shape == (1,)
    np.testing.assert_array_equal(inner.act_space['action'].high, [2.0])
    env = embodied.wrap_env(inner)
    assert env.act_space['action'].dtype == np.float32
    np.testing.assert_array_equal(env.act_space['action'].low, [-1.0])
    np.testing.assert_array_equal(env.act_space['action'].high, [1.0])
    trajectory = rollout(env, 402)
    lasts = [i for i, obs in enumerate(trajectory) if obs['is_last']]
    assert lasts == [200, 401]  # Pendulum's 200-step time limit: truncation only
    assert not any(obs['is_terminal'] for obs in trajectory)
    received = []
    step = inner._env.step
    inner._env.step = lambda action: received.append(action) or step(action)
    env.step(act(reset=True, action=np.float32([0.0])))
    env.step(act(action=np.float32([0.5])))
    np.testing.assert_allclose(received[-1], [1.0])  # 0.5 in [-1, 1] is 1.0 in [-2, 2]


def test_seed_makes_resets_reproducible():
    def first_obs(seed):
        return FromGym('CartPole-v1', seed=seed).step(act(reset=True, action=np.int32(0)))

    np.testing.assert_array_equal(first_obs(3)['image'], first_obs(3)['image'])
    assert not np.array_equal(first_obs(3)['image'], first_obs(4)['image'])


class DictEnv(gym.Env):
    """Nested dict observations, dict actions and a Discrete space with an offset."""

    observation_space = gym.spaces.Dict(
        {
            'pos': gym.spaces.Box(-1, 1, (2,), np.float64),
            'inner': gym.spaces.Dict({'count': gym.spaces.Discrete(5, start=1)}),
        }
    )
    action_space = gym.spaces.Dict(
        {
            'move': gym.spaces.Discrete(3, start=-1),
            'arm': gym.spaces.Box(-2, 2, (2,), np.float32),
        }
    )

    def __init__(self):
        self.count = 1
        self.actions = []

    def reset(self, seed=None, options=None):
        self.count = 1
        return self._obs(), {}

    def step(self, action):
        self.actions.append(action)
        self.count += 1
        return self._obs(), 1.0, self.count == 5, False, {}

    def _obs(self):
        return {'pos': np.zeros(2), 'inner': {'count': self.count}}


def test_dict_spaces_are_flattened_and_actions_unflattened():
    inner = DictEnv()
    env = FromGym(inner)
    assert set(env.obs_space) == {
        'pos',
        'inner/count',
        'reward',
        'is_first',
        'is_last',
        'is_terminal',
    }
    assert env.obs_space['inner/count'].classes == 5
    assert set(env.act_space) == {'move', 'arm', 'reset'}
    assert env.act_space['move'].classes == 3
    wrapped = embodied.wrap_env(env)
    obs = wrapped.step(act(reset=True, move=np.int32(0), arm=np.zeros(2, np.float32)))
    assert obs['inner/count'] == 0  # gym value 1 minus start 1
    obs = wrapped.step(act(move=np.int32(0), arm=np.float32([1.0, -1.0])))
    assert obs['inner/count'] == 1 and obs['pos'].dtype == np.float32
    assert inner.actions[-1]['move'] == -1  # index 0 maps to the space's start
    np.testing.assert_allclose(inner.actions[-1]['arm'], [2.0, -2.0])
    for _ in range(3):
        obs = wrapped.step(act(move=np.int32(2), arm=np.zeros(2, np.float32)))
    assert obs['is_last'] and obs['is_terminal']


class OldApiEnv:
    """The pre-0.26 gym API: reset() -> obs and step() -> (obs, reward, done, info)."""

    observation_space = gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, infos):
        self.infos = infos
        self.t = 0
        self.seeded = None

    def seed(self, seed):
        self.seeded = seed

    def reset(self):
        self.t = 0
        return np.zeros((4, 4, 3), np.uint8)

    def step(self, action):
        info = self.infos[self.t]
        self.t += 1
        done = self.t == len(self.infos)
        return np.full((4, 4, 3), self.t, np.uint8), 0.5, done, info


@pytest.mark.parametrize(
    'info, terminal',
    [
        ({}, True),
        ({'TimeLimit.truncated': True}, False),
        ({'is_terminal': False}, False),
        ({'is_terminal': True, 'TimeLimit.truncated': True}, True),
    ],
)
def test_old_gym_api(info, terminal):
    inner = OldApiEnv([{}, {}, info])
    env = FromGym(inner, seed=11)
    obs = env.step(act(reset=True, action=np.int32(0)))
    assert inner.seeded == 11
    assert obs['is_first'] and obs['image'].shape == (4, 4, 3)
    for _ in range(3):
        obs = env.step(act(action=np.int32(1)))
    assert obs['is_last'] and obs['image'][0, 0, 0] == 3 and obs['reward'] == 0.5
    assert bool(obs['is_terminal']) == terminal
    assert env.step(act(action=np.int32(0)))['is_first']


def test_instance_with_kwargs_is_rejected():
    with pytest.raises(TypeError, match='max_episode_steps'):
        FromGym(DictEnv(), max_episode_steps=3)


def test_unsupported_space_is_named():
    class TextEnv(DictEnv):
        observation_space = gym.spaces.Text(5)

    with pytest.raises(ValueError, match='Unsupported gym space'):
        FromGym(TextEnv())


def test_make_old_gym_falls_back_without_the_checker_flag():
    from embodied.envs.from_gym import make_old_gym

    calls = []

    def make(env_id, **kwargs):
        calls.append(kwargs)
        if 'disable_env_checker' in kwargs:
            raise TypeError("__init__() got an unexpected keyword 'disable_env_checker'")
        return env_id

    old_gym = type('OldGym', (), {'make': staticmethod(make)})
    assert make_old_gym(old_gym, 'Thing-v0', size=3) == 'Thing-v0'
    assert calls == [{'disable_env_checker': True, 'size': 3}, {'size': 3}]
