"""The JAX agent wrapper on a toy ninjax model: training, lagged policy copy, checkpoints.

The toy model is also used by test_agent_multicpu.py, which runs this file's `run_multicpu`
in a subprocess with 8 mock CPU devices.
"""

import functools
import pathlib
import pickle

import elements
import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import optax
import pytest
import ruamel.yaml

import embodied
import embodied.jax

ROOT = pathlib.Path(__file__).resolve().parents[2]
OBS_SPACE = {
    'vec': elements.Space(np.float32, (3,)),
    'reward': elements.Space(np.float32),
    'is_first': elements.Space(bool),
    'is_last': elements.Space(bool),
    'is_terminal': elements.Space(bool),
}
ACT_SPACE = {
    'action': elements.Space(np.int32, (), 0, 2),
    'cont': elements.Space(np.float32, (2,), -1, 1),
}
TRUE_WEIGHTS = np.array([1.0, -2.0, 0.5], np.float32)


class Linear(nj.Module):
    """Dense layer with small random initial weights."""

    units: int = 1

    def __call__(self, x):
        kernel = self.value(
            'kernel', lambda: 0.1 * jax.random.normal(nj.seed(), (x.shape[-1], self.units))
        )
        bias = self.value('bias', jnp.zeros, (self.units,))
        return x @ kernel + bias


class Adam(nj.Module):
    """Minimal optimizer: nj.grad plus optax.adam, with an update counter."""

    lr: float = 0.05

    def __call__(self, lossfn, targets, *args):
        loss, params, grads = nj.grad(lossfn, targets)(*args)
        optimizer = optax.adam(self.lr)
        state = self.sub('state', nj.Tree, optimizer.init, params)
        updates, new_state = optimizer.update(grads, state.read(), params)
        nj.context().update(optax.apply_updates(params, updates))
        state.write(new_state)
        step = self.value('step', jnp.zeros, (), jnp.int32) + 1
        self.write('step', step)
        return loss, step


class ToyModel:
    """Linear reward regression implementing the model contract of the JAX agent."""

    policy_keys = '^net/'

    def __init__(self, obs_space, act_space, config):
        self.net = Linear(units=config.units, name='net')
        self.aux = Linear(units=1, name='aux')
        self.opt = Adam(lr=config.lr, name='opt')
        self.ext_space = {
            'consec': elements.Space(np.int32),
            'stepid': elements.Space(np.uint8, (20,)),
        }

    def init_policy(self, batch_size):
        return {'count': jnp.zeros((batch_size,), jnp.int32)}

    def init_train(self, batch_size):
        return {'total': jnp.zeros((batch_size,), jnp.float32)}

    def init_report(self, batch_size):
        return {}

    def policy(self, carry, obs, mode='train'):
        pred = self.net(obs['vec'])[..., 0]
        noise = 1e-3 * jax.random.normal(nj.seed(), (*pred.shape, 2))
        acts = {
            'action': (pred > 0).astype(jnp.int32),
            'cont': jnp.tanh(jnp.stack([pred, -pred], -1) + noise),
        }
        return {'count': carry['count'] + 1}, acts, {'pred': pred}

    def loss(self, data):
        pred = self.net(data['vec'])[..., 0]
        aux = self.aux(data['vec'])[..., 0]
        return ((pred - data['reward']) ** 2).mean() + ((aux - data['reward']) ** 2).mean()

    def train(self, carry, data):
        loss, step = self.opt(self.loss, ['net', 'aux'], data)
        carry = {'total': carry['total'] + data['reward'].sum(1)}
        outs = {'replay': {'stepid': data['stepid']}}
        return carry, outs, {'loss': loss, 'step': step}

    def report(self, carry, data):
        return carry, {'loss': self.loss(data)}


def model_fn(config):
    """The JAX agent's `model_fn(obs_space, act_space)` for a ToyModel of this config."""
    return functools.partial(ToyModel, config=config)


def make_config(logdir, **jax_overrides):
    """Agent config with the project's jax defaults, a CPU platform and small sizes."""
    yaml = ruamel.yaml.YAML(typ='safe')
    defaults = yaml.load((ROOT / 'configs' / 'dreamerv3.yaml').read_text())['defaults']
    jaxcfg = {
        **defaults['jax'],
        'platform': 'cpu',
        'compute_dtype': 'float32',
        'prealloc': False,
        'profiler': False,
    }
    jaxcfg.update(jax_overrides)
    return elements.Config(
        seed=0,
        batch_size=4,
        batch_length=8,
        replay_context=1,
        report_length=4,
        logdir=str(logdir),
        replica=0,
        replicas=1,
        units=1,
        lr=0.05,
        jax=jaxcfg,
    )


def make_batch(rng, batch, length):
    """Random host batch with every key the toy agent expects."""
    vec = rng.normal(size=(batch, length, 3)).astype(np.float32)
    return {
        'vec': vec,
        'reward': (vec @ TRUE_WEIGHTS + 0.3).astype(np.float32),
        'is_first': np.zeros((batch, length), bool),
        'is_last': np.zeros((batch, length), bool),
        'is_terminal': np.zeros((batch, length), bool),
        'action': rng.integers(0, 2, (batch, length)).astype(np.int32),
        'cont': rng.uniform(-1, 1, (batch, length, 2)).astype(np.float32),
        'consec': np.zeros((batch, length), np.int32),
        'stepid': rng.integers(0, 255, (batch, length, 20)).astype(np.uint8),
    }


def make_obs(rng, envs):
    """Random host observations for `envs` environments."""
    return {
        'vec': rng.normal(size=(envs, 3)).astype(np.float32),
        'reward': np.zeros(envs, np.float32),
        'is_first': np.ones(envs, bool),
        'is_last': np.zeros(envs, bool),
        'is_terminal': np.zeros(envs, bool),
    }


def host(tree):
    """Device arrays to host NumPy (explicit, so it passes the transfer guard)."""
    return jax.tree.map(np.asarray, jax.device_get(tree))


def batches(agent, rng, length=None):
    """The agent's prefetching stream over random batches."""
    length = length or agent.config.batch_length + agent.config.replay_context
    source = embodied.streams.Stateless(make_batch, rng, agent.config.batch_size, length)
    return agent.stream(source)


@pytest.fixture(scope='module', autouse=True)
def restore_jax_config():
    """The agent's setup() changes process-wide JAX flags; undo that for other test files."""
    names = [
        'jax_transfer_guard',
        'jax_disable_jit',
        'jax_disable_most_optimizations',
        'jax_debug_nans',
        'jax_enable_compilation_cache',
    ]
    old = {name: getattr(jax.config, name, jax.config.values.get(name)) for name in names}
    dtype = embodied.jax.nets.COMPUTE_DTYPE
    yield
    for name, value in old.items():
        jax.config.update(name, 'allow' if name == 'jax_transfer_guard' else value)
    embodied.jax.nets.COMPUTE_DTYPE = dtype


@pytest.fixture(scope='module')
def agent(tmp_path_factory):
    # A tiny chunk size splits the parameters into several checkpoint groups.
    config = make_config(
        tmp_path_factory.mktemp('agent'), precompile=True, precompile_report=True, ckpt_chunksize=64
    )
    return embodied.jax.Agent(model_fn(config), OBS_SPACE, ACT_SPACE, config)


@pytest.fixture(scope='module')
def other(tmp_path_factory):
    """An agent with a wider `net` layer and no policy, to load mismatching checkpoints."""
    config = make_config(
        tmp_path_factory.mktemp('other'), precompile=False, enable_policy=False, profiler=True
    )
    config = config.update(units=2)
    return embodied.jax.Agent(model_fn(config), OBS_SPACE, ACT_SPACE, config)


@pytest.mark.pinned
def test_train_lowers_loss_and_returns_outputs_one_call_late(agent):
    rng = np.random.default_rng(0)
    stream = iter(batches(agent, rng))
    carry = agent.init_train(agent.config.batch_size)
    losses, stepids = [], []
    for i in range(60):
        data = next(stream)
        stepids.append(host(data['stepid']))
        carry, outs, mets = agent.train(carry, data)
        if i == 0:
            assert outs == {} and mets == {}
            continue
        # The outputs of call i-1 arrive with call i.
        assert int(mets['step']) == i
        np.testing.assert_array_equal(outs['replay']['stepid'], stepids[i - 1])
        assert mets['loss'].dtype == np.float32
        losses.append(float(mets['loss']))
    assert losses[-1] < 0.2 * losses[0], losses
    # The train carry threads through: it sums the rewards of all batches.
    assert host(carry['total']).shape == (agent.config.batch_size,)
    stream.close()


def test_policy_acts_per_env_and_checks_inputs(agent):
    rng = np.random.default_rng(1)
    carry = agent.init_policy(3)
    assert isinstance(carry, list) and len(carry) == 3
    obs = make_obs(rng, 3)
    for _ in range(2):
        carry, acts, outs = agent.policy(carry, obs)
    assert [int(host(c['count'])) for c in carry] == [2, 2, 2]
    assert acts['action'].dtype == np.int32 and acts['action'].shape == (3,)
    assert acts['cont'].dtype == np.float32 and acts['cont'].shape == (3, 2)
    assert set(outs) == {'pred'} and isinstance(outs['pred'], np.ndarray)
    with pytest.raises(ValueError, match='observation keys'):
        agent.policy(carry, {**obs, 'log/extra': obs['reward']})
    with pytest.raises(ValueError, match="'vec' contains non-finite"):
        agent.policy(carry, {**obs, 'vec': np.full((3, 3), np.nan, np.float32)})
    with pytest.raises(ValueError, match='2 entries'):
        agent.policy(carry[:2], obs)


def test_policy_moves_carry_entries_made_elsewhere(agent):
    # Entries from `policy` stay on the device; one from the host (or another init) is moved.
    rng = np.random.default_rng(3)
    obs = make_obs(rng, 3)
    carry, _, _ = agent.policy(agent.init_policy(3), obs)
    carry[1] = {'count': np.asarray(host(carry[1]['count'])) + 5}
    carry, _, _ = agent.policy(carry, obs)
    assert [int(host(c['count'])) for c in carry] == [2, 7, 2]


def test_policy_params_follow_train_params_with_lag(agent):
    rng = np.random.default_rng(2)
    stream = iter(batches(agent, rng))
    carry = agent.init_train(agent.config.batch_size)
    policy_carry = agent.init_policy(2)
    obs = make_obs(rng, 2)
    for _ in range(3):
        before = host({k: agent.params[k] for k in agent.policy_keys})
        carry, _, _ = agent.train(carry, next(stream))
        after = host(agent.params['net/kernel'])
        policy_carry, _, outs = agent.policy(policy_carry, obs)
        used = host(agent.policy_params)
        # The policy acts with the parameters the last update started from.
        for key in agent.policy_keys:
            np.testing.assert_array_equal(used[key], before[key])
        assert not np.array_equal(used['net/kernel'], after)
        expected = obs['vec'] @ used['net/kernel'][:, 0] + used['net/bias'][0]
        np.testing.assert_allclose(outs['pred'], expected, rtol=1e-5, atol=1e-6)
    # Without policy calls in between, the first pending copy is kept (lag > 1).
    first = host({k: agent.params[k] for k in agent.policy_keys})
    for _ in range(2):
        carry, _, _ = agent.train(carry, next(stream))
    agent.policy(policy_carry, obs)
    used = host(agent.policy_params)
    for key in agent.policy_keys:
        np.testing.assert_array_equal(used[key], first[key])
    stream.close()


def test_stream_seeds_come_from_batch_counter(agent):
    rng = np.random.default_rng(3)
    start = agent.n_batches
    stream = iter(batches(agent, rng))
    for i in range(2):
        seed = host(next(stream)['seed'])
        expected = np.random.default_rng([0, start + i]).integers(
            0, np.iinfo(np.uint32).max, (2,), np.uint32
        )
        np.testing.assert_array_equal(seed, expected)
        assert seed.dtype == np.uint32
    stream.close()


def test_stream_rejects_nan_and_train_rejects_wrong_keys(agent):
    rng = np.random.default_rng(4)

    def bad():
        batch = make_batch(rng, 4, 9)
        batch['reward'][0, 0] = np.nan
        return batch

    stream = iter(agent.stream(embodied.streams.Stateless(bad)))
    with pytest.raises(ValueError, match="'reward' contains NaN"):
        next(stream)
    data = next(iter(batches(agent, rng)))
    carry = agent.init_train(4)
    with pytest.raises(ValueError, match=r"missing \['cont'\]"):
        agent.train(carry, {k: v for k, v in data.items() if k != 'cont'})
    with pytest.raises(ValueError, match='agent.stream'):
        agent.train(carry, make_batch(rng, 4, 9))


def test_report_returns_metrics_now_with_summary(agent):
    rng = np.random.default_rng(5)
    length = agent.config.report_length + agent.config.replay_context
    data = next(iter(batches(agent, rng, length)))
    carry = agent.init_report(agent.config.batch_size)
    carry, mets = agent.report(carry, data)
    assert carry == {}
    assert mets['loss'].shape == () and np.isfinite(mets['loss'])
    assert 'net/kernel' in mets['params/summary']
    assert 'opt/step' in mets['params/summary']


def test_save_load_roundtrip(agent):
    rng = np.random.default_rng(6)
    assert len(agent._ckpt_groups) > 1
    data = pickle.loads(pickle.dumps(agent.save()))
    assert set(data) == {'params', 'counters'}
    assert set(data['params']) == set(agent.params)
    assert all(isinstance(v, np.ndarray) for v in data['params'].values())
    assert set(data['counters']) == {'updates', 'batches', 'actions'}
    updates = data['counters']['updates']
    stream = iter(batches(agent, rng))
    carry = agent.init_train(4)
    for _ in range(3):
        carry, _, _ = agent.train(carry, next(stream))
    stream.close()
    agent.policy(agent.init_policy(1), make_obs(rng, 1))
    assert agent.n_updates == updates + 3
    agent.load(data)
    assert agent.n_updates == updates and agent.n_batches == updates
    assert agent.n_actions == data['counters']['actions']
    restored = host(agent.params)
    for key, value in data['params'].items():
        np.testing.assert_array_equal(restored[key], value)
    used = host(agent.policy_params)
    for key in agent.policy_keys:
        np.testing.assert_array_equal(used[key], data['params'][key])
    # Training continues from the restored state.
    stream = iter(batches(agent, rng))
    carry, _, _ = agent.train(carry, next(stream))
    _, _, mets = agent.train(carry, next(stream))
    assert int(mets['step']) == int(data['params']['opt/step']) + 1
    stream.close()


def test_load_of_other_config_lists_differences(agent, other):
    data = agent.save()
    with pytest.raises(ValueError) as info:
        other.load(data)
    message = str(info.value)
    assert 'another config' in message
    assert 'net/kernel: saved float32[3, 1], model float32[3, 2]' in message
    assert 'net/bias' in message
    assert 'PyTreeDef' not in message
    broken = {k: v for k, v in data['params'].items() if k != 'aux/bias'}
    broken['extra/weight'] = np.zeros(2, np.float32)
    with pytest.raises(ValueError) as info:
        agent.load({**data, 'params': broken})
    message = str(info.value)
    assert 'Missing from the checkpoint (1):\n  aux/bias' in message
    assert 'Unexpected in the checkpoint (1):\n  extra/weight' in message
    assert 'shape or dtype' not in message and '(0)' not in message


def test_regex_load_replaces_only_matching_keys(agent, other):
    data = agent.save()
    before = host(other.params)
    other.load(data, regex='^aux/')
    after = host(other.params)
    for key in after:
        if key.startswith('aux/'):
            np.testing.assert_array_equal(after[key], data['params'][key])
        else:
            np.testing.assert_array_equal(after[key], before[key])
    assert other.n_updates == data['counters']['updates']
    with pytest.raises(ValueError, match='net/kernel'):
        other.load(data, regex='^net/')
    with pytest.raises(ValueError, match='No checkpoint parameter matches'):
        other.load(data, regex='^nothing/')


def test_disabled_policy_raises_and_profiler_writes_trace(other):
    with pytest.raises(RuntimeError, match='enable_policy'):
        other.init_policy(1)
    with pytest.raises(RuntimeError, match='enable_policy'):
        other.policy([{}], make_obs(np.random.default_rng(7), 1))
    assert other.policy_params is None
    # Training still works; the profiler records updates 100 to 120 into the logdir.
    other.n_updates = 98
    stream = iter(batches(other, np.random.default_rng(8)))
    carry = other.init_train(4)
    for _ in range(23):
        carry, _, _ = other.train(carry, next(stream))
    stream.close()
    traces = list(pathlib.Path(str(other.logdir)).glob('**/*.xplane.pb'))
    assert traces, list(pathlib.Path(str(other.logdir)).glob('**/*'))
    assert not other._profiling


def test_expect_devices_mismatch_raises(tmp_path):
    config = make_config(tmp_path, expect_devices=5)
    with pytest.raises(embodied.SetupError, match=r'expected 5 JAX devices .* found 1'):
        embodied.jax.Agent(model_fn(config), OBS_SPACE, ACT_SPACE, config)
    config = make_config(tmp_path, train_devices=[3])
    with pytest.raises(embodied.SetupError, match='device index 3 .* 1 local devices'):
        embodied.jax.Agent(model_fn(config), OBS_SPACE, ACT_SPACE, config)


def test_precompiled_functions_and_cost_summary(agent):
    # The module agent precompiled train and report; its steps are AOT executables.
    assert agent.precompiled
    assert isinstance(agent._train, jax.stages.Compiled)
    assert isinstance(agent._report, jax.stages.Compiled)
    from embodied.jax import transform

    struct = jax.ShapeDtypeStruct((4, 4), jnp.float32)
    compiled = jax.jit(lambda x: x @ x).lower(struct).compile()
    lines = transform.cost_summary(compiled)
    assert any(line.startswith('FLOPs') for line in lines), lines
    assert any(line.startswith('Memory (temp)') for line in lines), lines


def test_precompile_leaves_the_report_to_its_first_call(tmp_path, capsys):
    config = make_config(tmp_path, precompile=True, ckpt_chunksize=64)
    agent = embodied.jax.Agent(model_fn(config), OBS_SPACE, ACT_SPACE, config)
    out = capsys.readouterr().out
    assert 'Compiled the train step' in out and 'report step' not in out
    assert agent.precompiled and isinstance(agent._train, jax.stages.Compiled)
    assert not isinstance(agent._report, jax.stages.Compiled)
    rng = np.random.default_rng(10)
    length = config.report_length + config.replay_context
    stream = iter(batches(agent, rng, length))
    carry = agent.init_report(config.batch_size)
    carry, mets = agent.report(carry, next(stream))
    out = capsys.readouterr().out
    assert 'Compiling the report step for the first report' in out
    assert 'Compiled and ran the report step in' in out
    _, again = agent.report(carry, next(stream))
    stream.close()
    assert 'report step' not in capsys.readouterr().out
    assert np.isfinite(mets['loss']) and np.isfinite(again['loss'])


def test_without_precompile_nothing_compiles_at_construction(tmp_path, capsys):
    config = make_config(tmp_path, precompile=False, ckpt_chunksize=64)
    agent = embodied.jax.Agent(model_fn(config), OBS_SPACE, ACT_SPACE, config)
    assert 'Compil' not in capsys.readouterr().out
    assert not agent.precompiled
    assert not isinstance(agent._train, jax.stages.Compiled)
    assert not isinstance(agent._report, jax.stages.Compiled)


def test_agent_runs_with_jit_disabled(tmp_path):
    # Last in the file: setup() switches jit off process-wide, restored below.
    try:
        config = make_config(tmp_path, jit=False, precompile=True, ckpt_chunksize=64)
        agent = embodied.jax.Agent(model_fn(config), OBS_SPACE, ACT_SPACE, config)
        rng = np.random.default_rng(9)
        stream = iter(batches(agent, rng))
        carry = agent.init_train(4)
        for _ in range(3):
            carry, _, mets = agent.train(carry, next(stream))
        stream.close()
        assert int(mets['step']) == 2
        _, acts, _ = agent.policy(agent.init_policy(2), make_obs(rng, 2))
        assert acts['cont'].shape == (2, 2)
        data = agent.save()
        agent.load(data)
        kernel = host(agent.params['net/kernel'])
        np.testing.assert_array_equal(kernel, data['params']['net/kernel'])
    finally:
        jax.config.update('jax_disable_jit', False)
