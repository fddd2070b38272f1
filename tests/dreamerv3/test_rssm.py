"""RSSM, encoder and decoder behaviour at the debug preset sizes (float32 activations)."""

import elements
import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import pytest
from conftest import dummy_spaces, load_config

from dreamerv3 import rssm

S = elements.Space
pytestmark = pytest.mark.usefixtures('float32')


@pytest.fixture(scope='module')
def config():
    return load_config('debug')


@pytest.fixture(scope='module')
def act_space():
    return dummy_spaces()[1]


def random_carry(rng, batch, cfg):
    deter = rng.uniform(-1, 1, (batch, cfg.deter)).astype(np.float32)
    index = rng.integers(0, cfg.classes, (batch, cfg.stoch))
    stoch = np.eye(cfg.classes, dtype=np.float32)[index]
    return {'deter': jnp.asarray(deter), 'stoch': jnp.asarray(stoch)}


def random_actions(rng, shape, scale):
    return {
        'act_disc': jnp.asarray(rng.integers(0, 5, shape), jnp.int32),
        'act_cont': jnp.asarray(rng.normal(0, scale, (*shape, 6)), jnp.float32),
    }


def test_block_gru_keeps_deter_bounded(config, act_space):
    cfg = config.dyn.rssm
    dyn = rssm.RSSM(act_space, **cfg, name='dyn')
    rng = np.random.default_rng(0)
    B, T = 4, 200
    carry = random_carry(rng, B, cfg)
    # Huge actions are scaled down by max(1, |a|), so they cannot blow up the core.
    actions = random_actions(rng, (B, T), scale=1e3)
    fn = lambda carry, actions: dyn.imagine(carry, actions, T)
    state = nj.init(fn)({}, carry, actions, seed=0)
    # Large weights saturate the gates; the convex GRU update still stays in [-1, 1].
    state = {k: v * 10 if k.endswith('kernel') else v for k, v in state.items()}
    _, (_, feat, used) = jax.jit(nj.pure(fn))(state, carry, actions, seed=1)
    deter = np.asarray(feat['deter'])
    assert deter.shape == (B, T, cfg.deter)
    assert np.isfinite(deter).all() and np.abs(deter).max() <= 1.0
    assert np.abs(np.diff(deter, axis=1)).max() > 1e-3  # the state really moves
    stoch = np.asarray(feat['stoch'])
    assert stoch.shape == (B, T, cfg.stoch, cfg.classes)
    np.testing.assert_allclose(stoch.sum(-1), 1.0, rtol=1e-6)
    assert set(np.unique(stoch)) <= {0.0, 1.0}
    np.testing.assert_array_equal(used['act_disc'], actions['act_disc'])


def test_reset_zeroes_carry_and_action(config, act_space):
    cfg = config.dyn.rssm
    dyn = rssm.RSSM(act_space, **cfg, name='dyn')
    rng = np.random.default_rng(1)
    B = 3
    tokens = jnp.asarray(rng.normal(size=(B, 16)), jnp.float32)

    def step(carry, action, reset):
        return dyn.observe(carry, tokens, action, reset, single=True)

    carry, action = random_carry(rng, B, cfg), random_actions(rng, (B,), 1.0)
    reset = jnp.array([True, False, True])
    state = nj.init(step)({}, carry, action, reset, seed=0)
    step = jax.jit(nj.pure(step))
    _, (_, entry, feat) = step(state, carry, action, reset, seed=1)
    zero_carry = jax.tree.map(jnp.zeros_like, carry)
    zero_action = jax.tree.map(jnp.zeros_like, action)
    _, (_, zero_entry, _) = step(state, zero_carry, zero_action, reset, seed=1)
    deter, zero_deter = np.asarray(entry['deter']), np.asarray(zero_entry['deter'])
    # Reset rows see the zero state and an all-zero action embedding (not one-hot of class 0),
    # which differs from feeding a zero action index.
    np.testing.assert_allclose(deter[[0, 2]], zero_deter[[0, 2]], rtol=1e-6)
    assert np.abs(deter[1] - zero_deter[1]).max() > 1e-4
    _, (_, unreset, _) = step(state, zero_carry, zero_action, jnp.zeros(B, bool), seed=1)
    assert np.abs(np.asarray(unreset['deter'])[0] - zero_deter[0]).max() > 1e-6
    assert set(feat) == {'deter', 'stoch', 'logit'} and set(entry) == {'deter', 'stoch'}


def test_observe_loss_shapes_and_free_nats(config, act_space):
    cfg = config.dyn.rssm
    dyn = rssm.RSSM(act_space, **cfg, name='dyn')
    rng = np.random.default_rng(2)
    B, T = 2, 5
    tokens = jnp.asarray(rng.normal(size=(B, T, 16)), jnp.float32)
    actions = random_actions(rng, (B, T), 1.0)
    reset = jnp.zeros((B, T), bool).at[:, 0].set(True)

    def fn(tokens, actions, reset):
        return dyn.loss(dyn.initial(B), tokens, actions, reset)

    state = nj.init(fn)({}, tokens, actions, reset, seed=0)
    _, (carry, entries, losses, feat, metrics) = jax.jit(nj.pure(fn))(
        state, tokens, actions, reset, seed=1
    )
    assert entries['deter'].shape == (B, T, cfg.deter)
    assert feat['logit'].shape == (B, T, cfg.stoch, cfg.classes)
    np.testing.assert_array_equal(carry['deter'], entries['deter'][:, -1])
    for key in ('dyn', 'rep'):
        assert losses[key].shape == (B, T) and (np.asarray(losses[key]) >= 1.0).all()
    # Entropy of the unimix categoricals, summed over latents: between 0 and S ln V.
    for key in ('dyn_ent', 'rep_ent'):
        assert 0 < float(metrics[key]) <= cfg.stoch * np.log(cfg.classes) + 1e-5


def encode(obs_space, obs, **kw):
    enc = rssm.Encoder(obs_space, **kw, name='enc')
    reset = jnp.zeros(next(iter(obs.values())).shape[:2], bool)
    fn = lambda obs: enc({}, obs, reset)[2]
    state = nj.init(fn)({}, obs, seed=0)
    return nj.pure(fn)(state, obs)[1]


def test_encoder_masks_missing_values_and_orders_keys(config):
    kw = dict(config.enc.simple)
    space = {'vector': S(np.float32, (3,)), 'token': S(np.int32, (), 0, 4)}
    rng = np.random.default_rng(3)
    vector = rng.normal(size=(2, 3, 3)).astype(np.float32)
    vector[0, 1, 2] = -np.inf
    obs = {'vector': jnp.asarray(vector), 'token': jnp.ones((2, 3), jnp.int32)}
    tokens = np.asarray(encode(space, obs, **kw))
    assert tokens.shape == (2, 3, kw['units']) and np.isfinite(tokens).all()
    # A missing entry zeroes the whole key for that step, as if the vector were all zeros.
    zeroed = vector.copy()
    zeroed[0, 1] = 0.0
    expected = np.asarray(encode(space, {**obs, 'vector': jnp.asarray(zeroed)}, **kw))
    np.testing.assert_allclose(tokens, expected, rtol=1e-6)


@pytest.mark.parametrize(
    'size,mults,ok',
    [
        ((16, 16), (2, 4), True),  # 16 -> 8 -> 4
        ((96, 96), (2, 3, 4, 4), True),  # 96 -> 6
        ((16, 16), (1, 1, 1, 1), False),  # 16 -> 1: too small
        ((12, 12), (1, 1, 1), False),  # 12 -> 6 -> 3 -> odd map cannot be pooled
    ],
)
def test_encoder_checks_final_map_size(config, size, mults, ok):
    kw = {**config.enc.simple, 'mults': mults}
    space = {'image': S(np.uint8, (*size, 3))}
    enc = rssm.Encoder(space, **kw, name='enc')
    obs = {'image': jax.ShapeDtypeStruct((1, 1, *size, 3), jnp.uint8)}
    fn = lambda obs: nj.init(lambda obs: enc({}, obs, jnp.zeros((1, 1), bool))[2])({}, obs, seed=0)
    if ok:
        jax.eval_shape(fn, obs)
    else:
        with pytest.raises(ValueError, match='Encoder'):
            jax.eval_shape(fn, obs)


def test_decoder_without_spatial_blocks_uses_layer_kwargs(config):
    # bspace = 0 with only an image key (the reference failed here): builds, and the projection
    # layer is not scaled by the output scale, while the output layer is.
    cfg = config.dyn.rssm
    kw = {**config.dec.simple, 'mults': (2, 4), 'bspace': 0, 'outscale': 0.0}
    space = {'image': S(np.uint8, (16, 16, 3))}
    dec = rssm.Decoder(space, **kw, name='dec')
    rng = np.random.default_rng(4)
    B, T = 2, 3
    feat = {
        'deter': jnp.asarray(rng.uniform(-1, 1, (B, T, cfg.deter)), jnp.float32),
        'stoch': jnp.asarray(
            np.eye(cfg.classes)[rng.integers(0, 4, (B, T, cfg.stoch))], jnp.float32
        ),
    }
    reset = jnp.zeros((B, T), bool)
    target = jnp.asarray(rng.uniform(0, 1, (B, T, 16, 16, 3)), jnp.float32)
    fn = lambda feat: dec({}, feat, reset)[2]['image'].loss(target)
    state = nj.init(fn)({}, feat, seed=0)
    shape = (4, 4, 8)
    assert state['dec/space/kernel'].shape == (cfg.stoch * cfg.classes + cfg.deter, 128)
    assert np.abs(np.asarray(state['dec/space/kernel'])).max() > 0
    assert np.abs(np.asarray(state['dec/imgout/kernel'])).max() == 0
    assert state['dec/space/bias'].shape == (np.prod(shape),)
    _, loss = nj.pure(fn)(state, feat)
    # Zero output weights give sigmoid(0) = 0.5 everywhere; the loss sums over (H, W, C).
    expected = np.square(0.5 - np.asarray(target)).sum((-3, -2, -1))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_decoder_outputs_per_key(config):
    cfg = config.dyn.rssm
    kw = {**config.dec.simple, 'mults': (2, 4)}
    space = {
        'image': S(np.uint8, (16, 16, 3)),
        'depth': S(np.uint8, (16, 16, 1)),
        'int2d': S(np.int32, (2, 3), 0, 4),
        'vector': S(np.float32, (7,)),
    }
    dec = rssm.Decoder(space, **kw, name='dec')
    B, T = 2, 3
    feat = {
        'deter': jnp.zeros((B, T, cfg.deter)),
        'stoch': jnp.zeros((B, T, cfg.stoch, cfg.classes)).at[..., 0].set(1.0),
    }
    reset = jnp.zeros((B, T), bool)
    fn = lambda feat: {k: v.pred() for k, v in dec({}, feat, reset)[2].items()}
    state = nj.init(fn)({}, feat, seed=0)
    preds = nj.pure(fn)(state, feat)[1]
    assert preds['image'].shape == (B, T, 16, 16, 3)
    assert preds['depth'].shape == (B, T, 16, 16, 1)
    assert preds['int2d'].shape == (B, T, 2, 3) and preds['vector'].shape == (B, T, 7)
    image = np.asarray(preds['image'])
    assert (image > 0).all() and (image < 1).all()
