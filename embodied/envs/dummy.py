"""A deterministic environment with every kind of observation and action, for tests and smoke
runs."""

import elements
import numpy as np

from embodied.core.base import Env, step_spaces


class Dummy(Env):
    """Fixed-length episodes with constant observations and reward 1 per step.

    The task name is ignored. An episode is one reset step (reward 0, `is_first`) followed by
    `length` steps; the last of them has `is_last` and `is_terminal` set.
    """

    def __init__(self, task, size=(64, 64), length=100):
        self.task = task
        self.size = tuple(size)
        self.length = length
        self._count = 0
        self._done = True

    @property
    def obs_space(self):
        """Observation spaces, including the four standard keys."""
        return {
            'image': elements.Space(np.uint8, self.size + (3,)),
            'vector': elements.Space(np.float32, (7,)),
            'token': elements.Space(np.int32, (), 0, 256),
            'count': elements.Space(np.float32, (), 0, self.length),
            'float2d': elements.Space(np.float32, (4, 5)),
            'int2d': elements.Space(np.int32, (2, 3), 0, 4),
            **step_spaces(),
        }

    @property
    def act_space(self):
        """Action spaces: one discrete key, one unbounded continuous key, and `reset`."""
        return {
            'act_disc': elements.Space(np.int32, (), 0, 5),
            'act_cont': elements.Space(np.float32, (6,)),
            'reset': elements.Space(bool),
        }

    def step(self, action):
        """Advance one step, or start a new episode on `reset` or after the last step."""
        if action['reset'] or self._done:
            self._count = 0
            self._done = False
            return self._obs(0.0, is_first=True)
        self._count += 1
        self._done = self._count >= self.length
        return self._obs(1.0, is_last=self._done, is_terminal=self._done)

    def _obs(self, reward, is_first=False, is_last=False, is_terminal=False):
        return {
            'image': np.full(self.size + (3,), 255, np.uint8),
            'vector': np.zeros(7, np.float32),
            'token': np.zeros((), np.int32),
            'count': np.float32(self._count),
            'float2d': np.ones((4, 5), np.float32),
            'int2d': np.ones((2, 3), np.int32),
            'reward': np.float32(reward),
            'is_first': np.bool_(is_first),
            'is_last': np.bool_(is_last),
            'is_terminal': np.bool_(is_terminal),
        }
