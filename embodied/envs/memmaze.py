"""Memory Maze, suite `memmaze` (`memmaze_<9x9|11x11|13x13|15x15>`).

FromGym on the old-gym id `MemoryMaze-<task>-v0`, registered by importing `memory_maze`
(which requires `gym`, not gymnasium). Observations: `image` uint8 (64, 64, 3); action:
discrete `action` (6).
"""

from . import registry


def MemoryMaze(task, obs_key='image', act_key='action', seed=None, **kwargs):
    """Build the Memory Maze task `task` (e.g. `9x9`) as an embodied environment."""
    registry.default_mujoco_gl()
    registry.require('memmaze', 'memory_maze')
    gym = registry.require('memmaze', 'gym')
    from . import from_gym

    env = from_gym.make_old_gym(gym, f'MemoryMaze-{task}-v0', **kwargs)
    return from_gym.FromGym(env, obs_key=obs_key, act_key=act_key, seed=seed)
