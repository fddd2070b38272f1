"""The replay memory estimate printed at the start of a training run."""

import types

import elements
import numpy as np
import pytest

import embodied
from embodied.run import replay_memory

S = elements.Space
SPACES = {
    'image': S(np.uint8, (64, 64, 3)),
    'reward': S(np.float32),
    'is_first': S(bool),
    'action': S(np.int32, (), 0, 4),
    'consec': S(np.int32),
    'stepid': S(np.uint8, 20),
    'dyn/deter': S(np.uint16, 8),
    'dyn/stoch': S(np.uint8, 2, 0, 4),
}
# 64 * 64 * 3 image bytes, reward 4, is_first 1, action 4, stepid 20, deter 16, stoch 2.
STEP = 12288 + 4 + 1 + 4 + 20 + 16 + 2


def agent(spaces=SPACES):
    return types.SimpleNamespace(spaces=dict(spaces))


def replay(capacity):
    return types.SimpleNamespace(capacity=capacity)


def test_step_bytes_count_every_stored_array_but_the_stream_keys():
    spaces = replay_memory.stored_spaces(agent({**SPACES, 'log/x': S(np.float32, 100)}))
    assert 'consec' not in spaces and 'log/x' not in spaces
    assert replay_memory.step_bytes(spaces) == STEP


def test_agents_without_extra_spaces_store_observations_and_actions():
    obs = {'image': S(np.uint8, (4, 4, 3)), 'is_first': S(bool)}
    act = {'action': S(np.float32, 2)}
    spaces = replay_memory.stored_spaces(embodied.RandomAgent(obs, act))
    assert replay_memory.step_bytes(spaces) == 48 + 1 + 8


def test_report_prints_the_estimate_without_a_warning_when_it_fits(capsys):
    needed = replay_memory.report(agent(), replay(1000), available=2**40)
    out = capsys.readouterr().out
    assert needed == STEP * 1000
    assert f'{STEP:,} bytes per step x 1,000 steps' in out and '11.8 MiB' in out
    assert 'Warning' not in out


def test_report_warns_with_a_replay_size_that_fits(capsys):
    available = 3 * 2**30
    needed = replay_memory.report(agent(), replay(5_000_000), available=available)
    out = capsys.readouterr().out
    assert needed == STEP * 5_000_000 > available
    assert 'Warning' in out and '57.4 GiB' in out
    size = int(out.split('--replay.size ')[1].split()[0])
    assert size * STEP <= replay_memory.BUDGET * available
    assert size * STEP > 0.7 * replay_memory.BUDGET * available  # not needlessly small


def test_an_eval_replay_counts_towards_the_estimate_and_the_fix(capsys):
    available = 2**30
    needed = replay_memory.report(agent(), replay(1_000_000), replay(100_000), available=available)
    assert needed == STEP * 1_100_000
    size = int(capsys.readouterr().out.split('--replay.size ')[1].split()[0])
    assert 1.1 * size * STEP <= replay_memory.BUDGET * available


@pytest.mark.parametrize(
    'stepbytes, available, expected',
    [(1000, 10**9, 800_000), (1000, 1234567890, 980_000), (1000, 50_000, 40), (10**9, 10, 1)],
)
def test_suggested_sizes_are_round_and_fit(stepbytes, available, expected):
    assert replay_memory.suggest_size(stepbytes, available) == expected


def test_a_replay_without_capacity_has_no_estimate(capsys):
    assert replay_memory.report(agent(), replay(None)) == 0
    assert capsys.readouterr().out == ''
