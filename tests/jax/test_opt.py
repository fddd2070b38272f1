"""Optimiser chain and module, checked against a NumPy reimplementation of the update rule."""

import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import optax
import pytest

from embodied.jax import nets, opt

pytestmark = [pytest.mark.pinned, pytest.mark.usefixtures('float32_compute')]


def test_agc_clips_each_tensor_relative_to_its_parameter_norm():
    params = {'a': jnp.array([3.0, 4.0]), 'b': jnp.zeros(2), 'c': jnp.array([1.0, 0.0])}
    grads = {'a': jnp.array([30.0, 40.0]), 'b': jnp.array([0.0, 1.0]), 'c': jnp.array([0.1, 0])}
    clip = opt.clip_by_agc(0.3)
    out, _ = clip.update(grads, clip.init(params), params)
    np.testing.assert_allclose(out['a'], [0.9, 1.2], rtol=1e-6)  # norm 50 -> 0.3 * 5
    np.testing.assert_allclose(out['b'], [0.0, 3e-4], rtol=1e-6)  # param norm floored at 1e-3
    np.testing.assert_allclose(out['c'], [0.1, 0.0], rtol=1e-6)  # below the limit: unchanged
    off = opt.clip_by_agc(0.0)
    out, _ = off.update(grads, off.init(params), params)
    np.testing.assert_allclose(out['a'], grads['a'])


def test_schedules():
    sched = opt.make_schedule(1.0, 'cosine', warmup=10, anneal=110)
    assert float(sched(0)) == 0.0
    np.testing.assert_allclose(float(sched(5)), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(sched(10)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(sched(60)), 0.55, rtol=1e-5)  # halfway down the cosine
    np.testing.assert_allclose(float(sched(110)), 0.1, rtol=1e-5)  # floor 0.1 * lr, not 0.1 * lr**2
    np.testing.assert_allclose(float(sched(500)), 0.1, rtol=1e-5)
    sched = opt.make_schedule(2.0, 'linear', warmup=0, anneal=100)
    np.testing.assert_allclose(
        [float(sched(n)) for n in (0, 50, 100, 200)], [2.0, 1.1, 0.2, 0.2], rtol=1e-5
    )
    sched = opt.make_schedule(4e-5, 'const', warmup=1000)
    np.testing.assert_allclose(
        [float(sched(n)) for n in (0, 1, 500, 1000, 5000)], [0, 4e-8, 2e-5, 4e-5, 4e-5], rtol=1e-4
    )
    with pytest.raises(ValueError, match='anneal > warmup'):
        opt.make_schedule(1.0, 'cosine', warmup=10, anneal=0)
    with pytest.raises(ValueError, match='Unknown schedule'):
        opt.make_schedule(1.0, 'exp')


class Net(nj.Module):
    def __call__(self, x):
        x = self.sub('lin', nets.Linear, 3)(x)
        return self.sub('norm', nets.Norm, 'rms')(x)


def numpy_chain(grads, params, state, k, lr, warmup, agc=0.3, eps=1e-20, b1=0.9, b2=0.999, wd=0.01):
    """One optimiser update in NumPy (k counts from 1)."""
    nu, mu = state
    new = {}
    for key, g in grads.items():
        p = params[key]
        g = g / max(1.0, np.linalg.norm(g) / (agc * max(1e-3, np.linalg.norm(p))))
        nu[key] = b2 * nu[key] + (1 - b2) * g**2
        u = g / (np.sqrt(nu[key] / (1 - b2**k)) + eps)
        mu[key] = b1 * mu[key] + (1 - b1) * u
        m = mu[key] / (1 - b1**k)
        if key.endswith('/kernel'):
            m = m + wd * p
        n = k - 1
        rate = lr * n / warmup if n < warmup else lr
        new[key] = p - rate * m
    return new


def test_optimizer_step_matches_numpy_reimplementation(capsys):
    net = Net(name='net')
    chain = opt.make_chain(
        lr=0.1,
        agc=0.3,
        eps=1e-20,
        beta1=0.9,
        beta2=0.999,
        momentum=True,
        wd=0.01,
        schedule='const',
        warmup=2,
        anneal=0,
    )
    optimizer = opt.Optimizer([net], chain, name='opt')
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
    y = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    lossfn = lambda x, y: jnp.square(net(x) - y).mean()
    train = lambda x, y: optimizer(lossfn, x, y)

    state = nj.init(train)({}, x, y, seed=0)
    assert 'Optimizer opt has 21 parameters' in capsys.readouterr().out
    assert int(state['opt/step/value']) == 0
    assert any(k.startswith('opt/state/') for k in state)

    def grads_of(params):
        fn = lambda p: nj.pure(lossfn)({**state, **p}, x, y)[1]
        return {k: np.asarray(v, np.float64) for k, v in jax.grad(fn)(params).items()}

    keys = ['net/lin/kernel', 'net/lin/bias', 'net/norm/scale']
    params = {k: np.asarray(state[k], np.float64) for k in keys}
    npstate = ({k: 0 * v for k, v in params.items()}, {k: 0 * v for k, v in params.items()})
    step = jax.jit(nj.pure(train))
    for k in (1, 2, 3):
        grads = grads_of({key: jnp.asarray(v, jnp.float32) for key, v in params.items()})
        loss = float(nj.pure(lossfn)(state, x, y)[1])
        state, mets = step(state, x, y)
        params = numpy_chain(grads, params, npstate, k, lr=0.1, warmup=2)
        for key in keys:
            np.testing.assert_allclose(state[key], params[key], rtol=2e-5, atol=1e-6)
        assert int(mets['opt/updates']) == k
        np.testing.assert_allclose(mets['opt/loss'], loss, rtol=1e-5)
        norm = np.sqrt(sum((g**2).sum() for g in grads.values()))
        np.testing.assert_allclose(mets['opt/grad_norm'], norm, rtol=1e-4)
        assert float(mets['opt/param_count']) == 21
        if k == 1:
            # Warmup starts at learning rate 0: the first update only fills the moments.
            assert float(mets['opt/update_rms']) == 0.0
    assert set(mets) == {
        f'opt/{k}'
        for k in (
            'loss',
            'updates',
            'grad_norm',
            'grad_rms',
            'update_rms',
            'param_rms',
            'param_count',
        )
    }


def test_momentum_false_equals_beta1_zero():
    params = {'w/kernel': jnp.array([1.0, -2.0])}
    grads = {'w/kernel': jnp.array([0.5, 0.25])}
    off = opt.make_chain(lr=0.1, momentum=False, warmup=0)
    zero = opt.make_chain(lr=0.1, beta1=0.0, warmup=0)
    u1, _ = off.update(grads, off.init(params), params)
    u2, _ = zero.update(grads, zero.init(params), params)
    np.testing.assert_allclose(u1['w/kernel'], u2['w/kernel'], rtol=1e-6)
    # First step of RMS scaling alone: g / |g| = sign(g) (up to the tiny eps).
    np.testing.assert_allclose(u1['w/kernel'], [-0.1, -0.1], rtol=1e-4)


class Counted(nj.Module):
    def __call__(self, x):
        count = self.value('count', jnp.zeros, (), jnp.int32)
        return self.sub('lin', nets.Linear, 2)(x) + 0 * count


def test_optimizer_skips_integer_state_and_prints_table(capsys):
    enc = Counted(name='enc')
    dec = nets.Linear(1, name='dec')
    optimizer = opt.Optimizer([enc, dec], opt.make_chain(lr=0.01, warmup=0), name='opt')
    x = jnp.ones((2, 3))
    train = lambda x: optimizer(lambda x: dec(enc(x)).mean(), x)
    state = nj.init(train)({}, x, seed=0)
    table = capsys.readouterr().out
    assert 'Optimizer opt has 11 parameters' in table
    assert '8 enc' in table and '3 dec' in table
    state, mets = jax.jit(nj.pure(train))(state, x)
    assert float(mets['opt/param_count']) == 11 and int(state['enc/count']) == 0
    assert opt.summarize({'a/b/c': 3, 'a/d': 2, 'e': 1}, depth=2).splitlines() == [
        'Optimizer opt has 6 parameters:',
        f'{5:>14,} a',
        f'{3:>14,} a/b',
        f'{2:>14,} a/d',
        f'{1:>14,} e',
    ]


def test_optimizer_rejects_non_scalar_or_non_float32_loss():
    net = nets.Linear(2, name='net')
    optimizer = opt.Optimizer([net], opt.make_chain(warmup=0), name='opt')
    x = jnp.ones((2, 3))
    with pytest.raises(TypeError, match='float32 scalar'):
        nj.init(lambda x: optimizer(lambda x: net(x), x))({}, x, seed=0)


class Weights(nj.Module):
    def __call__(self):
        return self.value('w', jnp.ones, (2,), jnp.float32)


def test_float16_loss_scaling_skips_non_finite_steps():
    nets.COMPUTE_DTYPE = jnp.float16
    weights = Weights(name='weights')
    optimizer = opt.Optimizer([weights], opt.make_chain(lr=0.1, warmup=0), name='opt')
    train = lambda c: optimizer(lambda c: (weights() * c).sum(), c)
    finite, bad = jnp.array([1.0, 2.0]), jnp.array([1.0, jnp.inf])
    state = nj.init(train)({}, finite, seed=0)
    assert float(state['opt/grad_scale/value']) == 1e4
    step = jax.jit(nj.pure(train))

    state, mets = step(state, bad)
    np.testing.assert_array_equal(state['weights/w'], [1.0, 1.0])
    assert float(state['opt/grad_scale/value']) == 5e3
    assert int(mets['opt/updates']) == 0 and float(mets['opt/grad_overflow']) == 1.0
    assert np.isnan(float(mets['opt/grad_norm']))

    state, mets = step(state, finite)
    assert float(mets['opt/loss']) == 3.0  # reported unscaled
    np.testing.assert_allclose(mets['opt/grad_norm'], np.sqrt(5), rtol=1e-5)
    assert int(mets['opt/updates']) == 1 and float(mets['opt/grad_overflow']) == 0.0
    assert float(state['opt/grad_scale/value']) == 5e3 and int(state['opt/good_steps/value']) == 1
    # Same update as an unscaled first step: -lr * sign(g).
    np.testing.assert_allclose(state['weights/w'], [0.9, 0.9], rtol=1e-5)

    state = {**state, 'opt/good_steps/value': jnp.array(1000, jnp.int32)}
    state, mets = step(state, finite)
    assert float(state['opt/grad_scale/value']) == 1e4
    assert int(state['opt/good_steps/value']) == 0


def test_weight_decay_only_on_kernels():
    chain = opt.add_decayed_weights(0.5)
    params = {'a/kernel': jnp.ones(2), 'a/bias': jnp.ones(2), 'b/kernel_scale': jnp.ones(1)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    out, _ = chain.update(zeros, chain.init(params), params)
    assert out['a/kernel'].tolist() == [0.5, 0.5]
    assert out['a/bias'].tolist() == [0.0, 0.0] and out['b/kernel_scale'].tolist() == [0.0]
    assert isinstance(opt.make_chain(), optax.GradientTransformation)
