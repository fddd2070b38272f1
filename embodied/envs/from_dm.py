"""Adapter from the `dm_env.Environment` API to `embodied.Env`, suite `dm`.

As the `dm` suite (`dm_<module>:<factory>`), the task names a callable returning a dm_env
environment, for example `dm_mypackage.envs:make_env`.
"""

import importlib

import elements
import numpy as np

from embodied.core.base import Env, step_spaces

from . import registry


class FromDM(Env):
    """Exposes a dm_env environment's specs as spaces and its time steps as observations.

    Observation names containing `/` use `_` instead; an observation called `reward` becomes
    `obs_reward`; zero-size observations are dropped. A non-dict observation (action) spec
    appears under `obs_key` (`act_key`).
    """

    def __init__(self, env, obs_key='observation', act_key='action', **kwargs):
        if isinstance(env, str):
            env = _make_from_string(env, kwargs)
        elif kwargs:
            raise TypeError(
                f'FromDM got keyword arguments {sorted(kwargs)} together with an environment '
                'instance; pass them to the factory that builds the environment instead.'
            )
        self._env = env
        self._obs_dict = isinstance(env.observation_spec(), dict)
        self._act_dict = isinstance(env.action_spec(), dict)
        self._obs_key = obs_key
        self._act_key = act_key
        self._obs_spec = self._renamed(env.observation_spec(), obs_key, self._obs_dict)
        self._dropped = [k for k, v in self._obs_spec.items() if int(np.prod(v.shape)) == 0]
        for key in self._dropped:
            del self._obs_spec[key]
        self._act_spec = dict(env.action_spec()) if self._act_dict else {act_key: env.action_spec()}
        self._done = True

    @property
    def env(self):
        """The wrapped dm_env environment."""
        return self._env

    @property
    def obs_space(self):
        """The standard keys plus one space per (renamed) observation."""
        spaces = {
            **step_spaces(),
        }
        for key, spec in self._obs_spec.items():
            spaces[key] = _convert(spec, key, action=False)
        return spaces

    @property
    def act_space(self):
        """One space per action spec, plus `reset`."""
        spaces = {'reset': elements.Space(bool)}
        for key, spec in self._act_spec.items():
            spaces[key] = _convert(spec, key, action=True)
        return spaces

    def step(self, action):
        """Reset on request or after a last time step; otherwise step with the action."""
        if action['reset'] or self._done:
            time_step = self._env.reset()
        else:
            if self._act_dict:
                act = {k: action[k] for k in self._act_spec}
            else:
                act = action[self._act_key]
            time_step = self._env.step(act)
        self._done = time_step.last()
        return self._obs(time_step)

    def close(self):
        """Close the wrapped environment."""
        self._env.close()

    def _obs(self, time_step):
        first = time_step.first()
        if not first and time_step.discount not in (0, 1):
            raise ValueError(
                f'FromDM supports discounts of 0 (termination) or 1 only, got '
                f'{time_step.discount}; rescale rewards instead of discounting inside the env.'
            )
        obs = self._renamed(time_step.observation, self._obs_key, self._obs_dict)
        for key in self._dropped:
            obs.pop(key, None)
        return {
            'reward': np.float32(0.0 if first else time_step.reward),
            'is_first': np.bool_(first),
            'is_last': np.bool_(time_step.last()),
            'is_terminal': np.bool_(False if first else time_step.discount == 0),
            **obs,
        }

    @staticmethod
    def _renamed(values, key, is_dict):
        values = dict(values) if is_dict else {key: values}
        if 'reward' in values:
            values['obs_reward'] = values.pop('reward')
        return {k.replace('/', '_'): v for k, v in values.items()}


def _convert(spec, key, action):
    """The elements.Space for a dm_env spec."""
    if hasattr(spec, 'num_values'):
        return elements.Space(spec.dtype, (), 0, spec.num_values)
    if hasattr(spec, 'minimum'):
        low, high = np.asarray(spec.minimum), np.asarray(spec.maximum)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(
                f'Bounded spec {key!r} has non-finite bounds [{low}, {high}]; declare it as an '
                'unbounded dm_env.specs.Array instead.'
            )
        if action and np.issubdtype(spec.dtype, np.integer):
            # dm_env maxima are inclusive; integer action spaces exclude `high` (class counts).
            high = high.astype(np.int64) + 1
        return elements.Space(spec.dtype, spec.shape, low, high)
    return elements.Space(spec.dtype, spec.shape)


def _make_from_string(name, kwargs):
    registry.require('dm', 'dm_env')
    if ':' not in name:
        raise ValueError(
            f"The dm suite needs a task of the form '<module>:<factory>' (e.g. "
            f"dm_mypackage.envs:make_env), got '{name}'."
        )
    module, attr = name.split(':', 1)
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(
            f"Cannot load the dm_env factory '{name}': {e}. Check the module path and the "
            'function name.'
        ) from e
    return factory(**kwargs)
