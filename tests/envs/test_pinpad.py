"""PinPad: layouts, movement, sequence reward, countdown and rendering."""

import numpy as np
import pytest

import embodied
from embodied.envs.pinpad import LAYOUTS, PinPad

STAY, DOWN, UP, RIGHT, LEFT = range(5)  # +y is down in the image


def act(action, reset=False):
    return {'action': np.int32(action), 'reset': np.bool_(reset)}


def start(task='three', player=None, **kwargs):
    env = PinPad(task, **kwargs)
    obs = env.step(act(0, reset=True))
    if player is not None:
        env.player = player
    return env, obs


def cell(image, x, y):
    """The colour of grid cell (x, y) in the 64x64 image (4x4 pixels per cell)."""
    block = image[4 * y : 4 * y + 4, 4 * x : 4 * x + 4]
    assert (block == block[0, 0]).all()
    return tuple(int(c) for c in block[0, 0])


def test_spaces():
    env = PinPad('three')
    assert env.obs_space['image'].shape == (64, 64, 3)
    assert env.obs_space['image'].dtype == np.uint8
    assert env.act_space['action'].dtype == np.int32
    assert env.act_space['action'].classes == 5


@pytest.mark.parametrize(
    'task, pads',
    [
        ('three', '123'),
        ('four', '1234'),
        ('five', '12345'),
        ('six', '123456'),
        ('seven', '1234567'),
        ('eight', '12345678'),
    ],
)
def test_layouts_and_targets(task, pads):
    env = PinPad(task)
    assert env.layout.shape == (16, 14)
    assert env.target == tuple(pads)
    assert len(LAYOUTS[task]) == 14 and all(len(row) == 16 for row in LAYOUTS[task])


def test_unknown_task():
    with pytest.raises(ValueError, match='nine'):
        PinPad('nine')


def test_rendering_hand_computed():
    env, _ = start(player=(5, 1))
    image = env.render()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert cell(image, 0, 0) == (192, 192, 192)  # wall
    assert cell(image, 5, 1) == (0, 0, 0)  # player
    assert cell(image, 6, 6) == (255, 255, 255)  # floor
    # Pads the player is not on: 10% colour + 90% white, truncated to uint8.
    assert cell(image, 1, 1) == (255, 229, 229)  # pad 1 (red)
    assert cell(image, 6, 9) == (229, 255, 229)  # pad 2 (green)
    assert cell(image, 11, 1) == (229, 229, 255)  # pad 3 (blue)
    # The bottom two rows are the grey status strip (empty sequence).
    assert (image[56:] == 192).all()


def test_walls_block_movement():
    env, _ = start(player=(1, 5))  # floor cell next to the left wall
    env.step(act(LEFT))
    assert env.player == (1, 5)
    env.step(act(RIGHT))
    assert env.player == (2, 5)


def test_sequence_reward_countdown_and_respawn():
    env, _ = start(player=(5, 1))
    obs = env.step(act(LEFT))  # onto pad 1
    assert tuple(env.sequence) == ('1',)
    image = obs['image']
    assert cell(image, 2, 1) == (255, 0, 0)  # the occupied pad is drawn in full colour
    assert cell(image, 1, 14) == (255, 0, 0)  # status strip shows the visited pad
    for _ in range(8):
        env.step(act(DOWN))  # over pad 1 again (no repeat) to row 9
    assert tuple(env.sequence) == ('1',) and env.player == (4, 9)
    env.step(act(RIGHT))
    obs = env.step(act(RIGHT))  # onto pad 2
    assert tuple(env.sequence) == ('1', '2') and obs['reward'] == 0
    for _ in range(5):
        env.step(act(UP))
    rewards = []
    for _ in range(5):
        obs = env.step(act(RIGHT))
        rewards.append(float(obs['reward']))
    assert rewards == [0, 0, 0, 0, 10]  # the last move enters pad 3
    assert env.countdown == 10
    assert cell(obs['image'], 8, 6) == (223, 255, 223)  # countdown background
    for _ in range(9):
        obs = env.step(act(STAY))
        assert obs['reward'] == 0  # no reward again while the countdown runs
    assert env.countdown == 1 and len(env.sequence) == 3
    obs = env.step(act(STAY))
    assert env.countdown == 0 and len(env.sequence) <= 1  # respawned, sequence cleared
    assert cell(obs['image'], 8, 6) in ((255, 255, 255), (0, 0, 0))


def test_episode_length_is_truncation():
    env, obs = start(length=5)
    assert obs['is_first'] and not obs['is_last']
    flags = [env.step(act(STAY)) for _ in range(5)]
    assert [bool(o['is_last']) for o in flags] == [False] * 4 + [True]
    assert not any(o['is_terminal'] for o in flags)
    assert env.step(act(STAY))['is_first']


def test_seed_determines_spawns():
    first = PinPad('four', seed=3)
    second = PinPad('four', seed=3)
    for _ in range(5):
        a = first.step(act(0, reset=True))
        b = second.step(act(0, reset=True))
        assert first.player == second.player
        np.testing.assert_array_equal(a['image'], b['image'])
    players = {start('four', seed=seed)[0].player for seed in range(10)}
    assert len(players) > 1  # different seeds spawn in different places


def test_random_steps_through_wrap_env(rollout):
    env = embodied.wrap_env(PinPad('five', length=150, seed=0))
    trajectory = rollout(env, 320)
    lasts = [i for i, obs in enumerate(trajectory) if obs['is_last']]
    assert lasts == [150, 301]
