"""Crafter, wrapping `crafter.Env` directly (its gym registration is broken).

With `logs=True` every step carries `log/achievement_<name>` unlock counts; with a `logdir`,
each finished episode appends a line to `<logdir>/stats.jsonl`.
"""

import json

import elements
import numpy as np

from embodied.core.base import Env, step_spaces

from . import registry


class Crafter(Env):
    """Crafter with its own reward (`task='reward'`) or zero reward (`task='noreward'`)."""

    def __init__(self, task, size=(64, 64), logs=False, logdir=None, seed=None, length=10000):
        if task not in ('reward', 'noreward'):
            raise ValueError(f"Unknown Crafter task '{task}'; expected 'reward' or 'noreward'.")
        crafter = registry.require('crafter', 'crafter')
        self._env = crafter.Env(
            size=tuple(int(x) for x in size), reward=(task == 'reward'), length=length, seed=seed
        )
        self._logs = logs
        self._logdir = logdir and elements.Path(logdir)
        if self._logdir:
            self._logdir.mkdir()
        self._achievements = list(crafter.constants.achievements)
        self._episode = 0
        self._length = 0
        self._reward = 0.0
        self._done = True

    @property
    def obs_space(self):
        """The image, the standard keys and `log/` diagnostics."""
        shape = tuple(int(x) for x in self._env.observation_space.shape)
        spaces = {
            'image': elements.Space(np.uint8, shape),
            **step_spaces(),
            'log/reward': elements.Space(np.float32),
        }
        if self._logs:
            spaces.update(
                {f'log/achievement_{name}': elements.Space(np.int32) for name in self._achievements}
            )
        return spaces

    @property
    def act_space(self):
        """One of Crafter's 17 discrete actions."""
        return {
            'action': elements.Space(np.int32, (), 0, int(self._env.action_space.n)),
            'reset': elements.Space(bool),
        }

    def step(self, action):
        """Step the game, or reset after a reset request or an ending."""
        if action['reset'] or self._done:
            self._episode += 1
            self._length = 0
            self._reward = 0.0
            self._done = False
            image = self._env.reset()
            return self._obs(image, 0.0, None, is_first=True)
        image, reward, done, info = self._env.step(int(action['action']))
        self._done = bool(done)
        self._reward += reward
        self._length += 1
        if self._done and self._logdir:
            self._write_stats(info)
        return self._obs(
            image, reward, info, is_last=self._done, is_terminal=(info['discount'] == 0)
        )

    def render(self):
        """A larger view of the world for videos."""
        return self._env.render()

    def _obs(self, image, reward, info, is_first=False, is_last=False, is_terminal=False):
        obs = {
            'image': image,
            'reward': np.float32(reward),
            'is_first': np.bool_(is_first),
            'is_last': np.bool_(is_last),
            'is_terminal': np.bool_(is_terminal),
            # The env's own reward, also available when the agent gets none (noreward).
            'log/reward': np.float32(info['reward'] if info else 0.0),
        }
        if self._logs:
            for name in self._achievements:
                count = info['achievements'][name] if info else 0
                obs[f'log/achievement_{name}'] = np.int32(count)
        return obs

    def _write_stats(self, info):
        stats = {
            'episode': self._episode,
            'length': self._length,
            'reward': round(float(self._reward), 1),
            **{f'achievement_{k}': int(v) for k, v in info['achievements'].items()},
        }
        with (self._logdir / 'stats.jsonl').open('a') as f:
            f.write(json.dumps(stats) + '\n')
