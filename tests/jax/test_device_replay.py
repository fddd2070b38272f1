"""The device replay: windows with the host replay's semantics, context written back by position."""

import elements
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from embodied.jax import device_replay as dr

pytestmark = pytest.mark.pinned

SPACES = {
    'value': elements.Space(np.int32),
    'is_first': elements.Space(bool),
    'is_last': elements.Space(bool),
    'deter': elements.Space(np.float32, (2,)),
}


def filled(lay, steps, episode=5):
    """A replay after `steps` steps; `value` is 1000 * env + step, episodes of `episode` steps."""
    replay = dr.init(SPACES, lay)
    add = jax.jit(lambda r, i, s: dr.add(r, lay, i, s))
    envs = np.arange(lay.envs)
    for index in range(steps):
        step = {
            'value': 1000 * envs + index,
            'is_first': np.full(lay.envs, index % episode == 0),
            'is_last': np.full(lay.envs, index % episode == episode - 1),
            'deter': np.zeros((lay.envs, 2), np.float32),
        }
        replay = add(replay, index, step)
    return replay


def draw(replay, lay, steps, batch, seed=0):
    with jax.transfer_guard('allow'):
        key = jax.random.PRNGKey(seed)
        replay, rows, window = jax.jit(
            lambda r, k: dr.sample(r, lay, steps, k, batch), static_argnums=()
        )(replay, key)
    return replay, jax.device_get(rows), jax.device_get(window)


def test_windows_are_items_the_host_replay_would_hold():
    lay = dr.layout(envs=2, length=4, capacity=12, online=False)  # 6 items per env
    steps = 20
    replay = filled(lay, steps)
    _, (envs, starts), window = draw(replay, lay, steps, batch=400)
    # After 20 steps an env holds the items that start at steps 11 to 16 (the last 6).
    assert set(starts.tolist()) == set(range(11, 17))
    assert set(envs.tolist()) == {0, 1}
    expected = 1000 * envs[:, None] + starts[:, None] + np.arange(4)[None]
    np.testing.assert_array_equal(window['value'], expected)
    # A row starts an episode; an episode cut off by the window's end is closed where the
    # next one starts, as the host replay's sampling does.
    assert window['is_first'][:, 0].all()
    cut = window['is_first'][:, 1:]
    assert (window['is_last'][:, :-1] >= cut).all()
    stepid = window['stepid']
    assert stepid.shape == (400, 4, 20) and stepid.dtype == np.uint8
    np.testing.assert_array_equal(stepid[..., 3], envs[:, None].repeat(4, 1))
    np.testing.assert_array_equal(stepid[..., 19], expected % 1000)


def test_no_window_reads_an_unwritten_step():
    lay = dr.layout(envs=3, length=4, capacity=300, online=False)
    for steps in (4, 5, 9):
        replay = filled(lay, steps)
        _, (_, starts), window = draw(replay, lay, steps, batch=200, seed=steps)
        assert starts.min() >= 0 and starts.max() <= steps - 4
        assert (window['value'] % 1000 < steps).all()
        # Unwritten slots hold zeros: step 0 of env 0 is the only true zero.
        assert ((window['value'] == 0) <= (starts[:, None] == 0)).all()


def test_online_items_come_first_once_each_in_arrival_order():
    lay = dr.layout(envs=2, length=3, capacity=60, online=True)
    # As in the host replay, the items that start at steps 1, 4, 7 of both envs are queued
    # in the order they completed (step 0 precedes the first queued item).
    steps = 10
    replay = filled(lay, steps)
    replay, (envs, starts), _ = draw(replay, lay, steps, batch=4)
    assert list(zip(envs.tolist(), starts.tolist())) == [(0, 1), (1, 1), (0, 4), (1, 4)]
    replay, (envs, starts), _ = draw(replay, lay, steps, batch=4, seed=1)
    assert list(zip(envs.tolist(), starts.tolist()))[:2] == [(0, 7), (1, 7)]
    # The queue is drained: the rest of the batch is uniform over the items.
    replay, (envs, starts), _ = draw(replay, lay, steps, batch=64, seed=2)
    assert len(set(starts.tolist())) > 3


def test_written_context_lands_at_the_sampled_positions():
    lay = dr.layout(envs=2, length=4, capacity=40, online=False)
    replay = filled(lay, 12)
    rows = (jnp.array([1, 0]), jnp.array([3, 5]))
    # The train step returns the latents of the steps after the first `offset` of each row.
    values = {'deter': jnp.arange(2 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 2) + 1}
    with jax.transfer_guard('allow'):
        replay = jax.device_get(dr.write(replay, lay, rows, 1, values))
    deter = replay['data']['deter']
    np.testing.assert_array_equal(deter[1, 4:7], values['deter'][0])
    np.testing.assert_array_equal(deter[0, 6:9], values['deter'][1])
    assert deter[1, :4].sum() == 0 and deter[0, :6].sum() == 0 and deter[:, 9:].sum() == 0


@pytest.mark.parametrize('online', [False, True])
def test_layout_sizes_follow_the_host_capacity(online):
    lay = dr.layout(envs=4, length=10, capacity=1000, online=online)
    assert lay.items == 250 and lay.steps == 259
    assert dr.nbytes(SPACES, lay) == (4 + 1 + 1 + 8) * 4 * 259
