"""Environment wrappers and the standard wrapping every environment receives (`wrap_env`)."""

import collections
import time
from collections.abc import Callable
from typing import Any

import elements
import numpy as np

from .base import Env, Spaces, Wrapper


def wrap_env(env: Env) -> Env:
    """Apply the standard wrappers, innermost first.

    NormalizeAction for each continuous action key, then UnifyDtypes, CheckSpaces, and ClipAction
    for each continuous key. An agent action is therefore clipped to [-1, 1], checked against the
    normalised space, cast to the env's dtypes and finally mapped onto the env's bounds.
    """
    continuous = [k for k, v in env.act_space.items() if k != 'reset' and not v.discrete]
    for key in continuous:
        env = NormalizeAction(env, key)
    env = UnifyDtypes(env)
    env = CheckSpaces(env)
    for key in continuous:
        env = ClipAction(env, key)
    return env


def _require_key(space, key, wrapper):
    if key not in space:
        raise KeyError(
            f'{wrapper} got key {key!r}, which is not in the action space with keys '
            f'{sorted(space)}; pass one of those keys.'
        )


class NormalizeAction(Wrapper):
    """Exposes a continuous action key as [-1, 1] and maps it onto the env's finite bounds.

    Dimensions with an infinite bound are passed through unchanged although the exposed space
    also reports [-1, 1] for them.
    """

    def __init__(self, env: Env, key: str = 'action'):
        super().__init__(env)
        space = env.act_space
        _require_key(space, key, 'NormalizeAction')
        space = space[key]
        if space.discrete:
            raise ValueError(
                f'NormalizeAction needs a continuous key but {key!r} has space {space}; '
                'use it only on floating-point action keys.'
            )
        self._key = key
        self._space = space
        self._mask = np.isfinite(space.low) & np.isfinite(space.high)
        self._low = np.where(self._mask, space.low, -1.0)
        self._high = np.where(self._mask, space.high, 1.0)

    @property
    def act_space(self) -> Spaces:
        """The inner action spaces with this key replaced by float32 [-1, 1]."""
        space = elements.Space(np.float32, self._space.shape, -1, 1)
        return {**self.env.act_space, self._key: space}

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Map the normalised action onto the original bounds and step."""
        value = np.asarray(action[self._key])
        orig = (value + 1) / 2 * (self._high - self._low) + self._low
        orig = np.where(self._mask, orig, value).astype(self._space.dtype)
        return self.env.step({**action, self._key: orig})


def _unified_dtype(dtype):
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return np.dtype(np.float32)
    if dtype in (np.dtype(np.uint8), np.dtype(bool)):
        return dtype
    if np.issubdtype(dtype, np.integer):
        return np.dtype(np.int32)
    return dtype


def _unified_space(space):
    dtype = _unified_dtype(space.dtype)
    if dtype == space.dtype:
        return space
    low, high = space.low, space.high
    if np.issubdtype(dtype, np.integer):
        # Default bounds of wider integer types do not fit into int32; saturate them.
        info = np.iinfo(dtype)
        low = np.clip(np.asarray(low, np.float64), info.min, info.max).astype(dtype)
        high = np.clip(np.asarray(high, np.float64), info.min, info.max).astype(dtype)
    return elements.Space(dtype, space.shape, low, high)


class UnifyDtypes(Wrapper):
    """Exposes floats as float32, uint8 as uint8 and other integers as int32.

    Observations are converted to the exposed dtypes (this also turns Python scalars into
    arrays of the declared dtype); actions are converted back to the env's own dtypes.
    """

    def __init__(self, env: Env):
        super().__init__(env)
        self._obs_space = {k: _unified_space(v) for k, v in env.obs_space.items()}
        self._act_space = {k: _unified_space(v) for k, v in env.act_space.items()}
        self._act_inner = {k: v.dtype for k, v in env.act_space.items()}

    @property
    def obs_space(self) -> Spaces:
        """Observation spaces with unified dtypes."""
        return self._obs_space

    @property
    def act_space(self) -> Spaces:
        """Action spaces with unified dtypes."""
        return self._act_space

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Cast actions to the env's dtypes and observations to the unified ones."""
        action = {
            k: np.asarray(v).astype(self._act_inner[k], copy=False) if k in self._act_inner else v
            for k, v in action.items()
        }
        obs = self.env.step(action)
        return {
            k: np.asarray(v).astype(self._obs_space[k].dtype, copy=False)
            if k in self._obs_space
            else v
            for k, v in obs.items()
        }


def _describe(value):
    value = np.asarray(value)
    if value.size <= 8:
        return f'{value!r}'
    text = f'array(dtype={value.dtype}, shape={value.shape}'
    if np.issubdtype(value.dtype, np.number) or value.dtype == bool:
        text += f', min={value.min()}, max={value.max()}'
    return text + ')'


def _problems(value, space, integer_high_exclusive):
    value = np.asarray(value)
    if space.dtype.kind in 'US':
        # String spaces carry no length or bounds, like `value in space`.
        return [] if value.dtype.kind == space.dtype.kind else [f'dtype {value.dtype} is not str']
    problems = []
    if value.dtype != space.dtype:
        problems.append(f'dtype {value.dtype} is not {space.dtype}')
    if value.shape != space.shape:
        problems.append(f'shape {value.shape} is not {space.shape}')
    elif space.low is not None and value.dtype.kind in 'biuf':
        if (value < space.low).any():
            problems.append(f'values below low={space.low.min()}')
        exclusive = integer_high_exclusive and np.issubdtype(space.dtype, np.integer)
        if exclusive and (value >= space.high).any():
            problems.append(f'values at or above the exclusive high={space.high.max()}')
        elif (value > space.high).any():
            problems.append(f'values above high={space.high.max()}')
    return problems


class CheckSpaces(Wrapper):
    """Validates every action and observation against its space (shape, bounds, exact dtype).

    Bounds are inclusive like `value in space`, except that integer actions must stay below
    `high`, which is exclusive for integer action spaces (a categorical with `high` classes).
    """

    def __init__(self, env: Env):
        super().__init__(env)
        shared = set(env.obs_space) & set(env.act_space)
        if shared:
            raise ValueError(
                f'Observation and action keys must be disjoint but {sorted(shared)} are in '
                'both; rename one of them in the environment.'
            )

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Check the action, step, and check the observation."""
        self._check(action, self.env.act_space, 'action')
        obs = self.env.step(action)
        self._check(obs, self.env.obs_space, 'observation')
        return obs

    def _check(self, values, spaces, kind):
        missing = sorted(set(spaces) - set(values))
        unknown = sorted(set(values) - set(spaces))
        if missing or unknown:
            raise ValueError(
                f'The {kind} keys do not match the {kind} space: missing {missing}, not in '
                f'the space {unknown}; the {kind} must contain exactly the keys '
                f'{sorted(spaces)}.'
            )
        for key, value in values.items():
            space = spaces[key]
            problems = _problems(value, space, integer_high_exclusive=(kind == 'action'))
            if problems:
                source = 'the agent' if kind == 'action' else 'the environment'
                raise ValueError(
                    f'{kind.capitalize()} key {key!r} does not fit its space {space}: '
                    f'{"; ".join(problems)}. Got {_describe(value)}. Fix the value that '
                    f'{source} produces or the declared {kind} space.'
                )


class ClipAction(Wrapper):
    """Clips one action key element-wise to [low, high]."""

    def __init__(self, env: Env, key: str = 'action', low: float = -1, high: float = 1):
        super().__init__(env)
        _require_key(env.act_space, key, 'ClipAction')
        self._key = key
        self._low = low
        self._high = high

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Clip the action key and step."""
        value = np.asarray(action[self._key])
        clipped = np.clip(value, self._low, self._high).astype(value.dtype, copy=False)
        return self.env.step({**action, self._key: clipped})


class ActionRepeat(Wrapper):
    """Repeats each non-reset action up to `repeat` times and sums the rewards."""

    def __init__(self, env: Env, repeat: int):
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f'ActionRepeat needs repeat >= 1 but got {repeat}.')
        self._repeat = repeat

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Step `repeat` times, or fewer when the episode ends."""
        if action['reset']:
            return self.env.step(action)
        reward = 0.0
        for _ in range(self._repeat):
            obs = self.env.step(action)
            if obs['is_first']:
                # The env reset itself after an earlier last step: report the new episode.
                return obs
            reward += obs['reward']
            if obs['is_last'] or obs['is_terminal']:
                break
        return {**obs, 'reward': np.float32(reward)}


class TimeLimit(Wrapper):
    """Ends episodes after `duration` non-reset steps; a duration of 0 or None disables it.

    The step after a last step (or a step with `reset`) restarts the count. With `reset=True` it
    is forwarded as a reset; with `reset=False` the action is forwarded and the result is
    marked `is_first`, continuing the underlying episode.
    """

    def __init__(self, env: Env, duration: int | None, reset: bool = True):
        super().__init__(env)
        self._duration = duration
        self._reset = reset
        self._step = 0
        self._done = True

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Step and mark `is_last` once the duration is reached."""
        if action['reset'] or self._done:
            self._step = 0
            self._done = False
            if self._reset or action['reset']:
                return self.env.step({**action, 'reset': np.bool_(True)})
            obs = self.env.step({**action, 'reset': np.bool_(False)})
            return {**obs, 'is_first': np.bool_(True)}
        self._step += 1
        obs = self.env.step(action)
        if self._duration and self._step >= self._duration:
            obs = {**obs, 'is_last': np.bool_(True)}
        self._done = bool(obs['is_last'])
        return obs


class DiscretizeAction(Wrapper):
    """Exposes a continuous key as int32 choices among `bins` values in linspace(-1, 1, bins)."""

    def __init__(self, env: Env, key: str = 'action', bins: int = 5):
        super().__init__(env)
        _require_key(env.act_space, key, 'DiscretizeAction')
        if bins < 2:
            raise ValueError(f'DiscretizeAction needs bins >= 2 but got {bins}.')
        self._key = key
        self._space = env.act_space[key]
        self._bins = bins
        self._values = np.linspace(-1, 1, bins)

    @property
    def act_space(self) -> Spaces:
        """The inner action spaces with this key replaced by int32 choices."""
        space = elements.Space(np.int32, self._space.shape, 0, self._bins)
        return {**self.env.act_space, self._key: space}

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Look up the continuous values of the chosen bins and step."""
        index = np.asarray(action[self._key])
        value = self._values[index].astype(self._space.dtype)
        return self.env.step({**action, self._key: value})


def _nearest_indices(source, target):
    # Sample at pixel centres, like PIL's nearest-neighbour filter.
    index = np.floor((np.arange(target) + 0.5) * source / target).astype(np.int64)
    return np.minimum(index, source - 1)


class ResizeImage(Wrapper):
    """Nearest-neighbour resizes every rank >= 2 observation whose first two dims differ from
    `size`."""

    def __init__(self, env: Env, size: tuple[int, int] = (64, 64)):
        super().__init__(env)
        self._size = tuple(size)
        self._keys = [
            k
            for k, v in env.obs_space.items()
            if len(v.shape) >= 2 and tuple(v.shape[:2]) != self._size
        ]
        self._index = {}
        for key in self._keys:
            shape = env.obs_space[key].shape
            rows = _nearest_indices(shape[0], self._size[0])
            cols = _nearest_indices(shape[1], self._size[1])
            self._index[key] = (rows[:, None], cols[None, :])

    @property
    def obs_space(self) -> Spaces:
        """The inner observation spaces with resized shapes."""
        spaces = dict(self.env.obs_space)
        for key in self._keys:
            space = spaces[key]
            rows, cols = self._index[key]
            low = None if space.low is None else space.low[rows, cols]
            high = None if space.high is None else space.high[rows, cols]
            shape = self._size + tuple(space.shape[2:])
            spaces[key] = elements.Space(space.dtype, shape, low, high)
        return spaces

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Step and resize the selected observations."""
        obs = self.env.step(action)
        obs = dict(obs)
        for key in self._keys:
            rows, cols = self._index[key]
            obs[key] = np.asarray(obs[key])[rows, cols]
        return obs


class BackwardReturn(Wrapper):
    """Adds `bwreturn`, the discounted sum of past rewards with discount 1 - 1/horizon."""

    def __init__(self, env: Env, horizon: int):
        super().__init__(env)
        if horizon <= 0:
            raise ValueError(f'BackwardReturn needs horizon > 0 but got {horizon}.')
        self._discount = 1 - 1 / horizon
        self._bwreturn = 0.0

    @property
    def obs_space(self) -> Spaces:
        """The inner observation spaces plus `bwreturn`."""
        return {**self.env.obs_space, 'bwreturn': elements.Space(np.float32)}

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Step and update the running return, restarting it at `is_first`."""
        obs = self.env.step(action)
        if obs['is_first']:
            self._bwreturn = 0.0
        self._bwreturn = self._discount * self._bwreturn + float(obs['reward'])
        return {**obs, 'bwreturn': np.float32(self._bwreturn)}


class AddObs(Wrapper):
    """Adds a constant observation `key` with the given value and space."""

    def __init__(self, env: Env, key: str, value: Any, space: elements.Space):
        super().__init__(env)
        if key in env.obs_space:
            raise KeyError(
                f'AddObs cannot add {key!r}: the observation space already has it; pick '
                'another key.'
            )
        self._key = key
        self._value = value
        self._space = space

    @property
    def obs_space(self) -> Spaces:
        """The inner observation spaces plus the added key."""
        return {**self.env.obs_space, self._key: self._space}

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Step and add the constant."""
        return {**self.env.step(action), self._key: self._value}


class RestartOnException(Wrapper):
    """Recreates the env with `ctor()` when a step raises one of `exceptions`.

    After a crash it waits `wait` seconds, builds a new env and returns its reset observation.
    More than `maxfails` crashes within `window` seconds raise a RuntimeError.
    """

    def __init__(
        self,
        ctor: Callable[[], Env],
        exceptions: type | tuple[type, ...] = (Exception,),
        window: float = 300,
        maxfails: int = 2,
        wait: float = 20,
    ):
        if isinstance(exceptions, type):
            exceptions = (exceptions,)
        self._ctor = ctor
        self._exceptions = tuple(exceptions)
        self._window = window
        self._maxfails = maxfails
        self._wait = wait
        self._fails = collections.deque()
        super().__init__(ctor())

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Step, restarting the env on a matching exception."""
        try:
            return self.env.step(action)
        except self._exceptions as e:
            now = time.monotonic()
            self._fails.append(now)
            while self._fails and now - self._fails[0] > self._window:
                self._fails.popleft()
            if len(self._fails) > self._maxfails:
                raise RuntimeError(
                    f'The env crashed {len(self._fails)} times within {self._window}s '
                    f'(maxfails={self._maxfails}); last error: {type(e).__name__}: {e}. '
                    'Fix the env or raise maxfails.'
                ) from e
            print(
                f'Restarting env after crash with {type(e).__name__}: {e} (waiting {self._wait}s).',
                flush=True,
            )
            try:
                self.env.close()
            except Exception:
                pass  # The crashed env may be unusable; a new one replaces it anyway.
            time.sleep(self._wait)
            self.env = self._ctor()
            return self.env.step({**action, 'reset': np.bool_(True)})
