"""Example user environments: the same small task as a gymnasium env and as an `embodied.Env`.

docs/custom_env.md shows the code between each `# doc: <name>` line and the next `# end doc`
line verbatim; tests/envs/test_custom_env.py checks that the two agree and trains on both.

The task: move a point along a line to a goal. Observations are an image of the line (for the
CNN) and the vector (position, goal) (for the MLP); reaching the goal ends the episode with
reward 1, otherwise it is cut off after `LENGTH` steps.
"""

# Each section imports what it uses, so that it reads on its own in the docs.
# ruff: noqa: E402

# doc: common
import numpy as np

SIZE = 64  # image side; the default CNN needs a multiple of 16 between 48 and 256
LENGTH = 50  # time limit: an episode is cut off (not terminated) after this many steps


def draw(pos, goal):
    """An RGB image of the line: the point as a white bar on top, the goal as a green bar."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    x, g = (int((v + 1) / 2 * (SIZE - 4)) for v in (pos, goal))
    image[: SIZE // 2, x : x + 4] = 255
    image[SIZE // 2 :, g : g + 4, 1] = 255
    return image


def move(pos, goal, delta):
    """The next position, the reward and whether the goal was reached."""
    pos = float(np.clip(pos + 0.1 * delta, -1, 1))
    reached = abs(pos - goal) < 0.1
    reward = 1.0 if reached else -0.01 * abs(pos - goal)
    return pos, reward, reached


# end doc

# doc: gymnasium
import gymnasium


class ReachGym(gymnasium.Env):
    """The reach task through the gymnasium API, with a Discrete or a Box action."""

    metadata = {'render_modes': ['rgb_array']}

    def __init__(self, continuous=False, render_mode=None):
        self.continuous = continuous
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Dict(
            {
                'image': gymnasium.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8),
                'vector': gymnasium.spaces.Box(-1, 1, (2,), np.float32),
            }
        )
        if continuous:
            self.action_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)  # velocity
        else:
            self.action_space = gymnasium.spaces.Discrete(3)  # left, stay, right
        self.pos = self.goal = 0.0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.goal = (float(v) for v in self.np_random.uniform(-1, 1, 2))
        return self._obs(), {}

    def step(self, action):
        delta = float(action[0]) if self.continuous else int(action) - 1
        self.pos, reward, reached = move(self.pos, self.goal, delta)
        # terminated: the task ended (no future reward); the time limit sets truncated.
        return self._obs(), reward, reached, False, {}

    def render(self):
        return draw(self.pos, self.goal)

    def _obs(self):
        vector = np.array([self.pos, self.goal], np.float32)
        return {'image': draw(self.pos, self.goal), 'vector': vector}


# Importing this module registers the ids; gymnasium adds the time limit (truncation).
gymnasium.register('ReachDiscrete-v0', entry_point=ReachGym, max_episode_steps=LENGTH)
gymnasium.register(
    'ReachContinuous-v0',
    entry_point=ReachGym,
    kwargs={'continuous': True},
    max_episode_steps=LENGTH,
)
# end doc

# doc: embodied
import elements

import embodied


class ReachEnv(embodied.Env):
    """The reach task through the embodied API: one `step(action)` for resets and steps."""

    def __init__(self, continuous=False, seed=None):
        self.continuous = continuous
        self.rng = np.random.default_rng(seed)
        self.pos = self.goal = 0.0
        self.steps = 0
        self.done = True  # the first step must reset

    @property
    def obs_space(self):
        return {
            'image': elements.Space(np.uint8, (SIZE, SIZE, 3)),  # rank 3 uint8: the CNN
            'vector': elements.Space(np.float32, (2,), -1, 1),  # rank 1: the MLP
            'reward': elements.Space(np.float32),
            'is_first': elements.Space(bool),
            'is_last': elements.Space(bool),
            'is_terminal': elements.Space(bool),
        }

    @property
    def act_space(self):
        if self.continuous:
            action = elements.Space(np.float32, (1,), -1, 1)
        else:
            action = elements.Space(np.int32, (), 0, 3)  # 3 classes: 0, 1, 2
        return {'action': action, 'reset': elements.Space(bool)}

    def step(self, action):
        if action['reset'] or self.done:
            self.pos, self.goal = (float(v) for v in self.rng.uniform(-1, 1, 2))
            self.steps, self.done = 0, False
            return self._obs(0.0, is_first=True)
        act = action['action']
        delta = float(act[0]) if self.continuous else int(act) - 1
        self.pos, reward, reached = move(self.pos, self.goal, delta)
        self.steps += 1
        self.done = reached or self.steps >= LENGTH
        return self._obs(reward, is_last=self.done, is_terminal=reached)

    def _obs(self, reward, is_first=False, is_last=False, is_terminal=False):
        return {
            'image': draw(self.pos, self.goal),
            'vector': np.array([self.pos, self.goal], np.float32),
            'reward': np.float32(reward),
            'is_first': is_first,
            'is_last': is_last,
            'is_terminal': is_terminal,
        }


def reach_continuous():
    """A factory: `--task custom_<module>:reach_continuous` calls it with no arguments."""
    return ReachEnv(continuous=True)


# end doc
