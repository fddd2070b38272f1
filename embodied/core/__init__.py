"""Framework pieces with no JAX: base API, wrappers, driver, replay, streams, clocks."""

from . import chunks, clock, limiters, replay, sampling, streams, wrappers  # noqa: F401
from .base import Agent, Env, SetupError, Wrapper  # noqa: F401
from .driver import Driver  # noqa: F401
from .random_agent import RandomAgent  # noqa: F401
from .wrappers import wrap_env  # noqa: F401
