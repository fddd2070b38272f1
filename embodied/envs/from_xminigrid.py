"""XLand-MiniGrid's MiniGrid environments as JAX-native tasks: `xminigrid_<id>`, e.g.
`xminigrid_MiniGrid-DoorKey-5x5`.

The observation is the agent's egocentric 7 x 7 view of (tile, colour) ids, flattened to a
vector of 98 integers under `grid`, which the agent one-hot encodes. Reaching the goal ends an
episode (`is_terminal`, reward 1 - 0.9 * steps / max_steps); the step limit ends it without
being terminal. `make` gives the host form.
"""

import elements
import numpy as np

from . import registry
from .jaxenv import HostEnv, JaxEnv, flag_spaces, shared


class XMiniGrid(JaxEnv):
    """One XLand-MiniGrid environment with its default parameters."""

    def _build(self, task: str):
        xminigrid = registry.require('xminigrid', 'xminigrid')
        from xminigrid.core import constants

        names = [n for n in xminigrid.registered_environments() if n.startswith('MiniGrid-')]
        if task not in names:
            import difflib

            close = difflib.get_close_matches(task, names, n=3)
            hint = f' Did you mean {", ".join(close)}?' if close else ''
            raise ValueError(
                f"Unknown XLand-MiniGrid environment '{task}'.{hint} The MiniGrid-* ids work "
                'without downloads; the XLand ones need rulesets and are not supported.'
            )
        self._env, self._params = xminigrid.make(task)
        self._size = int(np.prod(self._env.observation_shape(self._params)))
        high = max(constants.NUM_TILES, constants.NUM_COLORS)
        self.obs_space = {'grid': elements.Space(np.int32, (self._size,), 0, high), **flag_spaces()}
        actions = self._env.num_actions(self._params)
        self.act_space = {'action': elements.Space(np.int32, (), 0, actions)}

    def _reset(self, key):
        timestep = self._env.reset(self._params, key)
        return timestep, self._obs(timestep)

    def _advance(self, key, env, action):
        import jax.numpy as jnp

        timestep = self._env.step(self._params, env, action['action'])
        last = timestep.step_type == 2
        terminated = last & (timestep.discount == 0)
        truncated = last & (timestep.discount != 0)
        return timestep, self._obs(timestep), jnp.float32(timestep.reward), terminated, truncated

    def _obs(self, timestep):
        import jax.numpy as jnp

        return {'grid': timestep.observation.reshape((self._size,)).astype(jnp.int32)}


def make(task: str, seed: int | None = None) -> HostEnv:
    """The host form of `xminigrid_<task>`."""
    return HostEnv(shared(XMiniGrid, task), seed)
