"""An agent that acts uniformly at random and never learns."""

from typing import Any

import numpy as np

from .base import Agent, Batch, Spaces


class RandomAgent(Agent):
    """Samples every action key independently per environment; all learning calls are no-ops."""

    def __init__(self, obs_space: Spaces, act_space: Spaces):
        super().__init__(obs_space, act_space, None)
        self.obs_space = obs_space
        self.act_space = {k: v for k, v in act_space.items() if k != 'reset'}

    def init_policy(self, batch_size: int) -> tuple:
        """Return the (empty) policy carry."""
        return ()

    def init_train(self, batch_size: int) -> tuple:
        """Return the (empty) train carry."""
        return ()

    def init_report(self, batch_size: int) -> tuple:
        """Return the (empty) report carry."""
        return ()

    def policy(self, carry: tuple, obs: Batch, mode: str = 'train') -> tuple[tuple, Batch, dict]:
        """Sample one action per environment in the batch."""
        batch_size = len(obs['is_first'] if 'is_first' in obs else next(iter(obs.values())))
        act = {
            k: np.stack([space.sample() for _ in range(batch_size)])
            for k, space in self.act_space.items()
        }
        return carry, act, {}

    def train(self, carry: tuple, data: Batch) -> tuple[tuple, dict, dict]:
        """Do nothing; return empty outputs and metrics."""
        return carry, {}, {}

    def report(self, carry: tuple, data: Batch) -> tuple[tuple, dict]:
        """Do nothing; return empty metrics."""
        return carry, {}

    def stream(self, st: Any) -> Any:
        """Return the stream unchanged."""
        return st

    def save(self) -> None:
        """There is no state to save."""
        return None

    def load(self, data: Any = None, regex: str | None = None) -> None:
        """Accept and ignore any saved data."""
        return None
