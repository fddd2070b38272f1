"""End to end: runs on real suites with the random agent (the debug agent's training is tested
on the dummy task, whose image and vector cover what these suites feed the model): Atari's
single-channel frames reach the replay, and Crafter logs its achievements as episode
statistics."""

import helpers
import numpy as np

from dreamerv3 import main
from embodied.run import train


def test_atari_frames_reach_the_replay_and_the_agent_spaces(tmp_path):
    flags = ['--random_agent', 'True', '--run.envs', '1', '--task', 'atari_pong']
    flags += ['--env.atari.size', '64', '64', '--run.steps', '160']
    config = helpers.config(*flags, logdir=tmp_path)
    agent = main.make_agent(config)
    assert agent.obs_space['image'].shape == (64, 64, 1)
    assert agent.act_space['action'].discrete
    train.train(config, lambda _: agent)
    rows = helpers.metrics(tmp_path)
    assert max(row['step'] for row in rows) >= 160
    chunks = sorted((tmp_path / 'replay').glob('*.npz'))
    assert chunks
    with np.load(chunks[0]) as data:
        assert data['image'].shape[1:] == (64, 64, 1) and data['image'].dtype == np.uint8


def test_crafter_episodes_log_their_achievements(tmp_path):
    flags = ['--task', 'crafter_reward', '--env.crafter.logs', 'True', '--random_agent', 'True']
    flags += ['--run.envs', '1', '--run.steps', '300', '--env.crafter.size', '32', '32']
    train.train(helpers.config(*flags, logdir=tmp_path), main.make_agent)
    keys = helpers.keys(tmp_path)
    assert any(k.startswith('epstats/log/achievement_') for k in keys), sorted(keys)
    assert list((tmp_path / 'replay').glob('*.npz'))
