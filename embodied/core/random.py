"""An agent that acts uniformly at random and never learns."""

import numpy as np

from .base import Agent


class RandomAgent(Agent):
    """Samples every action key independently per environment; all learning calls are no-ops."""

    def __init__(self, obs_space, act_space):
        super().__init__(obs_space, act_space, None)
        self.obs_space = obs_space
        self.act_space = {k: v for k, v in act_space.items() if k != 'reset'}

    def init_policy(self, batch_size):
        """Return the (empty) policy carry."""
        return ()

    def init_train(self, batch_size):
        """Return the (empty) train carry."""
        return ()

    def init_report(self, batch_size):
        """Return the (empty) report carry."""
        return ()

    def policy(self, carry, obs, mode='train'):
        """Sample one action per environment in the batch."""
        batch_size = len(obs['is_first'] if 'is_first' in obs else next(iter(obs.values())))
        act = {
            k: np.stack([space.sample() for _ in range(batch_size)])
            for k, space in self.act_space.items()
        }
        return carry, act, {}

    def train(self, carry, data):
        """Do nothing; return empty outputs and metrics."""
        return carry, {}, {}

    def report(self, carry, data):
        """Do nothing; return empty metrics."""
        return carry, {}

    def stream(self, st):
        """Return the stream unchanged."""
        return st

    def save(self):
        """There is no state to save."""
        return None

    def load(self, data=None, regex=None):
        """Accept and ignore any saved data."""
        return None
