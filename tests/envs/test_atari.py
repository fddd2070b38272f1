"""Atari through ale-py; `is_terminal` is the game-over flag, not `is_last` as in the reference."""

import threading

import numpy as np
import pytest

import embodied
from embodied.envs.atari import GRAY_WEIGHTS, Atari

NOOP, FIRE = 0, 1  # indices in both the full and Breakout's minimal action set


def act(action, reset=False):
    return {'action': np.int32(action), 'reset': np.bool_(reset)}


def play(env, actions, until_last=False):
    """Reset, then apply the actions; return all observations (reset included)."""
    trajectory = [env.step(act(0, reset=True))]
    for action in actions:
        trajectory.append(env.step(act(action)))
        if until_last and trajectory[-1]['is_last']:
            break
    return trajectory


def test_preset_spaces():
    atari = Atari('pong', size=(96, 96), gray=True, actions='all', sticky=True, noops=30)
    assert atari.obs_space['image'].shape == (96, 96, 1)
    assert atari.obs_space['image'].dtype == np.uint8
    assert atari.act_space['action'].classes == 18
    atari100k = Atari('pong', size=(64, 64), gray=False, actions='needed', sticky=False)
    assert atari100k.obs_space['image'].shape == (64, 64, 3)
    assert atari100k.act_space['action'].classes == 6
    assert atari100k.ale.getFloat('repeat_action_probability') == 0.0
    assert atari.ale.getFloat('repeat_action_probability') == 0.25


def test_random_steps_through_wrap_env(rollout):
    env = embodied.wrap_env(Atari('pong', size=(64, 64), noops=30, seed=0))
    trajectory = rollout(env, 300)
    assert trajectory[0]['is_first']
    images = np.stack([obs['image'] for obs in trajectory])
    assert images.shape == (300, 64, 64, 1) and images.std() > 0


def test_length_limit_is_truncation_not_termination():
    env = Atari('pong', size=(64, 64), repeat=4, length=40, noops=0, seed=0)
    trajectory = play(env, [NOOP] * 10)
    assert [bool(o['is_last']) for o in trajectory[1:]] == [False] * 9 + [True]
    assert not any(o['is_terminal'] for o in trajectory)
    assert env.step(act(NOOP))['is_first']  # an ended episode resets on the next step


def test_game_over_is_terminal_and_last():
    env = Atari('breakout', size=(64, 64), actions='needed', sticky=False, noops=0, seed=0)
    trajectory = play(env, [FIRE] * 1000, until_last=True)
    ends = [i for i, o in enumerate(trajectory) if o['is_last']]
    assert ends, 'a FIRE-only policy loses all Breakout lives within 1000 steps'
    end = trajectory[ends[0]]
    assert end['is_terminal'] and env.ale.lives() == 0
    assert not any(o['is_terminal'] for o in trajectory[: ends[0]])  # lives unused


def test_lives_discount_marks_terminal_without_ending():
    env = Atari(
        'breakout', size=(64, 64), actions='needed', lives='discount', sticky=False, noops=0, seed=0
    )
    trajectory = play(env, [FIRE] * 1000, until_last=True)
    end = next(i for i, o in enumerate(trajectory) if o['is_last'])
    terminals = [i for i, o in enumerate(trajectory[: end + 1]) if o['is_terminal']]
    assert len(terminals) == 5  # four lost lives plus the game over
    assert not any(trajectory[i]['is_last'] for i in terminals[:-1])


def test_lives_reset_ends_the_episode_on_a_lost_life():
    env = Atari(
        'breakout', size=(64, 64), actions='needed', lives='reset', sticky=False, noops=0, seed=0
    )
    trajectory = play(env, [FIRE] * 1000, until_last=True)
    end = next(o for o in trajectory if o['is_last'])
    assert end['is_terminal'] and env.ale.lives() == 4


def test_reset_fills_all_pooling_buffers_with_the_current_screen():
    env = Atari('pong', size=(210, 160), gray=False, noops=5, pooling=3, seed=0)
    obs = env.step(act(0, reset=True))
    screen = env.ale.getScreenRGB()
    for buffer in env.buffers:
        np.testing.assert_array_equal(buffer, screen)
    np.testing.assert_array_equal(obs['image'], screen)  # no resize at the native size


def test_max_pooling_over_the_last_two_frames():
    env = Atari('pong', size=(210, 160), gray=False, noops=0, sticky=False, seed=0)
    env.step(act(0, reset=True))
    frames = []
    original = env._capture

    def capture():
        original()
        frames.append(env.buffers[0].copy())

    env._capture = capture
    for _ in range(30):
        obs = env.step(act(FIRE))
    assert len(frames) == 60  # two captures per step with repeat 4 and pooling 2
    np.testing.assert_array_equal(obs['image'], np.maximum(frames[-1], frames[-2]))


def test_gray_conversion_matches_weights_on_the_color_frame():
    color = Atari('pong', size=(64, 64), gray=False, noops=10, seed=3)
    gray = Atari('pong', size=(64, 64), gray=True, noops=10, seed=3)
    actions = [2, 3, 2, 0, 5, 4] * 5
    for a, b in zip(play(color, actions), play(gray, actions)):
        expected = (a['image'] * GRAY_WEIGHTS).sum(-1).astype(np.uint8)
        np.testing.assert_array_equal(b['image'][..., 0], expected)


def test_same_seed_same_trajectory_with_sticky_actions():
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 18, 150)
    runs = []
    for _ in range(2):
        env = Atari('pong', size=(64, 64), sticky=True, noops=30, seed=7)
        runs.append(play(env, actions))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a['image'], b['image'])
        assert a['reward'] == b['reward']


def test_clip_reward_and_aliases():
    env = Atari('james_bond', size=(64, 64), clip_reward=True, seed=0)
    trajectory = play(env, [FIRE] * 50)
    assert {float(o['reward']) for o in trajectory} <= {-1.0, 0.0, 1.0}


def test_invalid_options_and_games():
    with pytest.raises(ValueError, match='lives'):
        Atari('pong', lives='sometimes')
    with pytest.raises(ValueError, match="Unknown Atari game 'nosuchgame'.*pong"):
        Atari('nosuchgame')
    env = Atari('pong', actions='needed')
    env.step(act(0, reset=True))
    with pytest.raises(ValueError, match='outside'):
        env.step(act(6))


def test_rom_path_override(monkeypatch, tmp_path):
    monkeypatch.setenv('ALE_ROM_PATH', str(tmp_path))
    with pytest.raises(FileNotFoundError, match='ALE_ROM_PATH'):
        Atari('pong')


def test_concurrent_construction_in_threads():
    envs, errors = [], []

    def build():
        try:
            envs.append(Atari('pong', size=(64, 64), seed=len(envs)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(envs) == 4
    for env in envs:
        assert env.step(act(0, reset=True))['is_first']
