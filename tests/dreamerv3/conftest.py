"""Shared fixtures for the DreamerV3 model tests: spaces, configs, batches, compute dtype."""

import contextlib
import pathlib
import sys

import elements
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import ruamel.yaml as yaml

from dreamerv3 import factories
from embodied.jax import nets

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The model tests share the run-script tests' helpers (tests/run/runhelpers.py).
sys.path.insert(0, str(ROOT / 'tests' / 'run'))
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
    """Agent config as dreamerv3.agent.Agent receives it: defaults, then presets, then flags."""
    blocks = yaml.YAML(typ='safe').load((ROOT / 'configs' / 'dreamerv3.yaml').read_text())
    config = elements.Config(blocks['defaults'])
    for name in presets:
        config = config.update(blocks[name])
    config = config.update(overrides)
    return factories.agent_config(config)


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


def read_flag(name):
    """Current value of a JAX config flag (attribute or read(), depending on flag and version)."""
    try:
        return getattr(jax.config, name)
    except AttributeError:
        return jax.config.read(name)


# The global JAX flags that building an agent (its setup()) changes.
SETUP_FLAGS = (
    'jax_disable_most_optimizations',
    'jax_disable_jit',
    'jax_transfer_guard',
    'jax_debug_nans',
    'jax_enable_compilation_cache',
)


@contextlib.contextmanager
def kept_jax_settings():
    """Restore the compute dtype and the JAX flags that an agent's setup() changes."""
    previous = nets.COMPUTE_DTYPE, {k: read_flag(k) for k in SETUP_FLAGS}
    try:
        yield
    finally:
        nets.COMPUTE_DTYPE = previous[0]
        for key, value in previous[1].items():
            jax.config.update(key, value)


@contextlib.contextmanager
def compute_dtype(dtype):
    """Set the compute dtype and fast (unoptimised) XLA compiles; restore both afterwards."""
    previous = nets.COMPUTE_DTYPE, read_flag('jax_disable_most_optimizations')
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
