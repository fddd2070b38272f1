"""Shared fixtures for the embodied.jax tests."""

import jax.numpy as jnp
import pytest

from embodied.jax import nets


@pytest.fixture
def float32_compute():
    """Run a test with float32 as the compute dtype, restoring the previous one afterwards."""
    before = nets.COMPUTE_DTYPE
    nets.COMPUTE_DTYPE = jnp.float32
    yield
    nets.COMPUTE_DTYPE = before
