"""Layers, initializers and helpers of embodied.jax.nets, checked against hand-computed values."""

import elements
import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import pytest

from embodied.jax import nets

pytestmark = [pytest.mark.pinned, pytest.mark.usefixtures('float32_compute')]


def build(make, x, seed=0):
    """Create a module, initialise it on x, and return (state, output)."""
    module = make()
    fn = lambda x: module(x)
    state = nj.pure(fn)({}, x, seed=seed, create=True)[0]
    _, out = nj.pure(fn)(state, x)
    return module, state, out


def counts(state):
    return {k: int(np.prod(v.shape)) for k, v in state.items()}


def test_symlog_symexp():
    x = jnp.array([-10.0, -1.0, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(nets.symlog(x), np.sign(x) * np.log(1 + np.abs(x)), rtol=1e-6)
    np.testing.assert_allclose(nets.symlog(jnp.array([np.e - 1])), [1.0], rtol=1e-6)
    np.testing.assert_allclose(
        nets.symexp(jnp.array([1.0, -2.0])), [np.e - 1, -(np.e**2 - 1)], rtol=1e-6
    )
    np.testing.assert_allclose(nets.symexp(nets.symlog(x)), x, rtol=1e-5, atol=1e-6)


def test_activations():
    x = jnp.array([-2.0, 0.0, 3.0, 1.0])
    np.testing.assert_allclose(nets.act('none')(x), x)
    np.testing.assert_allclose(nets.act('relu2')(x), [0, 0, 9, 1])
    np.testing.assert_allclose(nets.act('silu')(x), x / (1 + np.exp(-x)), rtol=1e-6)
    mish = np.asarray(x) * np.tanh(np.log1p(np.exp(np.asarray(x))))
    np.testing.assert_allclose(nets.act('mish')(x), mish, rtol=1e-6)
    # swiglu: silu(first half) * second half
    np.testing.assert_allclose(nets.act('swiglu')(x), [-2 / (1 + np.e**2) * 3, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match='Unknown activation'):
        nets.act('nope')


def test_fans_and_initializer_names():
    fans = nets.Initializer.compute_fans
    assert fans(()) == (1, 1)
    assert fans((7,)) == (1, 7)
    assert fans((3, 5)) == (3, 5)
    assert fans((5, 5, 4, 8)) == (100, 200)
    assert fans((8, 4, 16)) == (32, 128)
    assert nets.Initializer.from_name('trunc_normal_in') == nets.Initializer('trunc_normal', 'in')
    assert nets.Initializer.from_name('normal_avg') == nets.Initializer('normal', 'avg')
    assert nets.Initializer.from_name('uniform') == nets.Initializer('uniform', 'in')
    with pytest.raises(ValueError, match='distribution'):
        nets.Initializer.from_name('cauchy_in')


def draw(name, shape):
    fn = lambda: nets.init(name)(shape)
    return np.asarray(nj.pure(fn)({}, seed=0)[1])


def test_initializer_statistics():
    # trunc_normal: truncated to [-2, 2] std normal times 1.1368 / sqrt(fan): std 1/sqrt(fan).
    x = draw('trunc_normal_in', (64, 2000))
    assert abs(x.std() - 1 / 8) < 0.002
    assert abs(x.mean()) < 0.002
    assert np.abs(x).max() <= 2 * 1.1368 / 8 + 1e-6
    x = draw('trunc_normal_out', (2000, 16))
    assert abs(x.std() - 0.25) < 0.004
    x = draw('normal_avg', (100, 300))
    assert abs(x.std() - np.sqrt(1 / 200)) < 0.002
    x = draw('uniform_in', (25, 4000))
    assert np.abs(x).max() <= 0.2 + 1e-6 and np.abs(x).max() > 0.199
    x = draw('normed', (3, 4, 5))
    np.testing.assert_allclose(np.linalg.norm(x.reshape(-1, 5), axis=0), 1.0, rtol=1e-5)
    assert (draw('zeros', (3, 2)) == 0).all()


def test_linear_shapes_counts_and_outscale():
    x = jnp.ones((2, 3))
    _, state, y = build(lambda: nets.Linear(5, name='lin'), x)
    assert y.shape == (2, 5)
    assert counts(state) == {'lin/kernel': 15, 'lin/bias': 5}
    assert (state['lin/bias'] == 0).all()
    _, state, y = build(lambda: nets.Linear((2, 3), bias=False, name='lin'), x)
    assert y.shape == (2, 2, 3)
    assert counts(state) == {'lin/kernel': 18}
    _, state, y = build(lambda: nets.Linear(4, outscale=0.0, name='lin'), x)
    assert (state['lin/kernel'] == 0).all() and (y == 0).all()
    _, state1, _ = build(lambda: nets.Linear(4, name='lin'), x)
    _, state2, _ = build(lambda: nets.Linear(4, outscale=0.5, name='lin'), x)
    np.testing.assert_allclose(state2['lin/kernel'], 0.5 * state1['lin/kernel'], rtol=1e-6)
    assert state1['lin/kernel'].dtype == jnp.float32


def test_linear_computes_affine_map():
    x = jnp.array([[1.0, 2.0, 3.0]])
    module, state, _ = build(lambda: nets.Linear(2, name='lin'), x)
    state = {'lin/kernel': jnp.arange(6.0).reshape(3, 2), 'lin/bias': jnp.array([1.0, -1.0])}
    _, y = nj.pure(lambda x: module(x))(state, x)
    np.testing.assert_allclose(y, [[17.0, 21.0]])


def test_layers_reject_inputs_outside_the_compute_dtype():
    nets.COMPUTE_DTYPE = jnp.bfloat16
    x = jnp.ones((2, 3), jnp.float32)
    with pytest.raises(TypeError, match='compute dtype is bfloat16'):
        build(lambda: nets.Linear(4, name='lin'), x)
    _, state, y = build(lambda: nets.Linear(4, name='lin'), nets.cast(x))
    assert y.dtype == jnp.bfloat16 and state['lin/kernel'].dtype == jnp.float32
    with pytest.raises(TypeError, match='compute dtype'):
        build(lambda: nets.Norm('rms', name='norm'), x)


def test_blocklinear_is_block_diagonal_and_group_major():
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 6))
    module, state, y = build(lambda: nets.BlockLinear(8, 2, name='blk'), x)
    assert y.shape == (2, 8)
    assert counts(state) == {'blk/kernel': 2 * 3 * 4, 'blk/bias': 8}
    kernel = np.asarray(state['blk/kernel'])
    dense = np.zeros((6, 8), np.float32)
    dense[:3, :4] = kernel[0]
    dense[3:, 4:] = kernel[1]
    np.testing.assert_allclose(y, np.asarray(x) @ dense, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='not divisible'):
        build(lambda: nets.BlockLinear(8, 3, name='blk'), x)


def test_blocklinear_parts_cut_every_group_alike():
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 6))
    module, state, y = build(lambda: nets.BlockLinear(8, 2, name='blk'), x)
    state = {**state, 'blk/bias': jnp.arange(8, dtype=jnp.float32)}
    y = nj.pure(lambda x: module(x))(state, x)[1]
    first, second = nj.pure(lambda x: module(x, parts=2))(state, x)[1]
    # Group g owns columns 4g..4g+3; part k holds columns 4g+2k and 4g+2k+1 of every group.
    np.testing.assert_array_equal(first, np.asarray(y)[..., [0, 1, 4, 5]])
    np.testing.assert_array_equal(second, np.asarray(y)[..., [2, 3, 6, 7]])
    with pytest.raises(ValueError, match='parts=3'):
        nj.pure(lambda x: module(x, parts=3))(state, x)


def test_blocklinear_fan_in_is_total_input_width():
    x = jnp.ones((1, 64))
    _, state, _ = build(lambda: nets.BlockLinear(4096, 8, name='blk'), x)
    # fan_in = (64 / 8) * 8 = 64, the total input width as in the reference, not the per-block 8.
    assert abs(float(state['blk/kernel'].std()) - 1 / 8) < 0.003


def test_conv2d_shapes_counts_and_groups():
    x = jnp.ones((2, 8, 8, 2))
    _, state, y = build(lambda: nets.Conv2D(4, 3, name='conv'), x)
    assert y.shape == (2, 8, 8, 4)
    assert counts(state) == {'conv/kernel': 3 * 3 * 2 * 4, 'conv/bias': 4}
    _, state, y = build(lambda: nets.Conv2D(4, 3, 2, groups=2, name='conv'), x)
    assert y.shape == (2, 4, 4, 4)
    assert counts(state) == {'conv/kernel': 3 * 3 * 1 * 4, 'conv/bias': 4}
    _, _, y = build(lambda: nets.Conv2D(4, 5, name='conv'), jnp.ones((3, 2, 8, 8, 2)))
    assert y.shape == (3, 2, 8, 8, 4)


def test_conv2d_transposed_places_inputs_on_a_strided_grid():
    x = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    module, state, y = build(lambda: nets.Conv2D(1, 1, 2, transp=True, name='conv'), x)
    assert y.shape == (1, 4, 4, 1)
    call = nj.pure(lambda x: module(x))
    state = {'conv/kernel': jnp.ones((1, 1, 1, 1)), 'conv/bias': jnp.zeros(1)}
    expected = np.zeros((4, 4))
    expected[1, 1], expected[1, 3], expected[3, 1], expected[3, 3] = 1, 2, 3, 4
    np.testing.assert_allclose(call(state, x)[1][0, :, :, 0], expected)
    module, _, _ = build(lambda: nets.Conv2D(1, 3, 2, transp=True, name='conv'), x)
    state = {'conv/kernel': jnp.ones((3, 3, 1, 1)), 'conv/bias': jnp.zeros(1)}
    y = np.asarray(nj.pure(lambda x: module(x))(state, x)[1][0, :, :, 0])
    # Each output sums the spread inputs in its 3x3 neighbourhood.
    assert y[0, 0] == 1 and y[2, 2] == 10 and y[0, 2] == 3 and y[3, 3] == 4


def test_norms():
    x = jnp.array([[1.0, 2.0, 3.0, 6.0]])
    _, state, y = build(lambda: nets.Norm('rms', name='norm'), x)
    assert counts(state) == {'norm/scale': 4}
    np.testing.assert_allclose(y, x / np.sqrt(12.5 + 1e-4), rtol=1e-6)
    _, state, y = build(lambda: nets.Norm('layer', name='norm'), x)
    assert counts(state) == {'norm/scale': 4, 'norm/shift': 4}
    np.testing.assert_allclose(y, (x - 3) / np.sqrt(3.5 + 1e-4), rtol=1e-5)
    module, state, y = build(lambda: nets.Norm('rms1em2', name='norm'), x)
    np.testing.assert_allclose(y, x / np.sqrt(12.5 + 1e-2), rtol=1e-6)
    _, state, y = build(lambda: nets.Norm('none', name='norm'), x)
    assert state == {} and (y == x).all()
    with pytest.raises(ValueError, match='Unknown norm'):
        nets.Norm('batch', name='norm')


def test_norm_computes_in_float32_and_returns_input_dtype():
    nets.COMPUTE_DTYPE = jnp.bfloat16
    x = nets.cast(jnp.array([[300.0, 400.0]]))
    _, state, y = build(lambda: nets.Norm('rms', name='norm'), x)
    assert y.dtype == jnp.bfloat16 and state['norm/scale'].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y, np.float32), [[0.8485, 1.1314]], rtol=1e-2)


def test_mlp_names_and_counts():
    x = jnp.ones((2, 3, 5))
    _, state, y = build(lambda: nets.MLP(2, 7, act='silu', norm='rms', name='mlp'), x)
    assert y.shape == (2, 3, 7)
    assert counts(state) == {
        'mlp/linear0/kernel': 35,
        'mlp/linear0/bias': 7,
        'mlp/norm0/scale': 7,
        'mlp/linear1/kernel': 49,
        'mlp/linear1/bias': 7,
        'mlp/norm1/scale': 7,
    }


def test_cast_mask_where():
    nets.COMPUTE_DTYPE = jnp.bfloat16
    tree = {'a': jnp.ones(2, jnp.float32), 'b': jnp.ones(2, jnp.int32)}
    out = nets.cast(tree)
    assert out['a'].dtype == jnp.bfloat16 and out['b'].dtype == jnp.int32
    assert nets.cast(tree, force=True)['b'].dtype == jnp.bfloat16
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(nets.mask(x, jnp.array([True, False])), [[0, 1, 2], [0, 0, 0]])
    y = nets.where(jnp.array([False, True]), x, -x)
    np.testing.assert_allclose(y, [[0, -1, -2], [3, 4, 5]])


def test_dict_concat_one_hot_squish_and_missing_values():
    spaces = {
        'b': elements.Space(np.float32, (2,)),
        'a': elements.Space(np.int32, (), 0, 3),
    }
    xs = {
        'a': jnp.array([2, -1]),
        'b': jnp.array([[np.e - 1, 0.0], [1.0, -np.inf]], jnp.float32),
    }
    y = nets.DictConcat(spaces, 1, squish=nets.symlog)(xs)
    assert y.dtype == jnp.float32 and y.shape == (2, 5)
    np.testing.assert_allclose(y[0], [0, 0, 1, 1, 0], atol=1e-6)
    # Missing entries (-1 index, -inf float) are zeroed.
    np.testing.assert_allclose(y[1], [0, 0, 0, 0, 0])
    spaces = {'c': elements.Space(np.int32, (4,), 0, 3)}
    y = nets.DictConcat(spaces, 2)({'c': jnp.zeros((5, 4), jnp.int32)})
    assert y.shape == (5, 4, 3)
