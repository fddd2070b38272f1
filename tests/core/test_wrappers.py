"""Behaviour of every environment wrapper and of the standard wrapping."""

import elements
import numpy as np
import pytest

import embodied
from embodied.core import wrappers
from embodied.envs.dummy import Dummy

# numpy-only and version-sensitive: also runs under the reference pin in CI.
pytestmark = pytest.mark.pinned

BASE_OBS = {
    'reward': elements.Space(np.float32),
    'is_first': elements.Space(bool),
    'is_last': elements.Space(bool),
    'is_terminal': elements.Space(bool),
}


class ScriptedEnv(embodied.Env):
    """Records every action it receives and returns `make_obs(step_index, action)`."""

    def __init__(self, obs_space, act_space, make_obs):
        self._obs_space = obs_space
        self._act_space = act_space
        self.make_obs = make_obs
        self.actions = []

    @property
    def obs_space(self):
        return self._obs_space

    @property
    def act_space(self):
        return self._act_space

    def step(self, action):
        self.actions.append(action)
        return self.make_obs(len(self.actions) - 1, action)


def base_obs(reward=0.0, first=False, last=False):
    return {
        'reward': np.float32(reward),
        'is_first': np.bool_(first),
        'is_last': np.bool_(last),
        'is_terminal': np.bool_(last),
    }


def act(reset=False, **kwargs):
    return {'reset': np.bool_(reset), **kwargs}


def test_normalize_action_maps_finite_bounds_and_passes_infinite_through():
    space = elements.Space(np.float32, (3,), [0, -2, -np.inf], [10, 2, np.inf])
    inner = ScriptedEnv(
        BASE_OBS, {'action': space, 'reset': elements.Space(bool)}, lambda i, a: base_obs()
    )
    env = wrappers.NormalizeAction(inner, 'action')
    exposed = env.act_space['action']
    assert exposed.dtype == np.float32 and exposed.shape == (3,)
    np.testing.assert_array_equal(exposed.low, [-1, -1, -1])
    np.testing.assert_array_equal(exposed.high, [1, 1, 1])
    env.step(act(action=np.array([-1, 0.5, 7.0], np.float32)))
    env.step(act(action=np.array([1, -1, -0.25], np.float32)))
    # (a + 1) / 2 * (high - low) + low per finite dimension; the unbounded one is untouched.
    np.testing.assert_allclose(inner.actions[0]['action'], [0.0, 1.0, 7.0])
    np.testing.assert_allclose(inner.actions[1]['action'], [10.0, -2.0, -0.25])
    assert inner.actions[0]['action'].dtype == np.float32


def test_normalize_action_rejects_discrete_key():
    inner = ScriptedEnv(
        BASE_OBS,
        {'a': elements.Space(np.int32, (), 0, 3), 'reset': elements.Space(bool)},
        lambda i, a: base_obs(),
    )
    with pytest.raises(ValueError, match="'a'"):
        wrappers.NormalizeAction(inner, 'a')


def test_unify_dtypes_converts_observations_and_actions_back():
    obs_space = {
        **BASE_OBS,
        'f64': elements.Space(np.float64, (2,)),
        'i64': elements.Space(np.int64, ()),
        'u16': elements.Space(np.uint16, (), 0, 100),
        'img': elements.Space(np.uint8, (2, 2, 3)),
    }
    act_space = {
        'disc': elements.Space(np.int64, (), 0, 4),
        'cont': elements.Space(np.float64, (2,), -1, 1),
        'reset': elements.Space(bool),
    }

    def make_obs(i, action):
        return {
            'reward': 1.5,
            'is_first': True,
            'is_last': False,
            'is_terminal': False,
            'f64': np.array([0.5, 1.5]),
            'i64': np.int64(7),
            'u16': np.uint16(9),
            'img': np.zeros((2, 2, 3), np.uint8),
        }

    inner = ScriptedEnv(obs_space, act_space, make_obs)
    env = wrappers.UnifyDtypes(inner)
    dtypes = {k: v.dtype for k, v in env.obs_space.items()}
    assert dtypes == {
        'reward': np.float32,
        'is_first': bool,
        'is_last': bool,
        'is_terminal': bool,
        'f64': np.float32,
        'i64': np.int32,
        'u16': np.int32,
        'img': np.uint8,
    }
    assert env.act_space['disc'].dtype == np.int32
    assert env.act_space['cont'].dtype == np.float32
    assert env.act_space['reset'].dtype == bool
    # Default int64 bounds saturate at the int32 range; explicit bounds survive.
    assert env.obs_space['i64'].low == np.iinfo(np.int32).min
    assert env.obs_space['i64'].high == np.iinfo(np.int32).max
    assert env.obs_space['u16'].high == 100
    obs = env.step(act(disc=np.int32(3), cont=np.array([0.25, -0.5], np.float32)))
    assert {k: v.dtype for k, v in obs.items()} == dtypes
    np.testing.assert_array_equal(obs['f64'], [0.5, 1.5])
    assert obs['i64'] == 7 and obs['reward'] == np.float32(1.5)
    sent = inner.actions[0]
    assert sent['disc'].dtype == np.int64 and sent['disc'] == 3
    assert sent['cont'].dtype == np.float64
    np.testing.assert_array_equal(sent['cont'], [0.25, -0.5])
    assert sent['reset'].dtype == bool


def check_env(obs=None):
    obs_space = {**BASE_OBS, 'vec': elements.Space(np.float32, (2,), 0, 1)}
    act_space = {'disc': elements.Space(np.int32, (), 0, 4), 'reset': elements.Space(bool)}

    def make_obs(i, action):
        return {**base_obs(), 'vec': np.array([0.5, 0.5], np.float32), **(obs or {})}

    return wrappers.CheckSpaces(ScriptedEnv(obs_space, act_space, make_obs))


def test_check_spaces_accepts_valid_values():
    obs = check_env().step(act(disc=np.int32(3)))
    assert obs['vec'].dtype == np.float32


def test_check_spaces_names_observation_key_space_and_value():
    env = check_env({'vec': np.array([0.5, 0.5], np.float64)})
    with pytest.raises(ValueError) as info:
        env.step(act(disc=np.int32(0)))
    message = str(info.value)
    assert message.startswith("Observation key 'vec'")
    assert 'Space(float32' in message and 'dtype float64' in message
    assert 'array([0.5, 0.5])' in message
    env = check_env({'vec': np.array([0.5, 2.0], np.float32)})
    with pytest.raises(ValueError, match=r"Observation key 'vec'.*above high=1"):
        env.step(act(disc=np.int32(0)))
    env = check_env({'vec': np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"Observation key 'vec'.*shape \(3,\) is not \(2,\)"):
        env.step(act(disc=np.int32(0)))


def test_check_spaces_names_action_key_and_value():
    env = check_env()
    with pytest.raises(ValueError) as info:
        env.step(act(disc=np.int32(4)))  # high is exclusive for integer actions
    message = str(info.value)
    assert message.startswith("Action key 'disc'")
    assert 'Space(int32' in message and 'array(4' in message and 'agent' in message
    with pytest.raises(ValueError, match=r"Action key 'disc'.*dtype int64 is not int32"):
        env.step(act(disc=np.int64(1)))
    with pytest.raises(ValueError, match=r"action keys.*missing \['disc'\]"):
        env.step(act())


def test_check_spaces_requires_disjoint_keys():
    space = {**BASE_OBS, 'x': elements.Space(np.float32)}
    inner = ScriptedEnv(
        space,
        {'x': elements.Space(np.float32), 'reset': elements.Space(bool)},
        lambda i, a: base_obs(),
    )
    with pytest.raises(ValueError, match=r"\['x'\]"):
        wrappers.CheckSpaces(inner)


def test_clip_action_clips_elementwise_and_keeps_dtype():
    space = elements.Space(np.float32, (3,), -1, 1)
    inner = ScriptedEnv(
        BASE_OBS, {'a': space, 'reset': elements.Space(bool)}, lambda i, a: base_obs()
    )
    env = wrappers.ClipAction(inner, 'a')
    env.step(act(a=np.array([-3.0, 0.5, 2.0], np.float32)))
    np.testing.assert_array_equal(inner.actions[0]['a'], [-1.0, 0.5, 1.0])
    assert inner.actions[0]['a'].dtype == np.float32


def dummy_action(reset=False):
    return act(reset, act_disc=np.int32(0), act_cont=np.zeros(6, np.float32))


def test_action_repeat_sums_rewards_and_stops_on_last():
    env = wrappers.ActionRepeat(Dummy('x', size=(4, 4), length=5), 3)
    obs = env.step(dummy_action(reset=True))  # a reset passes through exactly once
    assert obs['is_first'] and obs['count'] == 0 and obs['reward'] == 0
    obs = env.step(dummy_action())
    assert obs['count'] == 3 and obs['reward'] == 3.0 and obs['reward'].dtype == np.float32
    obs = env.step(dummy_action())  # only two steps remain before the last one
    assert obs['count'] == 5 and obs['reward'] == 2.0 and obs['is_last']
    obs = env.step(dummy_action())  # the env resets itself: the new episode shows at once
    assert obs['is_first'] and obs['count'] == 0 and obs['reward'] == 0


def test_time_limit_marks_last_and_resets():
    env = wrappers.TimeLimit(Dummy('x', size=(4, 4), length=100), 3)
    obs = [env.step(dummy_action()) for _ in range(6)]
    assert [bool(o['is_first']) for o in obs] == [True, False, False, False, True, False]
    assert [bool(o['is_last']) for o in obs] == [False, False, False, True, False, False]
    assert [int(o['count']) for o in obs] == [0, 1, 2, 3, 0, 1]
    # An explicit reset restarts the count too.
    env.step(dummy_action(reset=True))
    obs = [env.step(dummy_action()) for _ in range(3)]
    assert [bool(o['is_last']) for o in obs] == [False, False, True]


def test_time_limit_without_reset_continues_the_episode():
    env = wrappers.TimeLimit(Dummy('x', size=(4, 4), length=100), 2, reset=False)
    obs = [env.step(dummy_action()) for _ in range(6)]
    assert [bool(o['is_first']) for o in obs] == [True, False, False, True, False, False]
    assert [bool(o['is_last']) for o in obs] == [False, False, True, False, False, True]
    # The inner env never reset again: its counter keeps going.
    assert [int(o['count']) for o in obs] == [0, 1, 2, 3, 4, 5]


def test_discretize_action_maps_bins_to_linspace():
    space = elements.Space(np.float32, (2,), -1, 1)
    inner = ScriptedEnv(
        BASE_OBS, {'a': space, 'reset': elements.Space(bool)}, lambda i, a: base_obs()
    )
    env = wrappers.DiscretizeAction(inner, 'a', bins=5)
    exposed = env.act_space['a']
    assert (
        exposed.dtype == np.int32 and exposed.shape == (2,) and exposed.classes.tolist() == [5, 5]
    )
    env.step(act(a=np.array([0, 4], np.int32)))
    env.step(act(a=np.array([2, 3], np.int32)))
    np.testing.assert_allclose(inner.actions[0]['a'], [-1.0, 1.0])
    np.testing.assert_allclose(inner.actions[1]['a'], [0.0, 0.5])
    assert inner.actions[0]['a'].dtype == np.float32


def test_resize_image_nearest_neighbour():
    rows, cols = np.meshgrid(np.arange(4), np.arange(6), indexing='ij')
    image = np.stack([rows * 10 + cols] * 3, -1).astype(np.uint8)
    obs_space = {
        **BASE_OBS,
        'image': elements.Space(np.uint8, (4, 6, 3)),
        'small': elements.Space(np.uint8, (2, 2)),
        'same': elements.Space(np.uint8, (2, 3, 1)),
        'vec': elements.Space(np.float32, (5,)),
    }

    def make_obs(i, action):
        return {
            **base_obs(),
            'image': image,
            'small': np.array([[1, 2], [3, 4]], np.uint8),
            'same': np.ones((2, 3, 1), np.uint8),
            'vec': np.arange(5, dtype=np.float32),
        }

    inner = ScriptedEnv(obs_space, {'reset': elements.Space(bool)}, make_obs)
    env = wrappers.ResizeImage(inner, (2, 3))
    assert env.obs_space['image'].shape == (2, 3, 3)
    assert env.obs_space['small'].shape == (2, 3)
    assert env.obs_space['vec'].shape == (5,)
    obs = env.step(act())
    # Sampling at pixel centres picks source rows [1, 3] and columns [1, 3, 5].
    np.testing.assert_array_equal(obs['image'][..., 0], [[11, 13, 15], [31, 33, 35]])
    assert obs['image'].dtype == np.uint8 and obs['image'].shape == (2, 3, 3)
    # Upsampling two columns to three: centres 1/3, 1, 5/3 pick columns [0, 1, 1].
    np.testing.assert_array_equal(obs['small'], [[1, 2, 2], [3, 4, 4]])
    np.testing.assert_array_equal(obs['same'], np.ones((2, 3, 1)))
    np.testing.assert_array_equal(obs['vec'], np.arange(5))


def test_backward_return_discounts_past_rewards_and_resets():
    env = wrappers.BackwardReturn(Dummy('x', size=(4, 4), length=3), horizon=2)
    assert env.obs_space['bwreturn'].dtype == np.float32
    values = [float(env.step(dummy_action())['bwreturn']) for _ in range(6)]
    # Discount 1 - 1/2: rewards 0, 1, 1, 1 give 0, 1, 1.5, 1.75; then a new episode.
    assert values == [0.0, 1.0, 1.5, 1.75, 0.0, 1.0]


def test_add_obs_adds_constant():
    space = elements.Space(np.int32, (), 0, 10)
    env = wrappers.AddObs(Dummy('x', size=(4, 4)), 'task_id', np.int32(3), space)
    assert env.obs_space['task_id'] is space
    assert env.step(dummy_action())['task_id'] == 3
    with pytest.raises(KeyError, match='image'):
        wrappers.AddObs(Dummy('x'), 'image', 0, space)


class Flaky(embodied.Env):
    """Raises on the step numbered `crash_at` (counting from 0)."""

    built = 0

    def __init__(self, crash_at, error=ConnectionError):
        Flaky.built += 1
        self.crash_at = crash_at
        self.error = error
        self.steps = 0

    @property
    def obs_space(self):
        return BASE_OBS

    @property
    def act_space(self):
        return {'reset': elements.Space(bool)}

    def step(self, action):
        self.steps += 1
        if self.steps - 1 == self.crash_at:
            raise self.error('simulated crash')
        return base_obs(first=bool(action['reset']))


def test_restart_on_exception_recreates_env_and_resets():
    Flaky.built = 0
    env = wrappers.RestartOnException(
        lambda: Flaky(crash_at=1), ConnectionError, window=100, maxfails=1, wait=0
    )
    assert not env.step(act())['is_first']
    first = env.env
    obs = env.step(act())  # crashes; a fresh env answers with its reset observation
    assert obs['is_first'] and env.env is not first and Flaky.built == 2
    with pytest.raises(RuntimeError, match='crashed 2 times') as info:
        env.step(act())  # the new env crashes too: 2 crashes in the window > maxfails=1
    assert isinstance(info.value.__cause__, ConnectionError)


def test_restart_on_exception_ignores_other_exceptions():
    env = wrappers.RestartOnException(
        lambda: Flaky(crash_at=0, error=KeyError), ConnectionError, wait=0
    )
    with pytest.raises(KeyError):
        env.step(act())


def test_wrap_env_clips_normalizes_and_checks():
    class Recording(Dummy):
        def step(self, action):
            self.last = action
            return super().step(action)

    raw = Recording('x', size=(4, 4), length=5)
    env = embodied.wrap_env(raw)
    assert isinstance(env, wrappers.ClipAction)
    assert env.act_space['act_cont'].dtype == np.float32
    np.testing.assert_array_equal(env.act_space['act_cont'].low, -np.ones(6))
    disc = env.act_space['act_disc']
    assert disc.dtype == np.int32 and disc.shape == () and (disc.low, disc.high) == (0, 5)
    env.step(dummy_action())
    cont = np.array([2.0, -3.0, 0.5, 0.0, 1.0, -1.0], np.float32)
    env.step({**dummy_action(), 'act_disc': np.int32(4), 'act_cont': cont})
    # Unbounded dims are clipped to [-1, 1] and then passed through unscaled, as in
    # the reference (the exposed space says [-1, 1]).
    np.testing.assert_array_equal(raw.last['act_cont'], np.clip(cont, -1, 1))
    assert raw.last['act_disc'] == 4
    with pytest.raises(ValueError, match="Action key 'act_disc'"):
        env.step({**dummy_action(), 'act_disc': np.int32(5)})


def test_check_spaces_accepts_strings_of_any_length():
    obs_space = {**BASE_OBS, 'text': elements.Space(str)}
    inner = ScriptedEnv(
        obs_space,
        {'reset': elements.Space(bool)},
        lambda i, a: {**base_obs(), 'text': 'hello' if i == 0 else 3},
    )
    env = wrappers.CheckSpaces(wrappers.UnifyDtypes(inner))
    assert env.step(act())['text'] == 'hello'
    with pytest.raises(ValueError, match="Observation key 'text'"):
        wrappers.CheckSpaces(inner).step(act())
