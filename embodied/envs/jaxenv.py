"""JAX-native environments: pure reset and step functions with DreamerV3's step semantics.

A `JaxEnv` wraps a library's pure `reset(key)` and `step(key, state, action)` (gymnax, Craftax,
XLand-MiniGrid) so that its `step` yields exactly the transitions the driver produces for a host
environment: the first step after `init`, and the step after an `is_last` observation, reset the
environment (the action is ignored, the reward is 0, `is_first` is set); every other step
advances it, with `is_last` at the end of an episode and `is_terminal` only when the episode
ended by itself (not by a time limit). The state carries the score and length of the running
episode for logging. `init`, `step` and `step_batch` are pure and jittable; `step_batch` steps
a batch of environments (vmapped; an adapter may override it with a cheaper batched reset).

`HostEnv` runs the same functions, jitted for one environment, behind the `embodied.Env`
interface, so every host script trains on these tasks too and both forms give the same
observations for the same seed and actions.
"""

import functools
from typing import Any, NamedTuple

import elements
import numpy as np

from embodied.core.base import Env

FLAGS = ('is_first', 'is_last', 'is_terminal')


class State(NamedTuple):
    """The pure state of one environment between steps."""

    env: Any  # the library's environment state
    done: Any  # bool: the last observation ended an episode, so the next step resets
    score: Any  # float32: sum of the rewards of the running episode
    length: Any  # int32: steps of the running episode (its reset step does not count)


class JaxEnv:
    """Base class of the adapters: subclasses define the spaces and `_reset` and `_advance`.

    `obs_space` holds the agent's observation keys plus `reward` and the three flags;
    `act_space` the action keys (no `reset`). Continuous actions are exposed in [-1, 1] and
    mapped onto the library's bounds here, as the host wrappers do.
    """

    obs_space: dict
    act_space: dict
    # Bounds of the continuous action keys, as the library declares them.
    act_bounds: dict = {}
    # Environments per new episode started in a step of a batch (`step_batch`); 0 or 1: all.
    reset_ratio: int = 0

    def __init__(self, *args, **kwargs):
        import jax

        # The libraries compute their spaces with eager JAX ops, which the agent's transfer
        # guard would reject.
        with jax.transfer_guard('allow'):
            self._build(*args, **kwargs)

    def _build(self, *args, **kwargs):
        """Make the library's environment and set `obs_space` and `act_space`."""
        raise NotImplementedError

    def _reset(self, key):
        """(library state, observation dict without reward and flags) of a new episode."""
        raise NotImplementedError

    def _advance(self, key, env, action):
        """(library state, observation dict, reward, terminated, truncated) after one step."""
        raise NotImplementedError

    def init(self, key) -> State:
        """A state whose next step starts the first episode."""
        import jax.numpy as jnp

        env, _ = self._reset(key)
        return State(env, jnp.asarray(True), jnp.float32(0), jnp.int32(0))

    def step(self, state: State, action: dict, key) -> tuple[State, dict]:
        """One step of one environment: reset after `is_last` (and at the start), else advance."""
        import jax

        action = self._library_action(action)
        reset = lambda: self._start(*self._reset(key))
        advance = lambda: self._advance(key, state.env, action)
        # Both branches of `cond` must give the same types; libraries mix weak and strong ones.
        shapes = jax.eval_shape(reset)
        same = lambda fn: lambda: _cast(fn(), shapes)
        outputs = jax.lax.cond(state.done, same(reset), same(advance))
        return self._finish(state, *outputs)

    def step_batch(self, states: State, actions: dict, keys) -> tuple[State, dict]:
        """`step` of a batch of environments (leading axis of every leaf).

        A vmapped `cond` computes both branches for every environment, so a batch would start
        a new episode for each environment on every step. With `reset_ratio` above 1, a batch
        of N starts only N // reset_ratio (at least 1) new episodes per step, and the i-th
        environment that needs one takes episode i modulo their number: when more
        environments end at once than episodes were started, some start in copies of the same
        one. Worth it where a reset costs much more than a step (Craftax generates a world).
        """
        import jax
        import jax.numpy as jnp

        count = len(states.done)
        fresh = max(1, count // self.reset_ratio) if self.reset_ratio > 1 else count
        if fresh >= count:
            return jax.vmap(self.step)(states, actions, keys)
        actions = jax.vmap(self._library_action)(actions)
        advanced = jax.vmap(self._advance)(keys, states.env, actions)
        new_key = lambda key: jax.random.fold_in(key, 1)
        starts = jax.vmap(lambda key: self._start(*self._reset(new_key(key))))(keys[:fresh])
        order = (jnp.cumsum(states.done) - 1) % fresh
        starts = jax.tree.map(lambda x: x[order], starts)
        shapes = jax.eval_shape(lambda: jax.tree.map(lambda x: x[0], starts))
        advanced = _cast(
            advanced,
            jax.tree.map(lambda s: jax.ShapeDtypeStruct((count, *s.shape), s.dtype), shapes),
        )
        pick = lambda new, old: jnp.where(_rows(states.done, new), new, old)
        outputs = jax.tree.map(pick, starts, advanced)
        return jax.vmap(self._finish)(states, *outputs)

    def _start(self, env, obs):
        import jax.numpy as jnp

        return env, obs, jnp.float32(0), jnp.asarray(False), jnp.asarray(False)

    def _finish(self, state, env, obs, reward, terminated, truncated):
        import jax.numpy as jnp

        first = state.done
        last = ~first & (terminated | truncated)
        reward = jnp.where(first, 0, reward).astype(jnp.float32)
        obs = {
            **obs,
            'reward': reward,
            'is_first': first,
            'is_last': last,
            'is_terminal': last & terminated,
        }
        score = jnp.where(first, 0, state.score + reward).astype(jnp.float32)
        length = jnp.where(first, 0, state.length + 1).astype(jnp.int32)
        return State(env, last, score, length), obs

    def _library_action(self, action):
        """Continuous actions from [-1, 1] onto the library's bounds (clipped first)."""
        import jax.numpy as jnp

        action = dict(action)
        for key, (low, high) in self.act_bounds.items():
            value = jnp.clip(action[key], -1, 1)
            finite = np.isfinite(low) & np.isfinite(high)
            low_, high_ = np.where(finite, low, -1.0), np.where(finite, high, 1.0)
            mapped = (value + 1) / 2 * (high_ - low_) + low_
            action[key] = jnp.where(finite, mapped, value).astype(jnp.float32)
        return action


def _cast(tree, shapes):
    """`tree` with the dtypes and shapes of `shapes` (a tree of ShapeDtypeStructs)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda x, s: jnp.asarray(x).astype(s.dtype).reshape(s.shape), tree, shapes)


@functools.lru_cache(maxsize=None)
def shared(cls, *args) -> JaxEnv:
    """One adapter per class and arguments in a process, so that its host environments share
    their compiled steps (`_jitted`)."""
    return cls(*args)


@functools.lru_cache(maxsize=None)
def _jitted(env: JaxEnv) -> tuple:
    """The jitted step and init of an adapter, compiled once for all its host environments."""
    import jax

    return jax.jit(env.step), jax.jit(env.init)


def _rows(mask, value):
    """`mask` (N,) broadcast against `value` (N, ...)."""
    return mask.reshape((-1,) + (1,) * (value.ndim - 1))


def flag_spaces() -> dict:
    """The spaces of `reward` and the three flags, shared by every adapter."""
    spaces = {'reward': elements.Space(np.float32)}
    spaces.update({k: elements.Space(bool) for k in FLAGS})
    return spaces


class HostEnv(Env):
    """A `JaxEnv` behind the `embodied.Env` interface, one environment, jitted steps.

    The key of step `t` is `fold_in(key(seed), t)`, as the device loop derives it, so both
    give the same transitions for the same seed and actions.
    """

    def __init__(self, env: JaxEnv, seed: int | None = None):
        import jax

        self._env = env
        self._seed = 0 if seed is None else int(seed)
        self._step, init = _jitted(env)
        # A host environment moves its inputs and outputs between host and device on every
        # step; the transfer guard of the agent's setup is for the agent's own calls.
        with jax.transfer_guard('allow'):
            self._key = jax.random.PRNGKey(self._seed)
            self._state = init(self._key)
        self._count = 0

    @property
    def obs_space(self) -> dict:
        """The observation spaces of the adapter."""
        return dict(self._env.obs_space)

    @property
    def act_space(self) -> dict:
        """The action spaces of the adapter plus `reset`."""
        return {**self._env.act_space, 'reset': elements.Space(bool)}

    def step(self, action: dict) -> dict:
        """Reset on `reset` (and after the end of an episode), else advance, like the driver."""
        import jax

        action = {k: np.asarray(v) for k, v in action.items()}
        state = self._state
        with jax.transfer_guard('allow'):
            if action.pop('reset', False):
                state = state._replace(done=np.bool_(True))
            key = jax.random.fold_in(self._key, self._count)
            self._count += 1
            self._state, obs = self._step(state, action, key)
            return {k: np.asarray(v) for k, v in jax.device_get(obs).items()}
