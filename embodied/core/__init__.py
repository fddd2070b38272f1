"""Framework pieces with no JAX: base API, wrappers, driver, replay, streams, clocks."""

from .base import Agent, Env, Wrapper  # noqa: F401
