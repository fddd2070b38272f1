"""Fixtures for every test: a compiled debug agent shared by the tests of a worker, a fake
agent, and clocks that always fire. The helpers they use are in tests/support/helpers.py."""

import os
import tempfile

import helpers
import jax
import pytest

from embodied.jax.setup import merge_flags, xla_flags

# Command lines started by the tests compile the same debug programs again; JAX's persistent
# cache lets them and the in-process agents reuse what an earlier test compiled.
os.environ.setdefault(
    'JAX_COMPILATION_CACHE_DIR', os.path.join(tempfile.gettempdir(), 'dreamerv3-test-jax-cache')
)
# XLA_FLAGS belong to that cache's keys and apply when the backend starts, which may be before
# a test's agent runs setup(): start it with the flags of the debug preset's command line.
os.environ['XLA_FLAGS'] = merge_flags(os.environ.get('XLA_FLAGS', ''), xla_flags('cpu', debug=True))
jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])


def pytest_collection_modifyitems(config, items):
    """Order the tests for the workers of `pytest -n N` (pyproject: `--dist worksteal`, which
    hands worker i the i-th of N equal runs of this order, then lets idle workers take tests
    from the end of a busy one's queue).

    The tests of the shared debug agent open the first run, so one worker compiles that agent
    and the rest find it compiled; the slow command-line tests open the others, so that none
    starts last. Every worker computes the same order, as xdist requires.
    """
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    if workers < 2:
        return
    shared = [item for item in items if 'shared_agent' in item.fixturenames]
    slow = [item for item in items if item.get_closest_marker('slow') and item not in shared]
    runs = [shared] + [slow[i :: workers - 1] for i in range(workers - 1)]
    size = len(items) // workers
    rest = iter(item for item in items if item not in shared and item not in slow)
    for run in runs[:-1]:
        run.extend(next(rest) for _ in range(max(0, size - len(run))))
    runs[-1].extend(rest)
    items[:] = [item for run in runs for item in run]


@pytest.fixture(scope='session')
def shared_agent(tmp_path_factory):
    """The DreamerV3 agent of the debug config on the dummy task with its initial state,
    compiled once per worker (the second worker usually finds it in the persistent cache)."""
    from dreamerv3 import main

    # Each program compiles when a test first calls it: most tests never report.
    flags = ('--jax.precompile', 'False')
    config = helpers.config(*flags, logdir=tmp_path_factory.mktemp('shared_agent'))
    with helpers.kept_jax_settings():
        agent = main.make_agent(config)
        initial = agent.save()
    return agent, initial


@pytest.fixture
def debug_agent(shared_agent):
    """The shared debug agent in its initial state, with its JAX settings for the test."""
    agent, initial = shared_agent
    with helpers.settings_of(agent):
        agent.load(initial)
        yield agent


@pytest.fixture
def make_debug_agent(shared_agent, debug_agent):
    """A `make_agent` for the scripts: the shared debug agent, in its initial state at every
    call, as a new process would build it."""
    return helpers.reuse(*shared_agent)


@pytest.fixture
def fake_agent():
    """A factory for FakeAgent bound to the spaces of env 0 of a config."""

    def make(config):
        from embodied.envs import registry

        env = registry.make_env(config, 0)
        obs_space = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
        act_space = {k: v for k, v in env.act_space.items() if k != 'reset'}
        env.close()
        return helpers.FakeAgent(obs_space, act_space)

    return make


@pytest.fixture
def always_clock(monkeypatch):
    """Make every LocalClock with a positive period fire on every call."""
    from embodied.core import clock

    class Always:
        def __init__(self, every, first=False):
            self.every = every

        def __call__(self, step=None):
            return self.every > 0

    monkeypatch.setattr(clock, 'LocalClock', Always)
    return Always
