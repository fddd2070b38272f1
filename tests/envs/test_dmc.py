"""DeepMind Control Suite and LocoNav on MuJoCo."""

import numpy as np
import pytest

import embodied
from embodied.envs import registry


def act(env, action=None, reset=False):
    shape = env.act_space['action'].shape
    action = np.zeros(shape, np.float32) if action is None else action
    return {'action': np.asarray(action, np.float32), 'reset': np.bool_(reset)}


@pytest.fixture(scope='module')
def dmc():
    return registry.load('dmc')


def forbid_rendering(env):
    def render(*args, **kwargs):
        raise AssertionError('rendered although no image is used')

    env.physics.render = render


def test_proprio_spaces_without_rendering(dmc, rollout):
    inner = dmc('walker_walk', image=False, seed=0)
    forbid_rendering(inner)
    assert set(inner.obs_space) == {
        'reward',
        'is_first',
        'is_last',
        'is_terminal',
        'orientations',
        'height',
        'velocity',
    }
    assert inner.obs_space['orientations'].shape == (14,)
    assert inner.act_space['action'].shape == (6,)
    env = embodied.wrap_env(inner)
    assert env.obs_space['velocity'].dtype == np.float32
    np.testing.assert_array_equal(env.act_space['action'].low, -np.ones(6))
    trajectory = rollout(env, 300)
    assert all(o['orientations'].dtype == np.float32 for o in trajectory)
    assert not any(o['is_last'] for o in trajectory)


def test_time_limit_is_truncation_with_action_repeat(dmc):
    env = dmc('cartpole_balance', image=False, repeat=8, seed=0)
    forbid_rendering(env)
    env.step(act(env, reset=True))
    flags = [env.step(act(env)) for _ in range(125)]  # 1000 physics steps / 8
    assert [bool(o['is_last']) for o in flags] == [False] * 124 + [True]
    assert not any(o['is_terminal'] for o in flags)
    assert env.step(act(env))['is_first']


def test_same_seed_same_observations(dmc):
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 1)).astype(np.float32)
    runs = []
    for _ in range(2):
        env = dmc('cartpole_swingup', image=False, seed=3)
        runs.append([env.step(act(env, reset=True))] + [env.step(act(env, a)) for a in actions])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a['position'], b['position'])
        assert a['reward'] == b['reward']


def test_vision_render_with_egl(dmc):
    env = dmc('cartpole_balance', proprio=False, image=True, size=(24, 32), seed=0)
    assert set(env.obs_space) == {'reward', 'is_first', 'is_last', 'is_terminal', 'image'}
    obs = env.step(act(env, reset=True))
    assert obs['image'].shape == (24, 32, 3) and obs['image'].dtype == np.uint8
    assert obs['image'].std() > 0
    obs = env.step(act(env, [1.0]))
    assert set(obs) == set(env.obs_space)


def test_log_image_is_opt_in(dmc):
    assert 'log/image' not in dmc('cartpole_balance', image=False).obs_space
    env = dmc('cartpole_balance', image=False, log_image=True, size=(8, 8))
    assert env.obs_space['log/image'].shape == (8, 8, 3)
    assert env.step(act(env, reset=True))['log/image'].shape == (8, 8, 3)


def test_render_failure_names_the_gl_options(dmc):
    env = dmc('cartpole_balance', size=(8, 8))

    def broken(*args, **kwargs):
        raise RuntimeError('cannot create an OpenGL context')

    env.physics.render = broken
    with pytest.raises(RuntimeError) as info:
        env.step(act(env, reset=True))
    message = str(info.value)
    assert 'MUJOCO_GL' in message and 'osmesa' in message and 'OpenGL context' in message


def test_non_finite_actions_are_rejected(dmc):
    env = dmc('cartpole_balance', image=False)
    env.step(act(env, reset=True))
    with pytest.raises(ValueError, match='non-finite'):
        env.step(act(env, [np.nan]))


def test_task_names(dmc):
    cup = dmc('cup_catch', image=False)
    assert cup.act_space['action'].shape == (2,)
    with pytest.raises(ValueError, match='walker_walk'):
        dmc('walker_fly', image=False)


def test_loconav_ant_maze(rollout):
    inner = registry.load('loconav')('ant_maze_s', seed=0)
    assert inner.obs_space['log/coverage'].dtype == np.int32
    assert inner.obs_space['walker_joints_pos'].shape == (8,)
    assert 'image' not in inner.obs_space and 'log/image' not in inner.obs_space
    env = embodied.wrap_env(inner)
    trajectory = rollout(env, 25)
    coverage = [int(o['log/coverage']) for o in trajectory]
    assert coverage[0] == 1 and coverage == sorted(coverage)


def test_loconav_quadruped_and_names():
    loconav = registry.load('loconav')
    env = loconav('quadruped_empty_25hz', seed=0, log_image=True, size=(16, 16))
    assert env.act_space['action'].shape == (12,)
    assert env.obs_space['walker_joints_pos'].shape == (16,)
    assert env.obs_space['log/image'].shape == (16, 16, 3)
    obs = env.step({'action': np.zeros(12, np.float32), 'reset': np.bool_(True)})
    for _ in range(5):
        obs = env.step({'action': np.ones(12, np.float32), 'reset': np.bool_(False)})
    assert obs['walker_torso_global_pos'][2] > 0  # standing on the floor, not falling through
    with pytest.raises(ValueError, match='maze_s'):
        loconav('ant_maze_q')
    with pytest.raises(ValueError, match='walker'):
        loconav('spider_maze_s')


@pytest.mark.parametrize('again, rewards', [(False, [1.0] * 4), (True, [1.0, 0.0, 0.0, 0.0])])
def test_loconav_goal_reward(again, rewards):
    env = registry.load('loconav')('ant_maze_s', seed=0, again=again)
    action = np.zeros(8, np.float32)
    env.step({'action': action, 'reset': np.bool_(True)})
    task, physics = env._env._dmenv.task, env._env.physics
    # Drop the walker onto the target: without `again` the reward mirrors the activated target
    # on every later step; with it, the walker respawns elsewhere after one reward.
    env._walker.set_pose(physics, position=np.array(task._target_position) + [0, 0, 0.5])
    trajectory = [env.step({'action': action, 'reset': np.bool_(False)}) for _ in rewards]
    assert [float(o['reward']) for o in trajectory] == rewards
    assert not any(o['is_last'] for o in trajectory)
