"""Base interfaces: environments, agents and wrappers."""

from typing import Any

import elements
import numpy as np

# Names used in the annotations of this package.
Spaces = dict[str, elements.Space]
Batch = dict[str, np.ndarray]  # One array per key, with leading batch (and time) axes.
Carry = Any  # Opaque to the caller: whatever the agent returns, it gets back.
Metrics = dict[str, Any]


class Agent:
    """Interface every agent implements; carries are opaque to the caller."""

    def __init__(self, obs_space: Spaces, act_space: Spaces, config: Any):
        pass

    def init_policy(self, batch_size: int) -> Carry:
        """Initial carry of `policy` for a batch of environments."""
        raise NotImplementedError('init_policy(batch_size) -> carry')

    def init_train(self, batch_size: int) -> Carry:
        """Initial carry of `train`."""
        raise NotImplementedError('init_train(batch_size) -> carry')

    def init_report(self, batch_size: int) -> Carry:
        """Initial carry of `report`."""
        raise NotImplementedError('init_report(batch_size) -> carry')

    def policy(self, carry: Carry, obs: Batch, mode: str = 'train') -> tuple[Carry, Batch, Batch]:
        """One acting step: (carry, actions, outputs to store with the step)."""
        raise NotImplementedError('policy(carry, obs, mode) -> carry, act, outs')

    def train(self, carry: Carry, data: Batch) -> tuple[Carry, dict, Metrics]:
        """One training step: (carry, outputs for the replay, metrics)."""
        raise NotImplementedError('train(carry, data) -> carry, outs, metrics')

    def report(self, carry: Carry, data: Batch) -> tuple[Carry, Metrics]:
        """Evaluation metrics (and videos) on a batch."""
        raise NotImplementedError('report(carry, data) -> carry, metrics')

    def stream(self, st: Any) -> Any:
        """Wrap a batch iterator (e.g. to prefetch it onto devices)."""
        raise NotImplementedError('stream(st) -> st')

    def save(self) -> Any:
        """The agent's state for a checkpoint."""
        raise NotImplementedError('save() -> data')

    def load(self, data: Any) -> None:
        """Restore the state returned by `save`."""
        raise NotImplementedError('load(data) -> None')


class Env:
    """Interface every environment implements; resets go through the `reset` action."""

    def __repr__(self):
        return f'{self.__class__.__name__}(obs_space={self.obs_space}, act_space={self.act_space})'

    @property
    def obs_space(self) -> Spaces:
        """Observation spaces; they include those of `step_spaces()`."""
        raise NotImplementedError('Returns: dict of spaces')

    @property
    def act_space(self) -> Spaces:
        """Action spaces; they include a boolean `reset`."""
        raise NotImplementedError('Returns: dict of spaces')

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Apply one action (or reset) and return the observation."""
        raise NotImplementedError('Returns: dict of observations')

    def close(self) -> None:
        """Release the environment's resources."""


class Wrapper:
    """Forwards every attribute it does not define to the wrapped environment."""

    def __init__(self, env: Env):
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


def step_spaces() -> Spaces:
    """The observation spaces every environment has: reward and the episode flags."""
    return {
        'reward': elements.Space(np.float32),
        'is_first': elements.Space(bool),
        'is_last': elements.Space(bool),
        'is_terminal': elements.Space(bool),
    }
