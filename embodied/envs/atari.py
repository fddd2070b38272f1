"""Atari 2600 games through the Arcade Learning Environment (ale-py).

Talks to `ale_py.ALEInterface` directly (no gymnasium), so frame skipping, sticky actions, max
pooling, resizing and life handling are all done here. Works with ale-py 0.9 (`act(action)`)
and 0.10+ (`act(action, strength)`): only the action argument is passed.
"""

import collections
import os
import threading

import elements
import numpy as np

from embodied.core.base import Env, step_spaces

from . import registry

ACTION_MEANINGS = (
    'NOOP',
    'FIRE',
    'UP',
    'RIGHT',
    'LEFT',
    'DOWN',
    'UPRIGHT',
    'UPLEFT',
    'DOWNRIGHT',
    'DOWNLEFT',
    'UPFIRE',
    'RIGHTFIRE',
    'LEFTFIRE',
    'DOWNFIRE',
    'UPRIGHTFIRE',
    'UPLEFTFIRE',
    'DOWNRIGHTFIRE',
    'DOWNLEFTFIRE',
)
GRAY_WEIGHTS = np.array([0.299, 0.587, 1 - (0.299 + 0.587)])
GAME_ALIASES = {'james_bond': 'jamesbond'}


class Atari(Env):
    """One ALE game with frame skip (`repeat`), sticky actions and max-pooled frames.

    `is_last` marks game over, the `length` frame limit (a truncation: `is_terminal` stays
    False) and, with `lives='reset'`, a lost life. `is_terminal` marks game over and, with
    `lives` set to `discount` or `reset`, a lost life.
    """

    # ALE construction and resets are not thread-safe across instances in one process.
    LOCK = threading.Lock()

    def __init__(
        self,
        name,
        repeat=4,
        size=(84, 84),
        gray=True,
        noops=0,
        lives='unused',
        sticky=True,
        actions='all',
        length=108000,
        pooling=2,
        aggregate='max',
        resize='pillow',
        autostart=False,
        clip_reward=False,
        seed=None,
    ):
        _check_choice('lives', lives, ('unused', 'discount', 'reset'))
        _check_choice('actions', actions, ('all', 'needed'))
        _check_choice('resize', resize, ('opencv', 'pillow'))
        _check_choice('aggregate', aggregate, ('max', 'mean'))
        if repeat < 1 or pooling < 1:
            raise ValueError(
                f'Atari needs repeat >= 1 and pooling >= 1, got repeat={repeat}, pooling={pooling}.'
            )
        ale_py = registry.require('atari', 'ale_py')
        name = GAME_ALIASES.get(name, name)
        self.repeat = repeat
        self.size = tuple(int(x) for x in size)
        self.gray = gray
        self.noops = noops
        self.lives = lives
        self.sticky = sticky
        self.length = length or None
        self.pooling = pooling
        self.aggregate = aggregate
        self.resize = resize
        self.autostart = autostart
        self.clip_reward = clip_reward
        self.rng = np.random.default_rng(seed)
        self._resizer = _make_resizer(resize, self.size)
        rom = _rom_path(name)

        with self.LOCK:
            ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
            self.ale = ale_py.ALEInterface()
            self.ale.setInt('random_seed', int(self.rng.integers(0, 2**31)))
            self.ale.setFloat('repeat_action_probability', 0.25 if sticky else 0.0)
            self.ale.loadROM(rom)
        self.actionset = {
            'all': self.ale.getLegalActionSet,
            'needed': self.ale.getMinimalActionSet,
        }[actions]()
        self._noop = ale_py.Action.NOOP
        self._fire = ale_py.Action.FIRE
        self._up = ale_py.Action.UP

        height, width = self.ale.getScreenDims()
        self.buffers = collections.deque(
            [np.zeros((height, width, 3), np.uint8) for _ in range(pooling)], maxlen=pooling
        )
        self.prevlives = None
        self.duration = 0
        self.done = True

    @property
    def obs_space(self):
        """The pooled, resized screen plus the standard keys."""
        return {
            'image': elements.Space(np.uint8, (*self.size, 1 if self.gray else 3)),
            **step_spaces(),
        }

    @property
    def act_space(self):
        """An index into the full (18) or minimal action set."""
        return {
            'action': elements.Space(np.int32, (), 0, len(self.actionset)),
            'reset': elements.Space(bool),
        }

    def step(self, action):
        """Apply one action for `repeat` frames, or reset after a reset request or an ending."""
        if action['reset'] or self.done:
            self._reset()
            self.prevlives = self.ale.lives()
            self.duration = 0
            self.done = False
            return self._obs(0.0, is_first=True)
        index = int(action['action'])
        if not 0 <= index < len(self.actionset):
            raise ValueError(
                f'Atari action {index} is outside [0, {len(self.actionset)}) for this action set.'
            )
        act = self.actionset[index]
        reward = 0.0
        terminal = last = False
        captured = False
        for repeat in range(self.repeat):
            reward += self.ale.act(act)
            self.duration += 1
            captured = repeat >= self.repeat - self.pooling
            if captured:
                self._capture()
            if self.ale.game_over():
                terminal = last = True
            if self.length and self.duration >= self.length:
                last = True
            lives = self.ale.lives()
            if 0 < lives < self.prevlives and self.lives != 'unused':
                terminal = True
                last = last or self.lives == 'reset'
            self.prevlives = lives
            if terminal or last:
                break
        if not captured:
            # The loop ended before the pooling window; show the newest frame all the same.
            self._capture()
        self.done = last
        return self._obs(reward, is_last=last, is_terminal=terminal)

    def close(self):
        """Release the emulator."""
        self.ale = None

    def _reset(self):
        with self.LOCK:
            self.ale.reset_game()
        for _ in range(self.rng.integers(self.noops + 1)):
            self._act_or_restart(self._noop)
        if self.autostart and self._fire in self.actionset:
            self._act_or_restart(self._fire)
            self._act_or_restart(self._up)
        self._capture()
        for buffer in list(self.buffers)[1:]:
            np.copyto(buffer, self.buffers[0])

    def _act_or_restart(self, act):
        self.ale.act(act)
        if self.ale.game_over():
            with self.LOCK:
                self.ale.reset_game()

    def _capture(self):
        # Rotate so that the oldest buffer becomes the newest and receives the screen.
        self.buffers.appendleft(self.buffers.pop())
        self.ale.getScreenRGB(self.buffers[0])

    def _obs(self, reward, is_first=False, is_last=False, is_terminal=False):
        if self.clip_reward:
            reward = np.sign(reward)
        if self.aggregate == 'max':
            image = np.max(np.stack(self.buffers), 0)
        else:
            image = np.mean(np.stack(self.buffers), 0).astype(np.uint8)
        if image.shape[:2] != self.size:
            image = self._resizer(image)
        if self.gray:
            image = (image * GRAY_WEIGHTS).sum(-1).astype(np.uint8)[:, :, None]
        return {
            'image': image,
            'reward': np.float32(reward),
            'is_first': np.bool_(is_first),
            'is_last': np.bool_(is_last),
            'is_terminal': np.bool_(is_terminal),
        }


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f'Atari option {name}={value!r} is not one of {choices}.')


def games(task: str = '') -> list[str]:
    """The games there are ROMs for: those in ALE_ROM_PATH when set, else those of ale-py."""
    directory = os.environ.get('ALE_ROM_PATH')
    if directory:
        return sorted(f[: -len('.bin')] for f in os.listdir(directory) if f.endswith('.bin'))
    return list(registry.require('atari', 'ale_py.roms').get_all_rom_ids())


def _rom_path(name):
    directory = os.environ.get('ALE_ROM_PATH')
    if directory:
        path = os.path.join(directory, f'{name}.bin')
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No ROM for Atari game '{name}' at {path} (from ALE_ROM_PATH); add the file "
                'or unset ALE_ROM_PATH to use the ROMs bundled with ale-py.'
            )
        return path
    roms = registry.require('atari', 'ale_py.roms')
    available = roms.get_all_rom_ids()
    if name not in available:
        raise ValueError(
            f"Unknown Atari game '{name}'; ale-py bundles ROMs for: {', '.join(available)}."
        )
    return roms.get_rom_path(name)


def _make_resizer(method, size):
    """A function resizing an (h, w, c) uint8 image to `size` = (height, width)."""
    height, width = size
    if method == 'opencv':
        try:
            import cv2
        except ImportError as e:
            raise ImportError(
                f"Atari option resize='opencv' needs OpenCV, which could not be imported ({e}). "
                "Install it with `pip install opencv-python-headless` or use resize='pillow'."
            ) from e
        return lambda image: cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    image_module = registry.require('atari', 'PIL.Image')

    def resize(image):
        image = image_module.fromarray(image)
        image = image.resize((width, height), image_module.BILINEAR)
        return np.asarray(image)

    return resize
