"""Crafter. Crafter is not bit-deterministic across runs, so no seed test."""

import json

import numpy as np
import pytest

import embodied
from embodied.envs.crafter import Crafter

LENGTH = 60


@pytest.fixture(scope='module')
def episodes(tmp_path_factory, rollout):
    """Two full episodes of a logging env driven by random actions through wrap_env."""
    logdir = tmp_path_factory.mktemp('crafter') / 'env0'
    env = Crafter('reward', logs=True, logdir=logdir, length=LENGTH, seed=0)
    spaces = dict(env.obs_space), dict(env.act_space)
    trajectory = rollout(embodied.wrap_env(env), 2 * (LENGTH + 1))
    return spaces, trajectory, logdir


def test_spaces(episodes):
    (obs_space, act_space), _, _ = episodes
    assert obs_space['image'].shape == (64, 64, 3) and obs_space['image'].dtype == np.uint8
    assert obs_space['log/reward'].dtype == np.float32
    achievements = [k for k in obs_space if k.startswith('log/achievement_')]
    assert len(achievements) == 22 and 'log/achievement_collect_wood' in achievements
    assert all(obs_space[k].dtype == np.int32 for k in achievements)
    assert act_space['action'].classes == 17


def test_time_limit_is_last_but_not_terminal(episodes):
    _, trajectory, _ = episodes
    lasts = [i for i, obs in enumerate(trajectory) if obs['is_last']]
    assert lasts == [LENGTH, 2 * LENGTH + 1]
    # A random agent does not die within 60 steps, so the episodes end by the time limit.
    assert not any(obs['is_terminal'] for obs in trajectory)


def test_log_keys_on_reset_and_steps(episodes):
    _, trajectory, _ = episodes
    first = trajectory[0]
    assert first['log/reward'] == 0
    assert all(first[k] == 0 for k in first if k.startswith('log/achievement_'))
    # With the reward task, the agent's reward is Crafter's own reward.
    for obs in trajectory:
        assert obs['reward'] == obs['log/reward']


def test_stats_file(episodes):
    _, trajectory, logdir = episodes
    lines = (logdir / 'stats.jsonl').read_text().splitlines()
    assert len(lines) == 2
    stats = [json.loads(line) for line in lines]
    assert [s['episode'] for s in stats] == [1, 2]
    assert all(s['length'] == LENGTH for s in stats)
    reward = sum(float(o['reward']) for o in trajectory[1 : LENGTH + 1])
    assert stats[0]['reward'] == pytest.approx(round(reward, 1), abs=1e-6)
    achievements = {k for k in stats[0] if k.startswith('achievement_')}
    assert len(achievements) == 22
    last = trajectory[LENGTH]
    assert all(stats[0][k] == last[f'log/{k}'] for k in achievements)


def test_noreward_task_hides_the_reward_but_logs_it():
    env = Crafter('noreward', length=20, seed=1)
    assert 'log/achievement_collect_wood' not in env.obs_space
    obs = env.step({'action': np.int32(0), 'reset': np.bool_(True)})
    for _ in range(20):
        obs = env.step({'action': np.int32(5), 'reset': np.bool_(False)})
        assert obs['reward'] == 0
    assert obs['is_last']


def test_unknown_task():
    with pytest.raises(ValueError, match='sparse'):
        Crafter('sparse')
