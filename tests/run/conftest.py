"""Fixtures for the run-script tests."""

import pytest
from runhelpers import FakeAgent


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


@pytest.fixture
def fake_agent():
    """A factory for FakeAgent bound to the spaces of env 0 of a config."""

    def make(config):
        from dreamerv3 import factories

        env = factories.make_env(config, 0)
        obs_space = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
        act_space = {k: v for k, v in env.act_space.items() if k != 'reset'}
        env.close()
        return FakeAgent(obs_space, act_space)

    return make
