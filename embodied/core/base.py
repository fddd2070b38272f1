"""Base interfaces: environments, agents and wrappers."""

import elements
import numpy as np


class Agent:
    """Interface every agent implements; carries are opaque to the caller."""

    def __init__(self, obs_space, act_space, config):
        pass

    def init_policy(self, batch_size):
        raise NotImplementedError('init_policy(batch_size) -> carry')

    def init_train(self, batch_size):
        raise NotImplementedError('init_train(batch_size) -> carry')

    def init_report(self, batch_size):
        raise NotImplementedError('init_report(batch_size) -> carry')

    def policy(self, carry, obs, mode='train'):
        raise NotImplementedError('policy(carry, obs, mode) -> carry, act, outs')

    def train(self, carry, data):
        raise NotImplementedError('train(carry, data) -> carry, outs, metrics')

    def report(self, carry, data):
        raise NotImplementedError('report(carry, data) -> carry, metrics')

    def stream(self, st):
        raise NotImplementedError('stream(st) -> st')

    def save(self):
        raise NotImplementedError('save() -> data')

    def load(self, data):
        raise NotImplementedError('load(data) -> None')


class Env:
    """Interface every environment implements; resets go through the `reset` action."""

    def __repr__(self):
        return f'{self.__class__.__name__}(obs_space={self.obs_space}, act_space={self.act_space})'

    @property
    def obs_space(self):
        # Must contain at least is_first, is_last, is_terminal, reward.
        raise NotImplementedError('Returns: dict of spaces')

    @property
    def act_space(self):
        # Must contain at least reset.
        raise NotImplementedError('Returns: dict of spaces')

    def step(self, action):
        raise NotImplementedError('Returns: dict of observations')

    def close(self):
        pass


class Wrapper:
    """Forwards every attribute it does not define to the wrapped environment."""

    def __init__(self, env):
        self.env = env

    def __len__(self):
        return len(self.env)

    def __bool__(self):
        return bool(self.env)

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        try:
            return getattr(self.env, name)
        except AttributeError:
            raise ValueError(
                f"'{type(self.env).__name__}' wrapped by '{type(self).__name__}' "
                f"has no attribute '{name}'"
            )


class SetupError(RuntimeError):
    """The run cannot start as configured; the message says which setting to change."""


def step_spaces():
    """The observation spaces every environment has: reward and the episode flags (spec 2.1)."""
    return {
        'reward': elements.Space(np.float32),
        'is_first': elements.Space(bool),
        'is_last': elements.Space(bool),
        'is_terminal': elements.Space(bool),
    }
