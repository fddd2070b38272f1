"""gymnax environments as JAX-native tasks: `gymnax_<id>`, e.g. `gymnax_CartPole-v1`.

Every gymnax id works (classic control, MinAtar, bsuite, misc). The observation, whatever its
shape, is one flat float32 vector under `vector`; a discrete action is `action` (int32), a box
action `action` in [-1, 1], mapped onto the box's bounds. An episode ends by termination
(`is_terminal`) or by the id's time limit (`is_last` only). `make` gives the host form.
"""

import elements
import numpy as np

from . import registry
from .jaxenv import HostEnv, JaxEnv, flag_spaces, shared


class Gymnax(JaxEnv):
    """One gymnax environment with its default parameters."""

    def _build(self, task: str):
        gymnax = registry.require('gymnax', 'gymnax')
        if task not in gymnax.registered_envs:
            import difflib

            close = difflib.get_close_matches(task, gymnax.registered_envs, n=3)
            hint = f' Did you mean {", ".join(close)}?' if close else ''
            raise ValueError(f"Unknown gymnax environment '{task}'.{hint}")
        self._env, self._params = gymnax.make(task)
        shape = self._env.observation_space(self._params).shape
        self._size = int(np.prod(shape))
        self.obs_space = {'vector': elements.Space(np.float32, (self._size,)), **flag_spaces()}
        space = self._env.action_space(self._params)
        if hasattr(space, 'n'):
            self.act_space = {'action': elements.Space(np.int32, (), 0, int(space.n))}
            self.act_bounds = {}
        elif hasattr(space, 'low'):
            shape = tuple(space.shape) or ()
            low = np.broadcast_to(np.asarray(space.low, np.float64), shape)
            high = np.broadcast_to(np.asarray(space.high, np.float64), shape)
            self.act_space = {'action': elements.Space(np.float32, shape, -1, 1)}
            self.act_bounds = {'action': (low, high)}
        else:
            raise ValueError(f"gymnax environment '{task}' has an unsupported action space.")

    def _reset(self, key):
        obs, state = self._env.reset_env(key, self._params)
        return state, self._obs(obs)

    def _advance(self, key, env, action):
        obs, state, reward, terminated, _ = self._env.step_env(
            key, env, action['action'], self._params
        )
        truncated = self._env.is_truncated(state, self._params)
        return state, self._obs(obs), reward, terminated, truncated

    def _obs(self, obs):
        import jax.numpy as jnp

        return {'vector': jnp.asarray(obs, jnp.float32).reshape((self._size,))}


def make(task: str, seed: int | None = None) -> HostEnv:
    """The host form of `gymnax_<task>`."""
    return HostEnv(shared(Gymnax, task), seed)
