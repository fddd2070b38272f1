"""Shared fixtures for the DreamerV3 model tests: spaces, configs, batches, compute dtype."""

import contextlib

import elements
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from embodied.jax import nets

S = elements.Space


def dummy_spaces():
    """Observation and action spaces of the dummy_disc task after wrapping."""
    obs_space = {
        'image': S(np.uint8, (64, 64, 3)),
        'vector': S(np.float32, (7,)),
        'token': S(np.int32, (), 0, 256),
        'count': S(np.float32, (), 0, 100),
        'float2d': S(np.float32, (4, 5)),
        'int2d': S(np.int32, (2, 3), 0, 4),
        'reward': S(np.float32),
        'is_first': S(bool),
        'is_last': S(bool),
        'is_terminal': S(bool),
    }
    act_space = {
        'act_disc': S(np.int32, (), 0, 5),
        'act_cont': S(np.float32, (6,), -1, 1),
    }
    return obs_space, act_space


def load_config(*presets, **overrides):
    """The model's config as dreamerv3.agent.Agent passes it to `Model`: the `agent` section
    and `replay_context` of the run config with these presets, then the overrides."""
    config = helpers.config(presets=presets or ('defaults',)).update(overrides)
    return elements.Config(**config.agent, replay_context=config.replay_context)


def random_batch(spaces, batch, length, seed=0):
    """Random (batch, length, ...) numpy arrays for every space (is_first only at t=0)."""
    rng = np.random.default_rng(seed)
    data = {}
    for key, space in spaces.items():
        shape = (batch, length, *space.shape)
        if space.dtype == bool:
            value = np.zeros(shape, bool)
        elif np.issubdtype(space.dtype, np.integer):
            value = rng.integers(space.low, space.high, shape).astype(space.dtype)
        else:
            low = np.maximum(space.low, -3.0)
            high = np.minimum(space.high, 3.0)
            value = rng.uniform(low, high, shape).astype(space.dtype)
        data[key] = value
    if 'is_first' in data:
        data['is_first'][:, 0] = True
    return data


# Building an agent changes global JAX settings; this restores them.
kept_jax_settings = helpers.kept_jax_settings


@contextlib.contextmanager
def compute_dtype(dtype):
    """Set the compute dtype and fast (unoptimised) XLA compiles; restore both afterwards."""
    previous = nets.COMPUTE_DTYPE, helpers.read_flag('jax_disable_most_optimizations')
    nets.COMPUTE_DTYPE = dtype
    # These programs are tiny; compiling them dominates the test time.
    jax.config.update('jax_disable_most_optimizations', True)
    try:
        yield dtype
    finally:
        nets.COMPUTE_DTYPE = previous[0]
        jax.config.update('jax_disable_most_optimizations', previous[1])


@pytest.fixture(scope='module')
def float32():
    """Float32 activations for the module's tests (fastest to compile on CPU)."""
    with compute_dtype(jnp.float32):
        yield jnp.float32
