"""End to end: runs on real suites. The debug agent trains on Atari's single-channel frames;
Crafter, whose 64x64x3 frames the dummy task's image already covers, runs with the random agent
and logs its achievements as episode statistics."""

import helpers

from dreamerv3 import main
from embodied.run import train


def test_debug_agent_trains_on_atari(tmp_path):
    # Only the train step and the policy compile: precompiling and reports are off.
    flags = ['--jax.precompile', 'False', '--run.report_every', '0', '--run.envs', '1']
    flags += ['--task', 'atari_pong', '--env.atari.size', '64', '64', '--run.steps', '160']
    config = helpers.config(*flags, logdir=tmp_path)
    with helpers.kept_jax_settings():
        train.train(config, main.make_agent)
    rows = helpers.metrics(tmp_path)
    keys = set().union(*rows)
    assert 'train/loss/image' in keys and 'train/loss/policy' in keys, sorted(keys)
    assert max(row['step'] for row in rows) >= 160
    assert list((tmp_path / 'replay').glob('*.npz'))


def test_crafter_episodes_log_their_achievements(tmp_path):
    flags = ['--task', 'crafter_reward', '--env.crafter.logs', 'True', '--random_agent', 'True']
    flags += ['--run.envs', '1', '--run.steps', '300', '--env.crafter.size', '32', '32']
    train.train(helpers.config(*flags, logdir=tmp_path), main.make_agent)
    keys = helpers.keys(tmp_path)
    assert any(k.startswith('epstats/log/achievement_') for k in keys), sorted(keys)
    assert list((tmp_path / 'replay').glob('*.npz'))
