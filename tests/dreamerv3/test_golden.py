"""Golden numbers: the losses and gradient norms of two train steps stay what they were.

The numbers in tests/data/golden_train.json were recorded with an earlier version of the code
(before any speed work), float32, fixed seed and batch. Refactors that keep the math identical
only move them by float rounding; anything else shows up here. To record them again on purpose:

    python tests/dreamerv3/test_golden.py --write tests/data/golden_train.json
"""

import argparse
import json
import pathlib
import sys

import elements
import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import ruamel.yaml as yaml

import dreamerv3
from dreamerv3.agent import Model
from embodied.jax import nets

DATA = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'golden_train.json'
B, T = 2, 8
STEPS = 2
RTOL = 1e-4
S = elements.Space


def spaces():
    """A 64x64 image and a vector observation, one discrete and one continuous action."""
    obs_space = {
        'image': S(np.uint8, (64, 64, 3)),
        'vector': S(np.float32, (5,)),
        'reward': S(np.float32),
        'is_first': S(bool),
        'is_last': S(bool),
        'is_terminal': S(bool),
    }
    act_space = {'act_disc': S(np.int32, (), 0, 3), 'act_cont': S(np.float32, (2,), -1, 1)}
    return obs_space, act_space


def config():
    """The size1m agent config of the imported package, without replay context."""
    root = pathlib.Path(dreamerv3.__file__).resolve().parents[1]
    blocks = yaml.YAML(typ='safe').load((root / 'configs' / 'dreamerv3.yaml').read_text())
    cfg = elements.Config(blocks['defaults']).update(blocks['size1m'])
    cfg = cfg.update({'replay_context': 0, 'batch_size': B, 'batch_length': T})
    keys = ('logdir', 'seed', 'jax', 'batch_size', 'batch_length', 'replay_context')
    keys += ('report_length', 'replica', 'replicas')
    return elements.Config(**cfg.agent, **{k: cfg[k] for k in keys})


def batch(model):
    """Fixed random batch for the model's spaces (episode starts at t=0 and t=5)."""
    rng = np.random.default_rng(7)
    allspaces = {**model.obs_space, **model.act_space, **model.ext_space}
    data = {}
    for key, space in allspaces.items():
        shape = (B, T, *space.shape)
        if space.dtype == bool:
            data[key] = np.zeros(shape, bool)
        elif np.issubdtype(space.dtype, np.integer):
            data[key] = rng.integers(space.low, space.high, shape).astype(space.dtype)
        else:
            low, high = np.maximum(space.low, -2.0), np.minimum(space.high, 2.0)
            data[key] = rng.uniform(low, high, shape).astype(space.dtype)
    data['consec'][:] = 0
    data['is_first'][:, 0] = True
    data['is_first'][:, 5] = True
    data['is_terminal'][0, 4] = True
    data['is_last'][0, 4] = True
    return data


def gradnorms(model, state, carry, data):
    """Norm of the total loss gradient per top-level module, at the initial parameters."""
    prefixes = tuple(f'{m.path}/' for m in model.modules)
    params = {k: v for k, v in state.items() if k.startswith(prefixes)}
    enc, dyn, dec, prevact = carry
    # Without replay context the previous actions are the carried one, then the batch's.
    prevact = {
        k: jnp.concatenate([prevact[k][:, None], data[k][:, :-1]], 1) for k in model.act_space
    }
    obs = {k: data[k] for k in model.obs_space}

    def loss(params):
        fn = lambda: model.loss((enc, dyn, dec), obs, prevact, training=False)[0]
        return nj.pure(fn)({**state, **params}, seed=0)[1]

    grads = jax.grad(loss)(params)
    return {
        m.path: jnp.sqrt(
            sum(jnp.square(v).sum() for k, v in grads.items() if k.startswith(f'{m.path}/'))
        )
        for m in model.modules
    }


def compute():
    """Scalar loss and gradient-norm metrics of STEPS train steps, in float32."""
    previous = nets.COMPUTE_DTYPE, jax.config.read('jax_disable_most_optimizations')
    nets.COMPUTE_DTYPE = jnp.float32
    # Compiling dominates the time of this small batch; unoptimised XLA compiles much faster.
    jax.config.update('jax_disable_most_optimizations', True)
    try:
        obs_space, act_space = spaces()
        model = Model(obs_space, act_space, config())
        data = batch(model)
        carry = model.init_train(B)
        state = nj.init(model.train)({}, carry, data, seed=0)
        norms = jax.device_get(jax.jit(gradnorms, static_argnums=0)(model, state, carry, data))
        train = jax.jit(nj.pure(model.train))
        steps = []
        for step in range(STEPS):
            state, (carry, _, metrics) = train(state, carry, data, seed=step)
            metrics = jax.device_get(metrics)
            keep = {
                k: float(v)
                for k, v in metrics.items()
                if (k.startswith('loss/') or 'grad_norm' in k) and np.ndim(v) == 0
            }
            if step == 0:
                keep.update({f'gradnorm/{k}': float(v) for k, v in norms.items()})
            steps.append(keep)
        return steps
    finally:
        nets.COMPUTE_DTYPE = previous[0]
        jax.config.update('jax_disable_most_optimizations', previous[1])


def test_train_step_matches_golden_numbers():
    expected = json.loads(DATA.read_text())['steps']
    actual = compute()
    assert len(actual) == len(expected)
    for step, (want, got) in enumerate(zip(expected, actual)):
        assert set(want) <= set(got), (step, sorted(set(want) - set(got)))
        for key, value in want.items():
            np.testing.assert_allclose(got[key], value, rtol=RTOL, err_msg=f'step {step} {key}')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='Record the golden train-step numbers.')
    parser.add_argument('--write', type=pathlib.Path, required=True)
    args = parser.parse_args()
    steps = compute()
    args.write.write_text(json.dumps({'batch': [B, T], 'steps': steps}, indent=1) + '\n')
    print(f'wrote {sum(len(s) for s in steps)} numbers of {len(steps)} steps to {args.write}')
    sys.exit(0)
