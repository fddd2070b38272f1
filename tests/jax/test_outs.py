"""Output distributions and heads, checked against hand-computed values."""

import elements
import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import pytest

from embodied.jax import heads, nets, outs

pytestmark = [pytest.mark.pinned, pytest.mark.usefixtures('float32_compute')]

E20 = np.expm1(20.0)  # symexp(20) ~ 4.85e8
E10 = np.expm1(10.0)  # symexp(10) = 22025.47


def test_twohot_bins_debug_preset_and_default():
    np.testing.assert_allclose(outs.symexp_bins(5), [-E20, -E10, 0, E10, E20], rtol=1e-6)
    bins = np.asarray(outs.symexp_bins(255))
    assert bins.dtype == np.float32 and bins.shape == (255,)
    assert bins[127] == 0.0 and (bins[:127] == -bins[128:][::-1]).all()
    np.testing.assert_allclose(np.diff(nets.symlog(bins)), 20 / 127, rtol=1e-4)
    # Even counts follow the same formula without dropping the last half-bin, so the two
    # middle bins are both zero (symexp(0) and its negation).
    np.testing.assert_allclose(outs.symexp_bins(4), [-E20, 0, 0, E20], rtol=1e-6)
    np.testing.assert_allclose(outs.symexp_bins(6), [-E20, -E10, 0, 0, E10, E20], rtol=1e-6)
    # Inside a traced program the bins are a constant computed while tracing (also under the
    # train step's transfer guard), equal to what the same operations give at run time.
    jaxpr = jax.make_jaxpr(lambda: outs.symexp_bins(255))()
    assert not jaxpr.eqns, jaxpr
    with jax.transfer_guard('disallow'):
        traced = jax.jit(lambda: outs.symexp_bins(255))()
    runtime = jax.jit(lambda: nets.symexp(jnp.linspace(-20, 0, 128, dtype=jnp.float32)))()
    np.testing.assert_array_equal(traced[:128], runtime)


def test_twohot_encoding_interpolates_in_raw_space():
    bins = outs.symexp_bins(5)
    y = jnp.array([0.0, E10 / 2, E10, 1e10, -1e10, -30000.0], jnp.float32)
    enc = np.asarray(outs.twohot(y, bins))
    np.testing.assert_allclose(enc[0], [0, 0, 1, 0, 0])
    np.testing.assert_allclose(enc[1], [0, 0, 0.5, 0.5, 0], atol=1e-6)
    np.testing.assert_allclose(enc[2], [0, 0, 0, 1, 0])
    np.testing.assert_allclose(enc[3], [0, 0, 0, 0, 1])
    np.testing.assert_allclose(enc[4], [1, 0, 0, 0, 0])
    # -30000 lies between -E20 and -E10: weights are the distances to the other bin.
    wfar = (30000 - E10) / (E20 - E10)
    np.testing.assert_allclose(enc[5], [wfar, 1 - wfar, 0, 0, 0], rtol=1e-4)
    np.testing.assert_allclose(enc.sum(-1), 1.0, rtol=1e-6)


def test_twohot_loss_and_prediction():
    bins = outs.symexp_bins(5)
    # Probabilities 0.5 / 0.5 on bins 0 and E10 decode to E10 / 2.
    logits = jnp.log(jnp.array([[1e-30, 1e-30, 0.5, 0.5, 1e-30]], jnp.float32))
    out = outs.TwoHot(logits, bins)
    np.testing.assert_allclose(out.pred(), [E10 / 2], rtol=1e-5)
    target = jnp.array([E10 / 2], jnp.float32)
    np.testing.assert_allclose(out.loss(target), [np.log(2)], rtol=1e-5)
    with pytest.raises(TypeError, match='float32'):
        out.loss(jnp.array([1], jnp.int32))


def test_twohot_prediction_is_the_expectation_for_any_bins():
    logits = jax.random.normal(jax.random.PRNGKey(0), (8, 255)) * 3
    for bins in (outs.symexp_bins(255), jnp.linspace(-1.0, 3.0, 255)):
        expected = (jax.nn.softmax(logits, -1) * bins).sum(-1)
        np.testing.assert_allclose(outs.TwoHot(logits, bins).pred(), expected, rtol=1e-5)
        pred = jax.jit(lambda logits, bins: outs.TwoHot(logits, bins).pred())
        np.testing.assert_allclose(pred(logits, bins), expected, rtol=1e-5)


def test_untrained_twohot_predicts_exactly_zero():
    for n in (255, 5, 6):
        out = outs.TwoHot(jnp.zeros((3, n)), outs.symexp_bins(n))
        assert (np.asarray(out.pred()) == 0.0).all()
        # Compiled, XLA may reorder the sum; mirrored bins must cancel in any order.
        for shape in ((n,), (4, n), (64, 16, n)):
            pred = jax.jit(lambda logits: outs.TwoHot(logits, outs.symexp_bins(n)).pred())
            assert (np.asarray(pred(jnp.zeros(shape))) == 0.0).all(), (n, shape)
        loss = out.loss(jnp.array([0.0, 7.0, -1e6], jnp.float32))
        np.testing.assert_allclose(loss, np.log(n), rtol=1e-6)


def test_mse_huber_binary():
    out = outs.MSE(jnp.array([1.0, 2.0]), nets.symlog)
    np.testing.assert_allclose(out.loss(jnp.array([np.e - 1, 0.0])), [0.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(out.pred(), [1.0, 2.0])
    with pytest.raises(ValueError, match='shape'):
        out.loss(jnp.zeros(3))
    out = outs.Huber(jnp.array([3.0]))
    np.testing.assert_allclose(out.loss(jnp.array([0.0])), [np.sqrt(10) - 1], rtol=1e-6)
    out = outs.Binary(jnp.array([0.5, -2.0]))
    sig = 1 / (1 + np.exp(-np.array([0.5, -2.0])))
    np.testing.assert_allclose(out.prob(jnp.ones(2)), sig, rtol=1e-6)
    np.testing.assert_allclose(out.logp(jnp.zeros(2)), np.log(1 - sig), rtol=1e-6)
    np.testing.assert_allclose(
        out.loss(jnp.array([0.3, 0.3])), -(0.3 * np.log(sig) + 0.7 * np.log(1 - sig)), rtol=1e-6
    )
    assert out.pred().tolist() == [True, False]


def test_categorical_unimix():
    logits = jnp.log(jnp.array([0.25, 0.25, 0.5]))
    out = outs.Categorical(logits, unimix=0.3)
    probs = np.array([0.275, 0.275, 0.45])  # 0.7 * p + 0.3 / 3
    np.testing.assert_allclose(jax.nn.softmax(out.logits), probs, rtol=1e-6)
    np.testing.assert_allclose(out.logp(jnp.array(2)), np.log(0.45), rtol=1e-6)
    np.testing.assert_allclose(out.entropy(), -(probs * np.log(probs)).sum(), rtol=1e-6)
    assert int(out.pred()) == 2
    other = outs.Categorical(jnp.zeros(3))
    np.testing.assert_allclose(out.kl(other), (probs * np.log(probs * 3)).sum(), rtol=1e-5)
    samples = out.sample(jax.random.PRNGKey(0), (4000,))
    np.testing.assert_allclose(np.bincount(samples, minlength=3) / 4000, probs, atol=0.03)


def test_onehot_unimix_and_straight_through_gradient():
    logits = jnp.log(jnp.array([0.25, 0.75]))
    out = outs.OneHot(logits, unimix=0.1)
    probs = np.array([0.275, 0.725])  # 0.9 * p + 0.1 / 2
    np.testing.assert_allclose(out.prob(jnp.array([1.0, 0.0])), 0.275, rtol=1e-6)
    np.testing.assert_allclose(out.prob(jnp.array([0.0, 1.0])), 0.725, rtol=1e-6)
    np.testing.assert_allclose(out.entropy(), -(probs * np.log(probs)).sum(), rtol=1e-6)
    np.testing.assert_allclose(out.pred(), [0.0, 1.0])

    def fn(logits):
        sample = outs.OneHot(logits, 0.1).sample(jax.random.PRNGKey(3))
        return (sample * jnp.array([1.0, 0.0])).sum(), sample

    grad, sample = jax.grad(fn, has_aux=True)(logits)
    assert sorted(np.asarray(sample).tolist()) == [0.0, 1.0]
    # d p0 / d logits = 0.9 * q0 * ([1, 0] - q) with q = [0.25, 0.75].
    np.testing.assert_allclose(grad, [0.16875, -0.16875], rtol=1e-5)


def test_straight_through_equals_the_stop_gradient_form_without_its_forward_softmax():
    logits = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 5))
    index = jax.random.randint(jax.random.PRNGKey(1), (2, 3, 4), 0, 5)
    value = jax.nn.one_hot(index, 5)
    weights = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 4, 5))

    def plain(logits):
        probs = jax.nn.softmax(logits, -1)
        sg = jax.lax.stop_gradient
        return (weights * (sg(value) + (probs - sg(probs)))).sum()

    custom = lambda logits: (weights * outs.straight_through(value, logits)).sum()
    np.testing.assert_array_equal(custom(logits), plain(logits))
    np.testing.assert_allclose(jax.grad(custom)(logits), jax.grad(plain)(logits), rtol=1e-6)
    # Undifferentiated, the forward pass holds no exponential: the softmax is left out.
    jaxpr = str(jax.make_jaxpr(lambda x: outs.straight_through(value, x))(logits))
    assert 'exp' not in jaxpr, jaxpr


def test_normal():
    out = outs.Normal(jnp.array([0.5]), jnp.array([2.0]))
    np.testing.assert_allclose(
        out.logp(jnp.array([1.5])), -0.125 - np.log(2) - 0.5 * np.log(2 * np.pi), rtol=1e-6
    )
    np.testing.assert_allclose(out.entropy(), 0.5 * np.log(2 * np.pi * 4) + 0.5, rtol=1e-6)
    other = outs.Normal(jnp.array([0.0]), jnp.array([1.0]))
    np.testing.assert_allclose(out.kl(other), np.log(1 / 2) + (4 + 0.25) / 2 - 0.5, rtol=1e-6)


def test_agg_sums_and_forwards_scaled_entropy_bounds():
    inner = outs.Categorical(jnp.zeros((2, 3, 4)))
    inner.minent, inner.maxent = 0.0, float(np.log(4))
    out = outs.Agg(inner, 1)
    assert out.pred().shape == (2, 3)
    np.testing.assert_allclose(out.entropy(), [3 * np.log(4)] * 2, rtol=1e-6)
    np.testing.assert_allclose(
        out.logp(jnp.zeros((2, 3), jnp.int32)), [3 * np.log(0.25)] * 2, rtol=1e-6
    )
    np.testing.assert_allclose(out.maxent, [3 * np.log(4)] * 2, rtol=1e-6)
    np.testing.assert_allclose(out.minent, [0.0, 0.0])
    assert not hasattr(outs.Agg(outs.Categorical(jnp.zeros((2, 3))), 1), 'maxent')
    with pytest.raises(TypeError, match='Agg'):
        out.kl(inner)


def run_head(space, output, x, **kw):
    head = heads.Head(space, output, name='head', **kw)
    fn = lambda x: head(x)
    state = nj.pure(fn)({}, x, seed=0, create=True)[0]
    return state, nj.pure(fn)(state, x)[1]


def test_bounded_normal_head_logp_entropy_and_bounds():
    space = elements.Space(np.float32, (2,), -1, 1)
    x = jnp.ones((3, 4))
    state, out = run_head(space, 'bounded_normal', x, minstd=0.1, maxstd=1.0, outscale=0.0)
    assert sorted(state) == [
        'head/mean/bias',
        'head/mean/kernel',
        'head/stddev/bias',
        'head/stddev/kernel',
    ]
    # Zero weights: mean = tanh(0) = 0, std = 0.9 * sigmoid(2) + 0.1.
    std = 0.9 / (1 + np.exp(-2.0)) + 0.1
    np.testing.assert_allclose(out.pred(), np.zeros((3, 2)))
    event = jnp.full((3, 2), 0.5)
    logp = 2 * (-0.5 * (0.5 / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(out.logp(event), [logp] * 3, rtol=1e-5)
    ent = 2 * (np.log(std) + 0.5 * np.log(2 * np.pi) + 0.5)
    np.testing.assert_allclose(out.entropy(), [ent] * 3, rtol=1e-5)
    np.testing.assert_allclose(
        out.minent, [2 * (np.log(0.1) + 0.5 * np.log(2 * np.pi) + 0.5)] * 3, rtol=1e-5
    )
    np.testing.assert_allclose(out.maxent, [2 * (0.5 * np.log(2 * np.pi) + 0.5)] * 3, rtol=1e-5)


def test_head_layer_names_and_output_types():
    x = jnp.ones((2, 4))
    scalar = elements.Space(np.float32, ())
    state, out = run_head(scalar, 'symexp_twohot', x, bins=5, outscale=0.0)
    assert {k: v.shape for k, v in state.items()} == {
        'head/logits/kernel': (4, 5),
        'head/logits/bias': (5,),
    }
    assert isinstance(out, outs.TwoHot) and (np.asarray(out.pred()) == 0).all()
    state, out = run_head(elements.Space(bool, ()), 'binary', x)
    assert sorted(state) == ['head/logits/bias', 'head/logits/kernel']
    assert isinstance(out, outs.Binary) and out.pred().shape == (2,)
    state, out = run_head(elements.Space(np.int32, (), 0, 6), 'categorical', x, unimix=0.5)
    assert state['head/logits/kernel'].shape == (4, 6)
    assert (out.minent, out.maxent) == (0.0, pytest.approx(np.log(6)))
    # The categorical head ignores unimix, like the published agent.
    np.testing.assert_allclose(
        out.logits, state['head/logits/bias'] + x @ state['head/logits/kernel'], rtol=1e-6
    )
    state, out = run_head(elements.Space(np.int32, (3,), 0, 4), 'onehot', x)
    assert state['head/logits/kernel'].shape == (4, 12)
    assert out.pred().shape == (2, 3, 4) and out.entropy().shape == (2,)
    state, out = run_head(elements.Space(np.float32, (3,)), 'symlog_mse', x)
    assert sorted(state) == ['head/mean/bias', 'head/mean/kernel']
    assert out.loss(jnp.zeros((2, 3))).shape == (2,)
    with pytest.raises(ValueError, match='Unknown head output'):
        heads.Head(scalar, 'gamma', name='head')


def test_mlp_head_with_dict_space():
    act = {
        'move': elements.Space(np.int32, (), 0, 3),
        'turn': elements.Space(np.float32, (2,), -1, 1),
    }
    dists = {'move': 'categorical', 'turn': 'bounded_normal'}
    head = heads.MLPHead(
        act, dists, layers=2, units=8, minstd=0.1, maxstd=1.0, outscale=0.01, name='pol'
    )
    fn = lambda x: head(x, 2)
    x = jnp.ones((2, 5, 3, 2))
    state = nj.pure(fn)({}, x, seed=0, create=True)[0]
    _, out = nj.pure(fn)(state, x)
    assert out['move'].pred().shape == (2, 5)
    assert out['turn'].sample(jax.random.PRNGKey(0)).shape == (2, 5, 2)
    assert out['turn'].maxent.shape == (2, 5)
    shapes = {k: v.shape for k, v in state.items()}
    assert shapes['pol/mlp/linear0/kernel'] == (6, 8)
    assert shapes['pol/head/move/logits/kernel'] == (8, 3)
    assert shapes['pol/head/turn/stddev/kernel'] == (8, 2)
    assert sum(int(np.prod(s)) for s in shapes.values()) == (
        6 * 8 + 8 + 8 + 8 * 8 + 8 + 8 + 8 * 3 + 3 + 2 * (8 * 2 + 2)
    )
