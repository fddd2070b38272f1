"""Normalize (return normalisation statistics) and SlowModel (target network copies)."""

import jax.numpy as jnp
import ninjax as nj
import numpy as np
import pytest

from embodied.jax import nets, utils

pytestmark = [pytest.mark.pinned, pytest.mark.usefixtures('float32_compute')]


def steps(norm, batches):
    """Feed batches through norm(x, update=True); return the state and every (offset, scale)."""
    fn = lambda x: norm(x, update=True)
    state = nj.pure(lambda: norm.stats())({}, create=True)[0]
    results = []
    for x in batches:
        state, out = nj.pure(fn)(state, jnp.asarray(x, jnp.float32))
        results.append(tuple(float(v) for v in out))
    return state, results


def test_percentile_ema_two_steps_by_hand():
    norm = utils.Normalize('perc', rate=0.5, limit=1.0, debias=False, name='retnorm')
    x1 = np.arange(1, 102)  # 101 values: P5 = 6, P95 = 96 (linear interpolation)
    x2 = np.arange(0, 11)  # 11 values: P5 = 0.5, P95 = 9.5
    state, results = steps(norm, [x1, x2])
    lo1, hi1 = 0.5 * 6, 0.5 * 96
    lo2, hi2 = 0.5 * lo1 + 0.5 * 0.5, 0.5 * hi1 + 0.5 * 9.5
    np.testing.assert_allclose(results[0], (lo1, hi1 - lo1), rtol=1e-6)
    np.testing.assert_allclose(results[1], (lo2, hi2 - lo2), rtol=1e-6)
    assert sorted(state) == ['retnorm/hi/value', 'retnorm/lo/value']


def test_percentile_scale_is_floored_at_limit_and_default_rate():
    norm = utils.Normalize('perc', rate=0.01, limit=1.0, debias=False, name='retnorm')
    x = np.linspace(0, 10, 101)  # P5 = 0.5, P95 = 9.5
    _, results = steps(norm, [x, x])
    np.testing.assert_allclose(results[0], (0.005, 1.0), rtol=1e-5)
    lo2, hi2 = 0.99 * 0.005 + 0.005, 0.99 * 0.095 + 0.095
    np.testing.assert_allclose(results[1], (lo2, 1.0), rtol=1e-5)
    assert hi2 - lo2 < 1.0


def test_debias_divides_by_the_correction():
    norm = utils.Normalize('perc', rate=0.5, limit=1e-8, debias=True, name='norm')
    x1, x2 = np.arange(1, 102), np.arange(0, 11)
    state, results = steps(norm, [x1, x2])
    # After one step corr = 0.5, so the stats equal the first batch's percentiles.
    np.testing.assert_allclose(results[0], (6.0, 90.0), rtol=1e-6)
    lo2, hi2 = (0.5 * 3 + 0.25) / 0.75, (0.5 * 48 + 4.75) / 0.75
    np.testing.assert_allclose(results[1], (lo2, hi2 - lo2), rtol=1e-6)
    assert float(state['norm/corr/value']) == 0.75


def test_meanstd_and_none():
    norm = utils.Normalize('meanstd', rate=1.0, limit=1e-3, debias=False, name='norm')
    _, results = steps(norm, [[1.0, 3.0]])
    np.testing.assert_allclose(results[0], (2.0, 1.0), rtol=1e-6)
    norm = utils.Normalize('none', name='norm')
    state, results = steps(norm, [[1.0, 3.0]])
    assert state == {} and results[0] == (0.0, 1.0)
    with pytest.raises(ValueError, match='Unknown Normalize'):
        utils.Normalize('minmax', name='norm')


def test_stats_without_update_keep_the_state():
    norm = utils.Normalize('perc', rate=0.5, limit=1.0, debias=False, name='norm')
    state, _ = steps(norm, [np.arange(1, 102)])
    state2, out = nj.pure(lambda x: norm(x, update=False))(state, jnp.zeros(3))
    assert float(out[0]) == 3.0 and float(state2['norm/lo/value']) == 3.0


def test_slow_model_copies_then_tracks_with_ema():
    source = nets.Linear(2, name='val')
    slow = utils.SlowModel(nets.Linear(2, name='slowval'), source=source, rate=0.25, every=2)
    x = jnp.ones((1, 3))

    def use(x):
        return source(x), slow(x)

    state = nj.pure(use)({}, x, seed=0, create=True)[0]
    assert sorted(state) == [
        'slowval/bias',
        'slowval/kernel',
        'slowval_count/value',
        'val/bias',
        'val/kernel',
    ]
    np.testing.assert_array_equal(state['slowval/kernel'], state['val/kernel'])
    _, (y1, y2) = nj.pure(use)(state, x)
    np.testing.assert_array_equal(y1, y2)

    old = np.asarray(state['slowval/kernel'])
    state = {**state, 'val/kernel': state['val/kernel'] + 4.0}
    state, _ = nj.pure(slow.update)(state)
    np.testing.assert_allclose(state['slowval/kernel'], old + 0.25 * 4.0, rtol=1e-6)
    # every=2: the second update is skipped, the third applies again.
    state, _ = nj.pure(slow.update)(state)
    np.testing.assert_allclose(state['slowval/kernel'], old + 1.0, rtol=1e-6)
    state, _ = nj.pure(slow.update)(state)
    np.testing.assert_allclose(state['slowval/kernel'], old + 1.0 + 0.25 * 3.0, rtol=1e-6)
    assert int(state['slowval_count/value']) == 3


def test_slow_model_rejects_rates_between_half_and_one():
    source = nets.Linear(2, name='val')
    with pytest.raises(ValueError, match='rate=0.7'):
        utils.SlowModel(nets.Linear(2, name='slow'), source=source, rate=0.7)
    utils.SlowModel(nets.Linear(2, name='slow'), source=source, rate=1.0)
    utils.SlowModel(nets.Linear(2, name='slow'), source=source, rate=0.02)


def test_data_axes_empty_outside_shard_map():
    assert utils.data_axes() == ()
