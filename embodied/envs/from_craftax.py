"""Craftax and Craftax-Classic as JAX-native tasks: `craftax_<id>`, e.g.
`craftax_Craftax-Classic-Pixels-v1`, `craftax_Craftax-Classic-Symbolic-v1`,
`craftax_Craftax-Symbolic-v1`.

Pixel observations become a uint8 `image` padded with black to a multiple of 16 on each side
(Craftax-Classic's 63 x 63 frames to 64 x 64, the size DreamerV3 uses for Crafter); symbolic ones
a float32 `vector`. The reward is the library's (achievement unlocks and health changes); an
episode ends with the agent's death (`is_terminal`) or the time limit (`is_last` only).

Generating a world is the expensive part of a step, so a batch of environments generates
`reset_ratio` times fewer worlds per step than it has environments (`JaxEnv.step_batch`), as
Craftax's own baselines do with their optimistic reset wrapper (which the pip package does not
ship). `step`, and the host form from `make`, reset each environment from its own key.
"""

import elements
import numpy as np

from . import registry
from .jaxenv import HostEnv, JaxEnv, flag_spaces, shared

NAMES = (
    'Craftax-Classic-Pixels-v1',
    'Craftax-Classic-Symbolic-v1',
    'Craftax-Pixels-v1',
    'Craftax-Symbolic-v1',
)


class Craftax(JaxEnv):
    """One Craftax environment without the library's automatic reset."""

    def _build(self, task: str, reset_ratio: int = 16):
        registry.require('craftax', 'craftax')
        if task not in NAMES:
            import difflib

            close = difflib.get_close_matches(task, NAMES, n=3)
            hint = f' Did you mean {", ".join(close)}?' if close else ''
            raise ValueError(f"Unknown Craftax environment '{task}'.{hint}")
        from craftax.craftax_env import make_craftax_env_from_name

        self._env = make_craftax_env_from_name(task, auto_reset=False)
        self._params = self._env.default_params
        self.reset_ratio = int(reset_ratio)
        shape = tuple(self._env.observation_space(self._params).shape)
        self._pixels = len(shape) == 3
        if self._pixels:
            self._pad = [(0, -n % 16) for n in shape[:2]] + [(0, 0)]
            size = tuple(n + pad for n, (_, pad) in zip(shape, self._pad))
            obs = {'image': elements.Space(np.uint8, size)}
        else:
            obs = {'vector': elements.Space(np.float32, shape)}
        self.obs_space = {**obs, **flag_spaces()}
        actions = self._env.action_space(self._params).n
        self.act_space = {'action': elements.Space(np.int32, (), 0, int(actions))}

    def _reset(self, key):
        obs, state = self._env.reset_env(key, self._params)
        return state, self._obs(obs)

    def _advance(self, key, env, action):
        obs, state, reward, done, _ = self._env.step_env(key, env, action['action'], self._params)
        truncated = state.timestep >= self._params.max_timesteps
        terminated = (done & ~truncated) | (state.player_health <= 0)
        return state, self._obs(obs), reward, terminated, truncated

    def _obs(self, obs):
        import jax.numpy as jnp

        if not self._pixels:
            return {'vector': jnp.asarray(obs, jnp.float32)}
        image = jnp.round(jnp.clip(obs, 0, 1) * 255).astype(jnp.uint8)
        return {'image': jnp.pad(image, self._pad)}


def make(task: str, seed: int | None = None, reset_ratio: int = 16) -> HostEnv:
    """The host form of `craftax_<task>` (one environment: every reset makes its own world)."""
    return HostEnv(shared(Craftax, task, reset_ratio), seed)
