"""PinPad: walk over coloured pads in ascending order on a small grid.

The target sequence is every pad of the layout in ascending order. Reaching it gives +10 and
starts a 10-step countdown, after which the player respawns and the visited sequence clears.
Episodes last `length` steps and never terminate.
"""

import collections

import elements
import numpy as np

from embodied.core.base import Env, step_spaces

COLORS = {
    '1': (255, 0, 0),
    '2': (0, 255, 0),
    '3': (0, 0, 255),
    '4': (255, 255, 0),
    '5': (255, 0, 255),
    '6': (0, 255, 255),
    '7': (128, 0, 128),
    '8': (0, 128, 128),
}
WALL = (192, 192, 192)
COUNTDOWN_BACKGROUND = (223, 255, 223)
# (dx, dy) per action: stay, +y, -y, +x, -x.
MOVES = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))
REWARD = 10.0
COUNTDOWN = 10
SCALE = 4


def _rows(*interior):
    """Surround 12 rows of 14 cells by a wall border, giving 14 rows of 16 cells."""
    assert len(interior) == 12 and all(len(row) == 14 for row in interior), interior
    border = '#' * 16
    return (border, *(f'#{row}#' for row in interior), border)


# Rows from top to bottom; a row index is y, a column index is x. Spaces are floor.
LAYOUTS = {
    'three': _rows(
        '1111      3333',
        '1111      3333',
        '1111      3333',
        '1111      3333',
        '              ',
        '              ',
        '              ',
        '              ',
        '     2222     ',
        '     2222     ',
        '     2222     ',
        '     2222     ',
    ),
    'four': _rows(
        '1111      4444',
        '1111      4444',
        '1111      4444',
        '1111      4444',
        '              ',
        '              ',
        '              ',
        '              ',
        '3333      2222',
        '3333      2222',
        '3333      2222',
        '3333      2222',
    ),
    'five': _rows(
        '          4444',
        '111       4444',
        '111       4444',
        '111           ',
        '111        555',
        '           555',
        '           555',
        '333        555',
        '333           ',
        '333       2222',
        '333       2222',
        '          2222',
    ),
    'six': _rows(
        '111        555',
        '111        555',
        '111        555',
        '              ',
        '33          66',
        '33          66',
        '33          66',
        '33          66',
        '              ',
        '444        222',
        '444        222',
        '444        222',
    ),
    'seven': _rows(
        '111        444',
        '111        444',
        '11          44',
        '              ',
        '33          55',
        '33          55',
        '33          55',
        '33          55',
        '              ',
        '66          22',
        '666  7777  222',
        '666  7777  222',
    ),
    'eight': _rows(
        '111  8888  444',
        '111  8888  444',
        '11          44',
        '              ',
        '33          55',
        '33          55',
        '33          55',
        '33          55',
        '              ',
        '66          22',
        '666  7777  222',
        '666  7777  222',
    ),
}


class PinPad(Env):
    """Grid world where the agent must visit every pad in ascending order, repeatedly."""

    def __init__(self, task, length=10000, seed=None):
        if task not in LAYOUTS:
            raise ValueError(f"Unknown PinPad task '{task}'; expected one of {sorted(LAYOUTS)}.")
        if length <= 0:
            raise ValueError(f'PinPad length must be positive, got {length}.')
        # Indexed as layout[x, y]: 16 columns by 14 rows.
        self.layout = np.array([list(row) for row in LAYOUTS[task]]).T
        assert self.layout.shape == (16, 14), self.layout.shape
        self.length = length
        self.rng = np.random.default_rng(seed)
        self.pads = sorted(set(self.layout.flatten().tolist()) - {'#', ' '})
        self.target = tuple(self.pads)
        self.spawns = [pos for pos, char in np.ndenumerate(self.layout) if char != '#']
        self.sequence = collections.deque(maxlen=len(self.target))
        self.player = None
        self.steps = 0
        self.countdown = 0
        self.done = True

    @property
    def obs_space(self):
        """A 64x64 RGB image plus the standard keys."""
        return {
            'image': elements.Space(np.uint8, (64, 64, 3)),
            **step_spaces(),
        }

    @property
    def act_space(self):
        """Five moves: stay, +y, -y, +x, -x."""
        return {
            'action': elements.Space(np.int32, (), 0, len(MOVES)),
            'reset': elements.Space(bool),
        }

    def step(self, action):
        """Move the player; reward completing the pad sequence."""
        if action['reset'] or self.done:
            self._respawn()
            self.steps = 0
            self.countdown = 0
            self.done = False
            return self._obs(0.0, is_first=True)
        if self.countdown:
            self.countdown -= 1
            if self.countdown == 0:
                self._respawn()
        dx, dy = MOVES[int(action['action'])]
        x = int(np.clip(self.player[0] + dx, 0, self.layout.shape[0] - 1))
        y = int(np.clip(self.player[1] + dy, 0, self.layout.shape[1] - 1))
        tile = self.layout[x, y]
        if tile != '#':
            self.player = (x, y)
        if tile in COLORS and (not self.sequence or self.sequence[-1] != tile):
            self.sequence.append(tile)
        reward = 0.0
        if tuple(self.sequence) == self.target and not self.countdown:
            reward = REWARD
            self.countdown = COUNTDOWN
        self.steps += 1
        self.done = self.steps >= self.length
        return self._obs(reward, is_last=self.done)

    def render(self):
        """The current frame: a 16x16 grid upscaled 4x, as uint8 (64, 64, 3)."""
        grid = np.full((16, 16, 3), 255, np.uint8)  # indexed [x, y]
        if self.countdown:
            grid[:] = COUNTDOWN_BACKGROUND
        current = self.layout[self.player]
        white = np.array((255, 255, 255))
        for (x, y), char in np.ndenumerate(self.layout):
            if char == '#':
                grid[x, y] = WALL
            elif char in COLORS:
                color = np.array(COLORS[char])
                if char != current:
                    # Pads the player is not standing on are drawn faded towards white.
                    color = (10 * color + 90 * white) / 100
                grid[x, y] = color
        grid[self.player] = (0, 0, 0)
        grid[:, -2:] = WALL
        for index, char in enumerate(self.sequence):
            grid[2 * index + 1, -2] = COLORS[char]
        image = np.repeat(np.repeat(grid, SCALE, 0), SCALE, 1)
        return image.transpose((1, 0, 2))

    def _respawn(self):
        self.player = self.spawns[self.rng.integers(len(self.spawns))]
        self.sequence.clear()

    def _obs(self, reward, is_first=False, is_last=False):
        return {
            'image': self.render(),
            'reward': np.float32(reward),
            'is_first': np.bool_(is_first),
            'is_last': np.bool_(is_last),
            'is_terminal': np.bool_(False),
        }
