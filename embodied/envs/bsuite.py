"""Behaviour Suite experiments, suite `bsuite` (`bsuite_<experiment>/<index>`).

Adapted by FromDM. Two-dimensional observations (bsuite's (1, n) rows and images) are
flattened to vectors. After the experiment's episode count, the run continues `exit_after`
seconds (so loggers can flush) and then raises `BSuiteFinished` to end it, as the reference
does. With a `logdir`, bsuite also writes its CSV results there for its analysis notebook.
"""

import time

import elements
import numpy as np

from embodied.core.base import Env

from . import registry


class BSuiteFinished(RuntimeError):
    """Raised once the experiment's episode budget is used up (plus the grace period)."""


class BSuite(Env):
    """One bsuite experiment as an embodied environment."""

    def __init__(self, task, logdir=None, exit_after=600):
        bsuite = registry.require('bsuite', 'bsuite')
        from . import from_dm

        if '/' not in task:
            task = f'{task}/0'
        if logdir:
            env = bsuite.load_and_record_to_csv(task, results_dir=str(logdir), overwrite=True)
        else:
            env = bsuite.load_from_id(task)
        self.task = task
        self.max_episodes = int(env.bsuite_num_episodes)
        self.num_episodes = 0
        self.exit_after = exit_after
        self._deadline = None
        self._env = from_dm.FromDM(env)
        self._flat = {
            k
            for k, v in self._env.obs_space.items()
            if len(v.shape) == 2 and np.issubdtype(v.dtype, np.floating)
        }

    @property
    def obs_space(self):
        """FromDM's spaces with rank-2 float observations flattened."""
        spaces = dict(self._env.obs_space)
        for key in self._flat:
            space = spaces[key]
            spaces[key] = elements.Space(
                space.dtype,
                (int(np.prod(space.shape)),),
                space.low.reshape(-1),
                space.high.reshape(-1),
            )
        return spaces

    @property
    def act_space(self):
        """The discrete `action` and `reset`."""
        return self._env.act_space

    def step(self, action):
        """Step the experiment; raise BSuiteFinished once its budget and grace period end."""
        obs = self._env.step(action)
        for key in self._flat:
            obs[key] = np.asarray(obs[key]).reshape(-1)
        if obs['is_last']:
            self.num_episodes += 1
        if self.num_episodes >= self.max_episodes:
            if self._deadline is None:
                self._deadline = time.time() + self.exit_after
            if time.time() >= self._deadline:
                raise BSuiteFinished(
                    f'bsuite experiment {self.task} finished its {self.max_episodes} episodes; '
                    'the run is complete.'
                )
        return obs

    def close(self):
        """Close the experiment."""
        self._env.close()
