"""Procgen games, suite `procgen` (`procgen_<game>`), via the old gym API.

At size (64, 64) the observation is procgen's own 64x64 frame; at any other size the env is
made with `render_mode='rgb_array'` and the image is replaced on every step by the 512x512
`rgb` frame from the inner gym3 env's info, resized with pillow (bilinear) or OpenCV (area).
Installing procgen (`procgen-mirror`) needs numpy<2 or a --no-deps install; see
the `hint` field of its `registry.SUITES` record.
"""

import elements
import numpy as np

from embodied.core.base import Env

from . import registry


class ProcGen(Env):
    """One Procgen game through FromGym, with an optional high-resolution image."""

    def __init__(self, task, size=(64, 64), resize='pillow', **kwargs):
        if resize not in ('opencv', 'pillow'):
            raise ValueError(f"ProcGen resize must be 'opencv' or 'pillow', got {resize!r}.")
        registry.require('procgen', 'procgen')
        gym = registry.require('procgen', 'gym')
        from . import from_gym

        self.size = tuple(int(x) for x in size)
        self.resize = resize
        self.from_info = self.size != (64, 64)
        if self.from_info:
            kwargs['render_mode'] = 'rgb_array'
        try:
            gymenv = from_gym.make_old_gym(gym, f'procgen:procgen-{task}-v0', **kwargs)
        except Exception:
            # Older gym versions do not understand the `module:` prefix.
            gymenv = from_gym.make_old_gym(gym, f'procgen-{task}-v0', **kwargs)
        self.env = from_gym.FromGym(gymenv)
        self.inner = None
        if self.from_info:
            inner = gymenv
            while not hasattr(inner, 'get_info'):
                if not hasattr(inner, 'env'):
                    raise ValueError(
                        'Could not find the gym3 environment (with get_info) inside the procgen '
                        'gym wrappers; use size (64, 64) with this procgen version.'
                    )
                inner = inner.env
            self.inner = inner

    @property
    def obs_space(self):
        """FromGym's spaces with `image` at the configured size."""
        spaces = dict(self.env.obs_space)
        spaces['image'] = elements.Space(np.uint8, (*self.size, 3))
        return spaces

    @property
    def act_space(self):
        """The discrete `action` (15) and `reset`."""
        return self.env.act_space

    def step(self, action):
        """Step the game and, at sizes other than 64x64, swap in the resized large frame."""
        obs = self.env.step(action)
        if self.from_info:
            info = self.inner.get_info()
            obs['image'] = _resize(info[0]['rgb'], self.size, self.resize)
        return obs

    def close(self):
        """Close the game."""
        self.env.close()


def _resize(image, size, method):
    height, width = size
    if method == 'opencv':
        import cv2

        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    from PIL import Image

    image = Image.fromarray(image).resize((width, height), Image.BILINEAR)
    return np.asarray(image)
