"""The phase form of 'upsample 2x, then convolve' equals the direct form, values and gradients."""

import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import pytest

from embodied.jax import nets

pytestmark = pytest.mark.usefixtures('float32_compute')


def inputs(kernel, cin=3, cout=5, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, 4, 6, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, cin, cout)), jnp.float32)
    return x, w


@pytest.mark.parametrize('kernel', [1, 2, 3, 4, 5])
def test_phases_equal_direct_values(kernel):
    x, w = inputs(kernel)
    direct = nets.upsample_conv(x, w, 'direct')
    phases = nets.upsample_conv(x, w, 'phases')
    assert phases.shape == direct.shape == (2, 8, 12, 5)
    np.testing.assert_allclose(phases, direct, rtol=1e-5, atol=1e-5)


def test_direct_form_is_upsample_then_same_conv():
    # Hand-checked corner: a 3x3 all-ones kernel on a one-pixel image sees that pixel at
    # every position of the 2x2 upsampled block.
    x = jnp.ones((1, 1, 1, 1), jnp.float32) * 2.0
    w = jnp.ones((3, 3, 1, 1), jnp.float32)
    y = nets.upsample_conv(x, w, 'phases')
    np.testing.assert_allclose(y[0, :, :, 0], [[8.0, 8.0], [8.0, 8.0]])


@pytest.mark.parametrize('kernel', [3, 5])
def test_phases_equal_direct_gradients(kernel):
    x, w = inputs(kernel, seed=1)
    target = jax.random.normal(jax.random.key(0), (2, 8, 12, 5))

    def loss(impl):
        return lambda x, w: jnp.sum(jnp.sin(nets.upsample_conv(x, w, impl)) * target)

    gx0, gw0 = jax.grad(loss('direct'), (0, 1))(x, w)
    gx1, gw1 = jax.grad(loss('phases'), (0, 1))(x, w)
    np.testing.assert_allclose(gx1, gx0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw1, gw0, rtol=1e-4, atol=1e-4)


def test_conv2d_upsample_module_forms_agree_and_keep_parameters():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 2, 4, 4, 6)), jnp.float32)
    outs, states = {}, {}
    for impl in ('direct', 'phases'):
        conv = nets.Conv2D(7, 5, upsample=True, upsample_impl=impl, name='conv')
        fn = lambda x: conv(x)
        states[impl] = nj.pure(fn)({}, x, seed=0, create=True)[0]
        outs[impl] = nj.pure(fn)(states[impl], x)[1]
    assert {k: v.shape for k, v in states['phases'].items()} == {
        'conv/kernel': (5, 5, 6, 7),
        'conv/bias': (7,),
    }
    np.testing.assert_array_equal(states['phases']['conv/kernel'], states['direct']['conv/kernel'])
    assert outs['phases'].shape == (3, 2, 8, 8, 7)
    np.testing.assert_allclose(outs['phases'], outs['direct'], rtol=1e-5, atol=1e-5)


def test_bfloat16_phases_close_to_direct():
    x, w = inputs(5, seed=3)
    direct = nets.upsample_conv(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), 'direct')
    phases = nets.upsample_conv(x.astype(jnp.bfloat16), w, 'phases')
    assert phases.dtype == jnp.bfloat16
    scale = float(jnp.abs(direct.astype(jnp.float32)).max())
    err = jnp.abs(phases.astype(jnp.float32) - direct.astype(jnp.float32)).max()
    assert float(err) < 0.03 * scale


def test_bad_settings_raise():
    x, w = inputs(5)
    with pytest.raises(ValueError, match='phases or direct'):
        nets.upsample_conv(x, w, 'fft')
    with pytest.raises(ValueError, match='up to 5 wide'):
        nets.upsample_conv(x, jnp.ones((7, 7, 3, 5)), 'phases')
    conv = nets.Conv2D(4, 5, 2, upsample=True, name='conv')
    with pytest.raises(ValueError, match='stride=1'):
        nj.pure(lambda x: conv(x))({}, x, seed=0, create=True)
