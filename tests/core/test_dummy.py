"""The Dummy environment: spaces, observation values and episode structure."""

import numpy as np
import pytest

import embodied
from embodied.envs.dummy import Dummy

# numpy-only and version-sensitive: also runs under the reference pin in CI.
pytestmark = pytest.mark.pinned


def action(env, reset=False):
    return {'act_disc': np.int32(2), 'act_cont': np.zeros(6, np.float32), 'reset': np.bool_(reset)}


def test_spaces():
    env = Dummy('anything')
    obs = env.obs_space
    expected = {
        'image': (np.uint8, (64, 64, 3)),
        'vector': (np.float32, (7,)),
        'token': (np.int32, ()),
        'count': (np.float32, ()),
        'float2d': (np.float32, (4, 5)),
        'int2d': (np.int32, (2, 3)),
        'reward': (np.float32, ()),
        'is_first': (bool, ()),
        'is_last': (bool, ()),
        'is_terminal': (bool, ()),
    }
    assert {k: (v.dtype, v.shape) for k, v in obs.items()} == expected
    assert (obs['token'].low, obs['token'].high) == (0, 256)
    assert (obs['count'].low, obs['count'].high) == (0, 100)
    assert (obs['int2d'].low.min(), obs['int2d'].high.max()) == (0, 4)
    act = env.act_space
    assert set(act) == {'act_disc', 'act_cont', 'reset'}
    assert act['act_disc'].dtype == np.int32 and act['act_disc'].classes == 5
    assert act['act_cont'].dtype == np.float32 and act['act_cont'].shape == (6,)
    assert np.isinf(act['act_cont'].low).all() and np.isinf(act['act_cont'].high).all()
    assert Dummy('x', size=(8, 6)).obs_space['image'].shape == (8, 6, 3)


def test_observation_values_fit_spaces():
    env = Dummy('x')
    obs = env.step(action(env, reset=True))
    for key, space in env.obs_space.items():
        assert obs[key] in space, key
    assert (obs['image'] == 255).all() and (obs['vector'] == 0).all()
    assert (obs['float2d'] == 1).all() and (obs['int2d'] == 1).all() and obs['token'] == 0


def test_episode_length_and_flags():
    env = Dummy('x', size=(4, 4), length=3)
    steps = [env.step(action(env)) for _ in range(6)]  # first call resets on its own
    assert [int(o['count']) for o in steps] == [0, 1, 2, 3, 0, 1]
    assert [float(o['reward']) for o in steps] == [0, 1, 1, 1, 0, 1]
    assert [bool(o['is_first']) for o in steps] == [True, False, False, False, True, False]
    assert [bool(o['is_last']) for o in steps] == [False, False, False, True, False, False]
    assert [bool(o['is_terminal']) for o in steps] == [False, False, False, True, False, False]
    # An explicit reset starts a new episode mid-way.
    assert env.step(action(env, reset=True))['is_first']


def test_default_episode_has_100_steps():
    env = Dummy('x', size=(4, 4))
    obs = env.step(action(env))
    count = 0
    while not obs['is_last']:
        obs = env.step(action(env))
        count += 1
    assert count == 100 and obs['count'] == 100


def test_wrapped_dummy_exposes_bounded_continuous_actions():
    env = embodied.wrap_env(Dummy('x', size=(4, 4)))
    space = env.act_space['act_cont']
    assert space.dtype == np.float32
    assert (space.low == -1).all() and (space.high == 1).all()
    obs = env.step(action(env))
    assert obs['is_first']
