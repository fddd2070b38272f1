"""DeepMind Control Suite tasks, suite `dmc` (`dmc_<domain>_<task>`).

MuJoCo renders through `MUJOCO_GL`, which defaults to `egl` here (headless; llvmpipe on CPU).
Rendering happens only when a frame is used: with `image=True` it is the `image` observation;
with `image=False` the reference still rendered every step into `log/image` (time spent on a
frame the agent never sees), which this adapter does only when `log_image=True`. Either way the
agent's observations are the same.
"""

import os

import elements
import numpy as np

from embodied.core.base import Env

from . import registry

DEFAULT_CAMERAS = {'quadruped': 2, 'rodent': 4, 'locom': 4}
DOMAIN_ALIASES = {'cup': 'ball_in_cup'}
FLAG_KEYS = ('reward', 'is_first', 'is_last', 'is_terminal')


class DMC(Env):
    """A dm_control environment adapted by FromDM, with action repeat and camera images.

    `env` is a task name like `walker_walk` (`cup_catch`, `manip_<task>`, `rodent_<task>`) or a
    dm_env environment with a `physics` attribute (as LocoNav passes).
    """

    def __init__(
        self,
        env,
        repeat=1,
        size=(64, 64),
        proprio=True,
        image=True,
        camera=-1,
        log_image=False,
        seed=None,
    ):
        registry.default_mujoco_gl()
        from embodied.core import wrappers

        from . import from_dm

        if isinstance(env, str):
            domain = env.split('_', 1)[0]
            if camera == -1:
                camera = DEFAULT_CAMERAS.get(domain, 0)
            env = _load(env, seed)
        elif camera == -1:
            camera = 0
        self._dmenv = env
        self._env = wrappers.ActionRepeat(from_dm.FromDM(env), repeat)
        self._size = tuple(int(x) for x in size)
        self._proprio = proprio
        self._image = image
        self._log_image = log_image and not image
        self._camera = camera
        self._checked_render = False
        self._done = True
        spaces = dict(self._env.obs_space)
        if not proprio:
            spaces = {k: v for k, v in spaces.items() if k in FLAG_KEYS}
        if image or self._log_image:
            key = 'image' if image else 'log/image'
            spaces[key] = elements.Space(np.uint8, self._size + (3,))
        self._obs_space = spaces
        self._act_space = self._env.act_space

    @property
    def physics(self):
        """The MuJoCo physics of the wrapped environment."""
        return self._dmenv.physics

    @property
    def obs_space(self):
        """Proprioception (unless `proprio=False`), the standard keys and the camera image."""
        return self._obs_space

    @property
    def act_space(self):
        """The continuous `action` vector and `reset`."""
        return self._act_space

    def step(self, action):
        """Step with action repeat and attach the rendered frame where one is used."""
        for key, space in self._act_space.items():
            if not space.discrete and not np.isfinite(action[key]).all():
                raise ValueError(
                    f'DMC action {key!r} contains non-finite values: {action[key]}; the agent '
                    'must produce finite actions.'
                )
        if self._done:
            # ActionRepeat would otherwise keep stepping the freshly reset episode.
            action = {**action, 'reset': np.bool_(True)}
        obs = self._env.step(action)
        self._done = bool(obs['is_last'])
        obs = {k: v for k, v in obs.items() if k in self._obs_space}
        if self._image:
            obs['image'] = self.render()
        elif self._log_image:
            obs['log/image'] = self.render()
        for key, space in self._obs_space.items():
            if np.issubdtype(space.dtype, np.floating) and not np.isfinite(obs[key]).all():
                raise ValueError(
                    f'DMC observation {key!r} contains non-finite values: {obs[key]}; the '
                    'simulation became unstable.'
                )
        return obs

    def render(self):
        """The camera frame, uint8 (height, width, 3)."""
        try:
            image = self._dmenv.physics.render(*self._size, camera_id=self._camera)
        except (ValueError, TypeError):
            raise  # bad arguments such as an unknown camera, not a GL failure
        except Exception as e:
            if self._checked_render:
                raise
            raise RuntimeError(_gl_message(e)) from e
        self._checked_render = True
        return image

    def close(self):
        """Close the environment."""
        try:
            self._dmenv.close()
        except Exception:
            pass


def _load(name, seed):
    """Build the dm_control environment for a task name like `walker_walk`."""
    domain, task = name.split('_', 1) if '_' in name else (name, '')
    if not task:
        raise ValueError(f"DMC task '{name}' must look like <domain>_<task>, e.g. walker_walk.")
    domain = DOMAIN_ALIASES.get(domain, domain)
    registry.require('dmc', 'dm_control')
    try:
        if domain == 'manip':
            from dm_control import manipulation

            return manipulation.load(task + '_vision', seed=seed)
        if domain in ('rodent', 'locom'):
            from dm_control.locomotion.examples import basic_rodent_2020

            factory = getattr(basic_rodent_2020, f'rodent_{task}', None)
            factory = factory or getattr(basic_rodent_2020, task)
            return factory(random_state=seed)
        from dm_control import suite
    except ImportError as e:
        raise RuntimeError(_gl_message(e)) from e
    if (domain, task) not in suite.ALL_TASKS:
        raise ValueError(
            f"Unknown DMC task '{name}'; the control suite has: "
            f'{", ".join(f"{d}_{t}" for d, t in suite.ALL_TASKS)}.'
        )
    return suite.load(domain, task, task_kwargs={'random': seed})


def _gl_message(error):
    backend = os.environ.get('MUJOCO_GL', '')
    return (
        f'MuJoCo rendering with MUJOCO_GL={backend!r} failed: {type(error).__name__}: {error}. '
        'For EGL install the system libraries libegl1 libegl-mesa0 libgl1-mesa-dri; or use '
        'software rendering with MUJOCO_GL=osmesa (needs libosmesa6). For proprioception-only '
        'runs without any rendering, set env.dmc.image=False and MUJOCO_GL=disable.'
    )
