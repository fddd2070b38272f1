"""The DreamerV3 model contract: parameter counts, train, report, policy and replay context."""

import elements
import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import pytest
from conftest import compute_dtype, dummy_spaces, load_config, random_batch
from helpers import LOSSES

from dreamerv3 import replay_layout
from dreamerv3.agent import Model
from embodied.jax import nets

pytestmark = pytest.mark.usefixtures('float32')

# Trainable parameters per top-level module with the dummy_disc spaces (64x64 images).
PARAM_COUNTS = {
    'debug': dict(enc=6232, dyn=822, dec=9255, rew=189, con=153, pol=297, val=189),
    'size1m': dict(enc=42592, dyn=381120, dec=150151, rew=57663, con=41153, pol=50641, val=66111),
    'size12m': dict(
        enc=431872, dyn=6046464, dec=2139127, rew=721407, con=656129, pol=792337, val=853503
    ),
    'size200m': dict(
        enc=5911552,
        dyn=96537600,
        dec=33186871,
        rew=10749183,
        con=10488833,
        pol=12606481,
        val=12850431,
    ),
}
MODULES = ('enc', 'dyn', 'dec', 'rew', 'con', 'pol', 'val')
B, T = 3, 6


def model_latents(model, batch, length, seed=0):
    """Random `dyn/deter` (float32, in the compute dtype's range) and one-hot `dyn/stoch`."""
    rng = np.random.default_rng(seed)
    spaces = model.dyn.entry_space
    classes = spaces['stoch'].shape[-1]
    index = rng.integers(0, classes, (batch, length, *spaces['stoch'].shape[:-1]))
    deter = np.tanh(rng.uniform(-3, 3, (batch, length, *spaces['deter'].shape)))
    deter = np.asarray(jnp.asarray(deter, nets.COMPUTE_DTYPE).astype(jnp.float32))
    return {'dyn/deter': deter, 'dyn/stoch': np.eye(classes, dtype=np.float32)[index]}


def batch_for(model, batch, length, seed=0):
    spaces = {**model.obs_space, **model.act_space, **model.ext_space}
    data = random_batch(spaces, batch, length, seed)
    data['consec'][:] = 0
    if 'dyn/stoch' in data:
        for key, value in model_latents(model, batch, length, seed).items():
            data[key] = replay_layout.compact_array(key, value, nets.COMPUTE_DTYPE)
    return data


@pytest.mark.parametrize('preset', list(PARAM_COUNTS))
def test_parameter_counts(preset):
    obs_space, act_space = dummy_spaces()
    model = Model(obs_space, act_space, load_config(preset))
    data = batch_for(model, 1, 2 + model.config.replay_context)
    spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), data)
    carry = jax.eval_shape(lambda: nj.pure(model.init_train)({}, 1)[1])
    # Abstract evaluation: the 200M-parameter model is traced, never allocated.
    state = jax.eval_shape(lambda c, d: nj.init(model.train)({}, c, d, seed=0), carry, spec)
    counts = {m: 0 for m in MODULES}
    for key, value in state.items():
        module = key.split('/')[0]
        if module in counts:
            counts[module] += int(np.prod(value.shape))
    assert counts == PARAM_COUNTS[preset]
    slow = sum(int(np.prod(v.shape)) for k, v in state.items() if k.startswith('slowval/'))
    assert slow == counts['val']


@pytest.fixture(scope='module')
def small():
    """Debug-size model on 16x16 images, initialised, with a fixed batch."""
    obs_space, act_space = dummy_spaces()
    obs_space['image'] = elements.Space(np.uint8, (16, 16, 3))
    config = load_config(
        'debug',
        **{
            'agent.enc.simple.mults': (2, 4),
            'agent.dec.simple.mults': (2, 4),
            'agent.opt.warmup': 0,
            'agent.opt.lr': 1e-3,
        },
    )
    model = Model(obs_space, act_space, config)
    data = batch_for(model, B, T + config.replay_context)
    carry = model.init_train(B)
    state = nj.init(model.train)({}, carry, data, seed=0)
    return model, data, carry, state


@pytest.fixture(scope='module')
def trained(small):
    model, data, carry, state = small
    train = jax.jit(nj.pure(model.train))
    history = []
    for step in range(20):
        state, (new_carry, outs, metrics) = train(state, carry, data, seed=step)
        history.append(jax.device_get(metrics))
    return state, new_carry, jax.device_get(outs), history


@pytest.mark.pinned
def test_train_lowers_world_model_loss(small, trained):
    model = small[0]
    history = trained[3]
    wm = [sum(model.scales[k] * m[f'loss/{k}'] for k in model.wm_keys) for m in history]
    assert np.isfinite(wm).all()
    assert np.mean(wm[-3:]) < 0.95 * np.mean(wm[:3]), wm
    assert history[-1]['opt/updates'] == 20


def test_train_metrics(small, trained):
    model = small[0]
    metrics = trained[3][-1]
    assert {k[len('loss/') :] for k in metrics if k.startswith('loss/')} == set(LOSSES)
    expected = {
        'dyn_ent',
        'rep_ent',
        'adv',
        'adv_std',
        'adv_mag',
        'rew',
        'con',
        'ret',
        'val',
        'tar',
        'weight',
        'slowval',
        'ret_min',
        'ret_max',
        'ret_rate',
        'ent/act_disc',
        'ent/act_cont',
        'opt/loss',
        'opt/grad_norm',
    }
    assert expected <= set(metrics)
    assert all(np.isfinite(v).all() for v in metrics.values())
    # Randomness of both action heads, including the continuous one (the
    # reference had no `rand/` metric for continuous actions).
    for key in model.act_space:
        assert 0.0 < metrics[f'rand/{key}'] <= 1.0 + 1e-5


def test_train_writes_back_latents_and_priorities(small, trained):
    model, data, _, _ = small
    _, carry, outs, _ = trained
    C = model.config.replay_context
    replay = outs['replay']
    assert set(replay) == {'stepid', 'priority', 'dyn/deter', 'dyn/stoch'}
    np.testing.assert_array_equal(replay['stepid'], data['stepid'][:, C:])
    # The compact layout: deter in the (float32) compute dtype, stoch as class indices.
    assert replay['dyn/deter'].shape == (B, T, 8) and replay['dyn/deter'].dtype == np.float32
    assert replay['dyn/stoch'].shape == (B, T, 2) and replay['dyn/stoch'].dtype == np.uint8
    assert (replay['dyn/stoch'] < 4).all()
    assert replay['priority'].shape == (B, T) and replay['priority'].dtype == np.float32
    # dyn and rep are at least the free nats, the other world-model terms are positive.
    assert (replay['priority'] > 1.1).all()
    enc_carry, dyn_carry, dec_carry, prevact = carry
    np.testing.assert_array_equal(dyn_carry['deter'], replay['dyn/deter'][:, -1])
    np.testing.assert_array_equal(dyn_carry['stoch'].argmax(-1), replay['dyn/stoch'][:, -1])
    for key in model.act_space:
        np.testing.assert_array_equal(prevact[key], data[key][:, -1])


def test_report_returns_losses_and_openloop_video(small, trained):
    model, data, carry, _ = small
    state = trained[0]
    _, (new_carry, metrics) = jax.jit(nj.pure(model.report))(state, carry, data, seed=0)
    metrics = jax.device_get(metrics)
    # The loss metrics are returned, not just the videos (the reference dropped them).
    for key in ('loss/dyn', 'loss/image', 'loss/policy', 'dyn_ent', 'ret', 'rand/act_cont'):
        assert np.isfinite(metrics[key])
    video = metrics['openloop/image']
    RB = min(6, B)
    assert video.shape == (T + 10, 3 * 16 + 4, RB * (16 + 4), 3) and video.dtype == np.uint8
    assert video[0, 0, 0].tolist() == [0, 255, 0] and video[T - 1, 0, 0].tolist() == [255, 0, 0]
    np.testing.assert_array_equal(video[0, 2:18, 2:18], data['image'][0, 1])
    np.testing.assert_array_equal(new_carry[3]['act_disc'], data['act_disc'][:, -1])


def test_policy_samples_valid_actions(small, trained):
    model, data, _, _ = small
    state = trained[0]
    obs = {k: data[k][:, 0] for k in model.obs_space}
    carry = model.init_policy(B)
    policy = jax.jit(nj.pure(model.policy), static_argnames=['mode'])
    _, (carry, act, outs) = policy(state, carry, obs, mode='eval', seed=0)
    assert act['act_disc'].dtype == jnp.int32 and act['act_disc'].shape == (B,)
    assert ((act['act_disc'] >= 0) & (act['act_disc'] < 5)).all()
    assert act['act_cont'].dtype == jnp.float32 and act['act_cont'].shape == (B, 6)
    assert np.isfinite(act['act_cont']).all()
    assert set(outs) == {'dyn/deter', 'dyn/stoch'}
    assert outs['dyn/deter'].dtype == jnp.float32 and outs['dyn/deter'].shape == (B, 8)
    np.testing.assert_array_equal(outs['dyn/deter'], carry[1]['deter'])
    assert outs['dyn/stoch'].dtype == jnp.uint8 and outs['dyn/stoch'].shape == (B, 2)
    np.testing.assert_array_equal(np.eye(4)[outs['dyn/stoch']], carry[1]['stoch'])
    np.testing.assert_array_equal(carry[3]['act_disc'], act['act_disc'])


def test_replay_context_selects_rows_by_consec(small):
    model, data, _, state = small
    C = model.config.replay_context
    data = {k: v.copy() for k, v in data.items()}
    data['consec'][:, :] = np.array([[0], [1], [2]])
    carry = model.init_train(B)
    carry = (
        carry[0],
        {'deter': jnp.full((B, 8), 0.5), 'stoch': carry[1]['stoch']},
        carry[2],
        {k: jnp.ones_like(v) for k, v in carry[3].items()},
    )
    fn = nj.pure(model._apply_replay_context)
    _, (start, obs, prevact, stepid) = fn(state, carry, data)
    deter = np.asarray(start[1]['deter'])
    # Row 0 starts a sampled sequence: it uses the stored latent at step C - 1.
    np.testing.assert_array_equal(deter[0], data['dyn/deter'][0, C - 1])
    np.testing.assert_array_equal(deter[1:], 0.5)
    assert obs['image'].shape == (B, T, 16, 16, 3)
    np.testing.assert_array_equal(stepid, data['stepid'][:, C:])
    for key in model.act_space:
        np.testing.assert_array_equal(prevact[key], data[key][:, C - 1 : -1])


def bits(x):
    """The raw bytes of an array, for bit-for-bit comparisons of bfloat16 values."""
    x = np.asarray(x)
    return x.view(np.dtype(f'u{x.dtype.itemsize}'))


def test_compact_replay_rebuilds_the_float32_layout_start_state_bit_for_bit():
    with compute_dtype(jnp.bfloat16):
        obs_space, act_space = dummy_spaces()
        model = Model(obs_space, act_space, load_config('debug', replay_context=2))
        C, L = 2, 5
        # What the earlier layout stored: the model's bfloat16 deter widened to float32, and
        # float32 one-hot stoch.
        latents = model_latents(model, B, L, seed=3)
        data = batch_for(model, B, L, seed=3)
        data['consec'][:, :] = np.array([[0], [1], [0]])
        for key, value in latents.items():
            assert data[key].dtype == model.ext_space[key].dtype
            assert data[key].nbytes * 2 <= value.nbytes
        carry = model.init_train(B)
        rng = np.random.default_rng(0)
        carry = (
            carry[0],
            {
                'deter': jnp.asarray(rng.normal(size=(B, 8)), jnp.bfloat16),
                'stoch': jnp.asarray(np.eye(4)[rng.integers(0, 4, (B, 2))], jnp.bfloat16),
            },
            carry[2],
            carry[3],
        )
        _, (start, obs, prevact, stepid) = nj.pure(model._apply_replay_context)({}, carry, data)
        # The earlier agent: the stored float32 latents at step C - 1, cast to the compute dtype,
        # for the rows that start a sampled sequence; the carry for the others.
        first = data['consec'][:, 0] == 0
        for key in ('deter', 'stoch'):
            stored = jnp.asarray(latents[f'dyn/{key}'][:, C - 1], jnp.bfloat16)
            expected = np.where(
                first.reshape((B,) + (1,) * (stored.ndim - 1)), stored, carry[1][key]
            )
            assert start[1][key].dtype == jnp.bfloat16
            np.testing.assert_array_equal(bits(start[1][key]), bits(expected))
        np.testing.assert_array_equal(stepid, data['stepid'][:, C:])
        for key in model.obs_space:
            np.testing.assert_array_equal(obs[key], data[key][:, C:])
        for key in model.act_space:
            np.testing.assert_array_equal(prevact[key][first], data[key][first, C - 1 : -1])


def test_context_pack_and_unpack_are_exact_in_bfloat16():
    with compute_dtype(jnp.bfloat16):
        obs_space, act_space = dummy_spaces()
        model = Model(obs_space, act_space, load_config('debug'))
        latents = model_latents(model, B, 4, seed=5)
        entries = {k.split('/')[1]: jnp.asarray(v, jnp.bfloat16) for k, v in latents.items()}
        packed = model._pack_context({}, entries, {})
        assert {k: v.dtype for k, v in packed.items()} == {
            'dyn/deter': jnp.uint16,
            'dyn/stoch': jnp.uint8,
        }
        # The agent's packing on device equals the numpy conversion of the float32 layout.
        for key, value in latents.items():
            expected = replay_layout.compact_array(key, value, 'bfloat16')
            np.testing.assert_array_equal(np.asarray(packed[key]), expected)
        unpacked = model._unpack_context(packed)
        for key, value in entries.items():
            assert unpacked[f'dyn/{key}'].dtype == jnp.bfloat16
            np.testing.assert_array_equal(bits(unpacked[f'dyn/{key}']), bits(value))


def test_without_replay_context_prepends_carried_action():
    obs_space, act_space = dummy_spaces()
    model = Model(obs_space, act_space, load_config('debug', replay_context=0))
    assert set(model.ext_space) == {'consec', 'stepid'}
    data = batch_for(model, 2, 4)
    carry = model.init_train(2)
    carry = (*carry[:3], {k: jnp.full_like(v, 3) for k, v in carry[3].items()})
    _, (_, obs, prevact, stepid) = nj.pure(model._apply_replay_context)({}, carry, data)
    assert obs['image'].shape[:2] == (2, 4) and stepid.shape == (2, 4, 20)
    for key in act_space:
        assert (np.asarray(prevact[key][:, 0]) == 3).all()
        np.testing.assert_array_equal(prevact[key][:, 1:], data[key][:, :-1])


def abstract_state(model, fn, *args):
    """Shapes of the outputs of `fn` after init, traced without compiling or allocating.

    Tracing `train` also traces the backward pass, where the layers assert that gradients
    arrive in the compute dtype, so bfloat16 traces catch dtype slips without a compile.
    """

    def run(*args):
        state = nj.init(model.train)({}, *args[:2], seed=0)
        return nj.pure(fn)(state, *args[2:], seed=1)

    return jax.eval_shape(run, *args)


def traced_model(**overrides):
    obs_space, act_space = dummy_spaces()
    obs_space['image'] = elements.Space(np.uint8, (16, 16, 3))
    mults = {'agent.enc.simple.mults': (2, 4), 'agent.dec.simple.mults': (2, 4)}
    model = Model(obs_space, act_space, load_config('debug', **{**mults, **overrides}))
    data = batch_for(model, 2, 4 + model.config.replay_context)
    return model, model.init_train(2), data


@pytest.mark.parametrize(
    'overrides',
    [
        {},
        {'agent.repval_loss': False, 'agent.imag_last': 2, 'agent.contdisc': False},
        {
            'agent.ac_grads': True,
            'agent.reward_grad': False,
            'agent.repval_grad': False,
            'agent.imag_loss.slowtar': True,
            'agent.valnorm.impl': 'meanstd',
            'agent.advnorm.impl': 'perc',
        },
        {
            'agent.enc.simple.strided': True,
            'agent.dec.simple.strided': True,
            'agent.dec.simple.bspace': 0,
            'replay_context': 0,
        },
        {
            'agent.enc.simple.outer': True,
            'agent.dec.simple.outer': True,
            'agent.enc.simple.mults': (2, 4, 4),
            'agent.dec.simple.mults': (2, 4, 4),
        },
    ],
)
def test_config_variants_trace_in_bfloat16(overrides):
    with compute_dtype(jnp.bfloat16):
        model, carry, data = traced_model(**overrides)
        _, (_, outs, metrics) = abstract_state(model, model.train, carry, data, carry, data)
    losses = {k for k in metrics if k.startswith('loss/')}
    assert ('loss/repval' in losses) == model.config.repval_loss
    assert all(v.dtype == jnp.float32 for k, v in metrics.items() if k.startswith('loss/'))
    assert outs['replay']['priority'].shape == (2, 4)
    assert outs['replay']['stepid'].shape == (2, 4, 20)
    assert ('dyn/deter' in outs['replay']) == bool(model.config.replay_context)
    if model.config.replay_context:
        # bfloat16 deter travels as its uint16 bits, stoch as class indices.
        assert outs['replay']['dyn/deter'].dtype == jnp.uint16
        assert outs['replay']['dyn/stoch'].dtype == jnp.uint8


def test_report_and_policy_trace_in_bfloat16():
    with compute_dtype(jnp.bfloat16):
        model, carry, data = traced_model(**{'agent.report_gradnorms': True})
        obs = {k: v[:, 0] for k, v in data.items() if k in model.obs_space}
        pcarry = model.init_policy(2)

        def both(carry, data, pcarry, obs):
            # One init per model instance: ninjax caches the optimizer state structure.
            _, metrics = model.report(carry, data)
            return metrics, model.policy(pcarry, obs, mode='eval')

        _, (metrics, (new, act, outs)) = abstract_state(
            model, both, carry, data, carry, data, pcarry, obs
        )
    # One gradient norm per loss term (computed with one forward and a backward per term).
    assert {f'gradnorm/{k}' for k in model.scales} <= set(metrics)
    assert all(metrics[f'gradnorm/{k}'].shape == () for k in model.scales)
    assert metrics['openloop/image'].shape == (4 + 10, 52, 40, 3)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), new) == jax.tree.map(
        lambda x: (x.shape, x.dtype), jax.eval_shape(lambda: pcarry)
    )
    assert act['act_disc'].dtype == jnp.int32 and outs['dyn/deter'].dtype == jnp.uint16
