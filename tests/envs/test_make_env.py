"""The config's `env.<suite>` blocks construct each installable suite through make_env."""

import numpy as np
import pytest

from dreamerv3 import config as configlib
from embodied.envs import registry

CASES = [
    (['--task', 'atari_pong'], (96, 96, 1), 18),
    (['--configs', 'atari100k'], (64, 64, 3), 6),
    (['--configs', 'crafter'], (64, 64, 3), 17),
    (['--configs', 'dmc_proprio'], None, None),
    (['--configs', 'dmc_vision'], (64, 64, 3), None),
    (['--configs', 'loconav', '--task', 'loconav_ant_maze_s'], None, None),
    (['--task', 'gym_CartPole-v1'], None, 2),
    (['--task', 'pinpad_four'], (64, 64, 3), 5),
    (['--configs', 'bsuite', '--task', 'bsuite_catch/0'], None, 3),
    (['--task', 'dummy_disc'], (64, 64, 3), None),
]


@pytest.mark.parametrize('argv, image, classes', CASES, ids=[' '.join(c[0]) for c in CASES])
def test_make_env_from_presets(tmp_path, argv, image, classes):
    config, _ = configlib.parse([*argv, '--logdir', str(tmp_path)], environ={})
    env = registry.make_env(config, 0)
    try:
        act = {k: np.zeros(v.shape, v.dtype) for k, v in env.act_space.items()}
        act['reset'] = np.bool_(True)
        obs = env.step(act)
        assert obs['is_first']
        if image:
            assert obs['image'].shape == image
        else:
            assert 'image' not in obs or obs['image'].ndim == 1
        if classes:
            assert env.act_space['action'].classes == classes
        act['reset'] = np.bool_(False)
        assert not env.step(act)['is_first']
    finally:
        env.close()


def test_crafter_use_logdir_writes_into_the_env_folder(tmp_path):
    config, _ = configlib.parse(
        ['--configs', 'crafter', '--env.crafter.use_logdir', 'True', '--logdir', str(tmp_path)],
        environ={},
    )
    registry.make_env(config, 3)
    assert (tmp_path / 'env3').is_dir()
