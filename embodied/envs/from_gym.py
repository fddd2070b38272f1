"""Adapter from Gymnasium (and old-gym-API) environments to `embodied.Env`.

Suite `gym`: `gym_<id>` builds `gymnasium.make(<id>, **kwargs)`, e.g. `gym_CartPole-v1`.
Environment instances may also follow the old gym API (`reset() -> obs`,
`step() -> (obs, reward, done, info)`); the API is detected from what they return.

Dict spaces are flattened with `/` separators. A non-dict observation goes under `obs_key`,
`image` by default even for vectors, as in the reference (kept for compatibility); set
`obs_key='vector'` (config `env.gym.obs_key`) for a clearer name.
"""

from types import ModuleType
from typing import Any

import elements
import numpy as np

from embodied.core.base import Env, Spaces, step_spaces

from . import registry
from .custom import ImportPathError, import_path_module, split_path


class FromGym(Env):
    """Exposes a gym(nasium) environment through spaces and the `reset` action.

    New API: `is_terminal = terminated`, `is_last = terminated or truncated`. Old API:
    `is_last = done` and `is_terminal = info['is_terminal']` if given, else `done` unless the
    info marks a time-limit truncation (`TimeLimit.truncated`).
    """

    def __init__(
        self,
        env: Any,
        obs_key: str = 'image',
        act_key: str = 'action',
        seed: int | None = None,
        **kwargs: Any,
    ):
        if isinstance(env, str):
            gym = registry.require('gym', 'gymnasium')
            env = gym.make(env, **kwargs)
        elif kwargs:
            raise TypeError(
                f'FromGym got keyword arguments {sorted(kwargs)} together with an environment '
                'instance; pass them when making the environment instead.'
            )
        self._env = env
        self._obs_key = obs_key
        self._act_key = act_key
        self._seed = seed
        self._obs_dict = _is_dict(env.observation_space)
        self._act_dict = _is_dict(env.action_space)
        if self._obs_dict:
            self._obs_gym = flatten(env.observation_space.spaces)
        else:
            self._obs_gym = {obs_key: env.observation_space}
        if self._act_dict:
            self._act_gym = flatten(env.action_space.spaces)
        else:
            self._act_gym = {act_key: env.action_space}
        self._obs_space = {k: _convert(v, k, action=False) for k, v in self._obs_gym.items()}
        self._act_space = {k: _convert(v, k, action=True) for k, v in self._act_gym.items()}
        self._done = True
        self._info = None

    @property
    def env(self) -> Any:
        """The wrapped gym(nasium) environment."""
        return self._env

    @property
    def info(self) -> dict | None:
        """The info dict of the most recent reset or step."""
        return self._info

    @property
    def obs_space(self) -> Spaces:
        """Flattened observation spaces plus the standard keys."""
        return {
            **self._obs_space,
            **step_spaces(),
        }

    @property
    def act_space(self) -> Spaces:
        """Flattened action spaces plus `reset`."""
        return {**self._act_space, 'reset': elements.Space(bool)}

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Reset on request or after an ending; otherwise step the environment."""
        if action['reset'] or self._done:
            self._done = False
            return self._obs(self._reset(), 0.0, is_first=True)
        if self._act_dict:
            act = elements.tree.nestdict({k: self._to_gym(k, action[k]) for k in self._act_gym})
        else:
            act = self._to_gym(self._act_key, action[self._act_key])
        result = self._env.step(act)
        if len(result) == 5:
            obs, reward, terminated, truncated, self._info = result
            terminal = bool(terminated)
            last = terminal or bool(truncated)
        elif len(result) == 4:
            obs, reward, done, self._info = result
            info = self._info or {}
            last = bool(done)
            if 'is_terminal' in info:
                terminal = bool(info['is_terminal'])
            else:
                terminal = last and not info.get('TimeLimit.truncated', False)
        else:
            raise ValueError(
                f'{type(self._env).__name__}.step() returned {len(result)} values; expected '
                '(obs, reward, terminated, truncated, info) or (obs, reward, done, info).'
            )
        self._done = last
        return self._obs(obs, reward, is_last=last, is_terminal=terminal)

    def render(self) -> np.ndarray:
        """An RGB frame from the environment (needs a render mode that returns arrays)."""
        image = self._env.render()
        if image is None:
            raise ValueError(
                'The gym environment rendered nothing; create it with render_mode="rgb_array".'
            )
        return image

    def close(self) -> None:
        """Close the wrapped environment, ignoring errors of half-closed ones."""
        try:
            self._env.close()
        except Exception:
            pass

    def _reset(self):
        seed, self._seed = self._seed, None  # Seed only the first reset; later ones continue.
        if seed is None:
            result = self._env.reset()
        else:
            try:
                result = self._env.reset(seed=seed)
            except TypeError:
                # Old gym API: seeding is a separate call (some envs cannot be seeded at all).
                if hasattr(self._env, 'seed'):
                    self._env.seed(seed)
                result = self._env.reset()
        if _is_obs_info_pair(result, self._env.observation_space):
            obs, self._info = result
        else:
            obs, self._info = result, {}
        return obs

    def _obs(self, obs, reward, is_first=False, is_last=False, is_terminal=False):
        obs = flatten(obs) if self._obs_dict else {self._obs_key: obs}
        obs = {k: self._from_gym(k, v) for k, v in obs.items()}
        obs.update(
            reward=np.float32(reward),
            is_first=np.bool_(is_first),
            is_last=np.bool_(is_last),
            is_terminal=np.bool_(is_terminal),
        )
        return obs

    def _to_gym(self, key, value):
        space = self._act_gym[key]
        if 'Discrete' in _names(space):
            return int(value) + int(getattr(space, 'start', 0))
        if 'MultiDiscrete' in _names(space):
            return np.asarray(value) + np.asarray(getattr(space, 'start', 0))
        return np.asarray(value)

    def _from_gym(self, key, value):
        space = self._obs_gym[key]
        value = np.asarray(value)
        if {'Discrete', 'MultiDiscrete'} & _names(space):
            value = value - np.asarray(getattr(space, 'start', 0), value.dtype)
        return value


def _names(space):
    return {cls.__name__ for cls in type(space).__mro__}


def _is_dict(space):
    return 'Dict' in _names(space) or isinstance(getattr(space, 'spaces', None), dict)


def _convert(space, key, action):
    """The elements.Space for a gym(nasium) space."""
    names = _names(space)
    if 'Discrete' in names:
        return elements.Space(np.int32, (), 0, int(space.n))
    if 'MultiDiscrete' in names:
        nvec = np.asarray(space.nvec)
        return elements.Space(np.int32, nvec.shape, 0, nvec)
    if 'MultiBinary' in names:
        return elements.Space(np.int32, tuple(space.shape), 0, 2)
    if 'Box' in names or hasattr(space, 'low'):
        dtype = np.dtype(space.dtype)
        low, high = np.asarray(space.low), np.asarray(space.high)
        if action and np.issubdtype(dtype, np.integer):
            # Gym bounds are inclusive; integer action spaces here exclude `high`.
            high = high + 1
        return elements.Space(dtype, tuple(space.shape), low, high)
    raise ValueError(
        f'Unsupported gym space {space!r} for key {key!r}; FromGym supports Box, Discrete, '
        'MultiDiscrete, MultiBinary and (nested) Dict spaces.'
    )


def flatten(nest: dict, prefix: str | None = None) -> dict:
    """Flatten nested dicts (or gym Dict spaces) into one dict with `/`-joined keys."""
    result = {}
    for key, value in nest.items():
        key = f'{prefix}/{key}' if prefix else key
        if _is_dict(value):
            value = value.spaces
        if isinstance(value, dict):
            result.update(flatten(value, key))
        else:
            result[key] = value
    return result


def make_old_gym(gym: ModuleType, env_id: str, **kwargs: Any) -> Any:
    """`gym.make` for the old `gym` package, without its NumPy-2-incompatible env checker."""
    try:
        return gym.make(env_id, disable_env_checker=True, **kwargs)
    except TypeError:
        # gym < 0.24 has no env checker and passes unknown arguments on to the env.
        return gym.make(env_id, **kwargs)


def _is_obs_info_pair(result, obs_space):
    """Whether `reset()` returned the new API's (obs, info) rather than a bare observation."""
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        return False
    # A Tuple observation space could legitimately produce a 2-tuple ending in a dict.
    return 'Tuple' not in _names(obs_space)


def known_ids(task: str) -> list[str] | None:
    """The registered gymnasium ids; None for a task that names a module, which may add more."""
    if ':' in task:
        return None
    return list(registry.require('gym', 'gymnasium').registry)


def make_gym(task: str, obs_key='image', act_key='action', seed=None, **kwargs):
    """The `gym` suite: a gymnasium id, `<module>:<id>` or an entry point `<module>:<Class>`."""
    adapter = dict(obs_key=obs_key, act_key=act_key, seed=seed)
    if ':' not in task:
        return FromGym(task, **adapter, **kwargs)
    gym = registry.require('gym', 'gymnasium')
    module = import_path_module('gym', task)
    _, name = split_path('gym', task)
    if name in gym.registry:
        # Importing the module registered the id.
        return FromGym(name, **adapter, **kwargs)
    entry = getattr(module, name, None)
    if callable(entry):
        return FromGym(entry(**kwargs), **adapter)
    ids = sorted(
        key
        for key, spec in gym.registry.items()
        if _entry_module(spec.entry_point) == module.__name__
    )
    known = f' It registers: {", ".join(ids)}.' if ids else ''
    raise ImportPathError(
        f"Task 'gym_{task}': the module '{module.__name__}' neither registers the gymnasium id "
        f"'{name}' nor defines an environment class or factory of that name.{known}"
    )


def _entry_module(entry_point):
    """The module name of a gymnasium entry point (a 'module:attr' string or a callable)."""
    if isinstance(entry_point, str):
        return entry_point.split(':', 1)[0]
    return getattr(entry_point, '__module__', None)
