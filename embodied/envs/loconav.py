"""Locomotion navigation in mazes, suite `loconav`
(`loconav_<walker>_<arena>[_<freq>hz]`, e.g. `loconav_ant_maze_m`).

A dm_control composer task: the walker must reach a target sphere in a fixed maze. The agent
sees the task's observations (proprioception and the walker's 64x64 egocentric camera, which
dm_control's maze task enables) but not DMC's tracking camera (DMC with `image=False`);
`log/coverage` counts the distinct rounded (x, y) cells visited this episode. The tracking
camera frame is rendered into `log/image` only with `log_image=True` (the
reference rendered it on every step).
"""

import elements
import numpy as np

from embodied.core.base import Env

from . import registry

# Both defaults are the walker's egocentric camera (the ant's is camera 4; the quadruped model
# here has fewer cameras than the reference's custom one, whose default was 5).
DEFAULT_CAMERAS = {'ant': 4, 'quadruped': 'walker/egocentric'}
LEGS = ('front_left', 'front_right', 'back_right', 'back_left')
CELL_SIZE = 1.2  # metres per maze cell
WALL_HEIGHT = 2.0
TARGET_RADIUS = 1.2
TIME_LIMIT = 60.0  # seconds of simulated time per episode
DEFAULT_FREQ = 50  # control steps per second
WALL_GRAY = (0.8, 0.8, 0.8)
# Matplotlib's tab10 palette; wall digit d uses entry d - 1.
TAB10 = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)

# One character per cell: '.' floor, digits and '*' walls, 'P' spawn, 'G' goal.
MAPS = {
    'maze_s': (
        '......66666',
        '......6...6',
        '......6.G.6',
        '......6...6',
        '......5...4',
        '......5...4',
        '1111555...4',
        '1.........3',
        '1.P.......3',
        '1.........3',
        '11112223333',
    ),
    'maze_m': (
        '66668887777',
        '6.........7',
        '6.G.......7',
        '6.........7',
        '6665555...4',
        '......5...4',
        '1111555...4',
        '1.........3',
        '1.P.......3',
        '1.........3',
        '11112223333',
    ),
    'maze_l': (
        '88887776666...',
        '8.........6...',
        '8.G.......6...',
        '8.........6555',
        '8888777......5',
        '......7......5',
        '11111.7......5',
        '1...1.7999...5',
        '1...1....9...5',
        '1...111999...5',
        '2............4',
        '2....P.......4',
        '2............4',
        '22223333334444',
    ),
    'maze_xl': (
        '99999998888.44444',
        '9.........8.4...4',
        '9.......G.8.4...4',
        '9.........8.4...4',
        '6...7778888.5...3',
        '6...7.......5...3',
        '6...777555555...3',
        '5...............3',
        '5...............3',
        '5...............3',
        '5555444...666...3',
        '......4...6.6...3',
        '1111444...6.6...3',
        '1.........2.1...1',
        '1.P.......2.1...1',
        '1.........2.1...1',
        '11111112222.11111',
    ),
    'maze_xxl': (
        '7777***666***9999',
        '7...............9',
        '7.............G.9',
        '7...............9',
        '*...555******9999',
        '*...5............',
        '*...555******3333',
        '8...............3',
        '8...............3',
        '8...............3',
        '8888******444...*',
        '............4...*',
        '1111******444...*',
        '1...............2',
        '1.P.............2',
        '1...............2',
        '1111***666***2222',
    ),
    'empty': ('.' * 17,) * 17,
}


class LocoNav(Env):
    """A walker navigating a maze to a goal, wrapped in DMC (proprioception only)."""

    def __init__(
        self,
        name,
        repeat=1,
        size=(64, 64),
        camera=-1,
        again=False,
        termination=False,
        weaker=1.0,
        log_image=False,
        seed=None,
    ):
        registry.require('loconav', 'dm_control')
        from . import dmc

        walker_name, arena_name, freq = _parse(name)
        if camera == -1:
            camera = DEFAULT_CAMERAS.get(walker_name, 0)
        self._walker = _make_walker(walker_name)
        dmenv = _make_env(self._walker, _make_arena(arena_name), freq, again, termination, seed)
        self._env = dmc.DMC(
            dmenv, repeat, size=size, camera=camera, image=False, log_image=log_image
        )
        self._weaker = weaker
        self._visited = set()

    @property
    def obs_space(self):
        """DMC's proprioceptive observations plus `log/coverage`."""
        return {**self._env.obs_space, 'log/coverage': elements.Space(np.int32, (), -1)}

    @property
    def act_space(self):
        """The walker's continuous actuators and `reset`."""
        return self._env.act_space

    def step(self, action):
        """Step the task (actions scaled by `weaker`) and update the coverage count."""
        action = {**action, 'action': np.asarray(action['action']) * self._weaker}
        obs = self._env.step(action)
        if obs['is_first']:
            self._visited = set()
        position = np.asarray(self._walker.get_pose(self._env.physics)[0]).reshape(-1)
        self._visited.add(tuple(np.round(position[:2]).astype(int).tolist()))
        obs['log/coverage'] = np.int32(len(self._visited))
        return obs

    def close(self):
        """Close the environment."""
        self._env.close()


def _parse(name):
    freq = DEFAULT_FREQ
    if name.endswith('hz'):
        name, text = name.rsplit('_', 1)
        freq = int(text[:-2])
    if '_' not in name:
        raise ValueError(
            f"LocoNav task '{name}' must look like <walker>_<arena>[_<freq>hz], e.g. ant_maze_m."
        )
    walker, arena = name.split('_', 1)
    if arena not in MAPS:
        raise ValueError(f"Unknown LocoNav arena '{arena}'; expected one of {sorted(MAPS)}.")
    return walker, arena, freq


def _make_walker(name):
    if name == 'ant':
        from dm_control.locomotion.walkers import ant

        return ant.Ant()
    if name == 'quadruped':
        return _make_quadruped()
    raise ValueError(f"Unknown LocoNav walker '{name}'; expected 'ant' or 'quadruped'.")


def _quadruped_model():
    """The control suite's quadruped body as a free-standing walker model."""
    import os

    from dm_control import mjcf, suite

    model = mjcf.from_path(os.path.join(os.path.dirname(suite.__file__), 'quadruped.xml'))
    model.model = 'walker'
    # Keep only the animal: the arena brings floor, sky, lights and its own free joint.
    for geom in list(model.worldbody.geom):
        geom.remove()
    # The torso's tracking light casts shadows that make software rendering ~9x slower.
    for element in ('site', 'target'), ('camera', 'global'), ('body', 'ball'), ('light', 'light'):
        model.find(*element).remove()
    model.find('body', 'torso').freejoint.remove()
    for texture in list(model.asset.texture):
        if texture.type == 'skybox' or texture.name == 'ball':
            texture.remove()
    model.find('material', 'ball').remove()
    model.asset.hfield[0].remove()
    # Global settings belong to the arena and task; conflicting values cannot be merged.
    for child in model.visual.all_children():
        for attribute in child.get_attributes():
            setattr(child, attribute, None)
    model.option.timestep = None
    return model


def _make_quadruped():
    from dm_control import composer
    from dm_control.composer.observation import observable
    from dm_control.locomotion.walkers import base, legacy_base

    class QuadrupedObservables(legacy_base.WalkerObservables):
        """Walker observables plus actuator states and global positions."""

        @composer.observable
        def actuator_activations(self):
            return observable.Generic(lambda physics: np.array(physics.data.act))

        @composer.observable
        def root_global_pos(self):
            def position(physics):
                return np.reshape(self._entity.get_pose(physics)[0], -1)

            return observable.Generic(position)

        @composer.observable
        def torso_global_pos(self):
            def position(physics):
                return np.reshape(physics.bind(self._entity.root_body).xpos, -1)

            return observable.Generic(position)

        @property
        def proprioception(self):
            return [
                self.joints_pos,
                self.joints_vel,
                self.actuator_activations,
                self.sensors_accelerometer,
                self.sensors_gyro,
                self.sensors_velocimeter,
                self.sensors_force,
                self.sensors_torque,
                self.world_zaxis,
                self.root_global_pos,
                self.torso_global_pos,
            ] + self._collect_from_attachments('proprioception')

    class Quadruped(legacy_base.Walker):
        """The control suite quadruped (12 actuators on coupled leg tendons) as a walker."""

        def _build(self, name='walker', initializer=None):
            super()._build(initializer=initializer)
            self._mjcf_root = _quadruped_model()
            if name:
                self._mjcf_root.model = name
            self._prev_action = np.zeros(self.action_spec.shape, self.action_spec.dtype)

        def initialize_episode(self, physics, random_state):
            self._prev_action = np.zeros_like(self._prev_action)

        def apply_action(self, physics, action, random_state):
            super().apply_action(physics, action, random_state)
            self._prev_action[:] = action

        def _build_observables(self):
            return QuadrupedObservables(self)

        @property
        def mjcf_model(self):
            return self._mjcf_root

        @property
        def upright_pose(self):
            return base.WalkerPose()

        @composer.cached_property
        def actuators(self):
            return self._mjcf_root.find_all('actuator')

        @composer.cached_property
        def root_body(self):
            return self._mjcf_root.find('body', 'torso')

        @composer.cached_property
        def bodies(self):
            return tuple(self._mjcf_root.find_all('body'))

        @composer.cached_property
        def mocap_tracking_bodies(self):
            return tuple(self._mjcf_root.find_all('body'))

        @property
        def mocap_joints(self):
            return self._mjcf_root.find_all('joint')

        @composer.cached_property
        def end_effectors(self):
            return tuple(self._mjcf_root.find('body', f'toe_{leg}') for leg in LEGS)

        @composer.cached_property
        def observable_joints(self):
            return self._mjcf_root.find_all('joint')

        @composer.cached_property
        def egocentric_camera(self):
            return self._mjcf_root.find('camera', 'egocentric')

        def aliveness(self, physics):
            return (physics.bind(self.root_body).xmat[-1] - 1.0) / 2.0

        @composer.cached_property
        def ground_contact_geoms(self):
            return tuple(geom for toe in self.end_effectors for geom in toe.find_all('geom'))

        @property
        def prev_action(self):
            return self._prev_action

    return Quadruped()


def _make_arena(name):
    import labmaze
    from dm_control import mjcf
    from dm_control.locomotion.arenas import labmaze_textures, mazes

    class FlatWall(labmaze_textures.WallTextures):
        """A single flat-coloured wall texture."""

        def _build(self, color):
            self._mjcf_root = mjcf.RootElement(model='labmaze_flat')
            self._textures = [
                self._mjcf_root.asset.add(
                    'texture',
                    type='2d',
                    name='wall',
                    builtin='flat',
                    rgb1=color,
                    width=100,
                    height=100,
                )
            ]

    wall_textures = {'*': FlatWall(WALL_GRAY)}
    for digit in range(1, 10):
        wall_textures[str(digit)] = FlatWall(tuple(c / 255 for c in TAB10[digit - 1]))
    layout = ''.join(row.replace('.', ' ') + '\n' for row in MAPS[name])
    maze = labmaze.FixedMazeWithRandomGoals(
        entity_layer=layout, num_spawns=1, num_objects=1, random_state=None
    )
    return mazes.MazeWithTargets(
        maze,
        xy_scale=CELL_SIZE,
        z_height=WALL_HEIGHT,
        aesthetic='default',
        wall_textures=wall_textures,
        name='maze',
    )


def _make_env(walker, arena, freq, again, termination, seed):
    from dm_control import composer
    from dm_control.locomotion.props import target_sphere
    from dm_control.locomotion.tasks import random_goal_maze

    class SingleGoalMaze(random_goal_maze.RepeatSingleGoalMaze):
        """Rewards every step on which the (single) target is activated, without respawns."""

        def after_step(self, physics, random_state):
            random_goal_maze.NullGoalMaze.after_step(self, physics, random_state)
            self._rewarded_this_step = self._target.activated
            self._targets_obtained = int(self._target.activated)

    task_class = random_goal_maze.RepeatSingleGoalMaze if again else SingleGoalMaze
    task = task_class(
        walker=walker,
        maze_arena=arena,
        target=target_sphere.TargetSphere(radius=TARGET_RADIUS, height_above_ground=0.0),
        max_repeats=1000 if again else 1,
        randomize_spawn_rotation=True,
        target_reward_scale=1.0,
        aliveness_threshold=-0.5 if termination else -1.0,
        contact_termination=False,
        physics_timestep=min(1 / freq / 4, 0.02),
        control_timestep=1 / freq,
    )
    return composer.Environment(
        time_limit=TIME_LIMIT, task=task, random_state=seed, strip_singleton_obs_buffer_dim=True
    )
