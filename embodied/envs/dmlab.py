"""DeepMind Lab levels from DMLab-30, suite `dmlab` (`dmlab_<level>`).

Needs the `deepmind_lab` Python module, which is built from source (see the `install` field of
its record in `registry.SUITES`). The shortcut `goals` expands to `explore_goal_locations_small`
(the reference expanded it to `dmlab_dmlab_...`, which is no level). Language levels add an
`instr` observation: the instruction hashed into 32 token embeddings of size 32.
"""

import functools
import re
import zlib

import elements
import numpy as np

from embodied.core.base import Env, step_spaces

from . import registry

LEVEL_ALIASES = {'goals': 'explore_goal_locations_small'}
EVAL_MIXER_SEED = 0x600D5EED
INSTR_TOKENS = 32
EMBED_SIZE = 32
VOCAB_BUCKETS = 64 * 1024
# Lowercase text splits into runs of letters/underscores and runs of other non-space characters.
TOKENIZER = re.compile(r'([a-z_]+|[^a-z_ ]+)')

# Each action is DMLab's 7 integers: look left/right (pixels), look down/up, strafe left/right,
# move backward/forward, fire, jump, crouch.
IMPALA_ACTIONS = (
    (0, 0, 0, 1, 0, 0, 0),  # forward
    (0, 0, 0, -1, 0, 0, 0),  # backward
    (0, 0, -1, 0, 0, 0, 0),  # strafe left
    (0, 0, 1, 0, 0, 0, 0),  # strafe right
    (-20, 0, 0, 0, 0, 0, 0),  # look left
    (20, 0, 0, 0, 0, 0, 0),  # look right
    (-20, 0, 0, 1, 0, 0, 0),  # look left and forward
    (20, 0, 0, 1, 0, 0, 0),  # look right and forward
    (0, 0, 0, 0, 1, 0, 0),  # fire
)
POPART_ACTIONS = (
    (0, 0, 0, 1, 0, 0, 0),  # forward
    (0, 0, 0, -1, 0, 0, 0),  # backward
    (0, 0, -1, 0, 0, 0, 0),  # strafe left
    (0, 0, 1, 0, 0, 0, 0),  # strafe right
    (-10, 0, 0, 0, 0, 0, 0),  # small look left
    (10, 0, 0, 0, 0, 0, 0),  # small look right
    (-60, 0, 0, 0, 0, 0, 0),  # large look left
    (60, 0, 0, 0, 0, 0, 0),  # large look right
    (0, 10, 0, 0, 0, 0, 0),  # look down
    (0, -10, 0, 0, 0, 0, 0),  # look up
    (-10, 0, 0, 1, 0, 0, 0),  # forward and small look left
    (10, 0, 0, 1, 0, 0, 0),  # forward and small look right
    (-60, 0, 0, 1, 0, 0, 0),  # forward and large look left
    (60, 0, 0, 1, 0, 0, 0),  # forward and large look right
    (0, 0, 0, 0, 1, 0, 0),  # fire
)
ACTION_SETS = {'impala': IMPALA_ACTIONS, 'popart': POPART_ACTIONS}


def level_path(level, mode):
    """The DMLab level path for a level name and mode (`train` maps `_test` to `_train`)."""
    level = LEVEL_ALIASES.get(level, level)
    if mode == 'train' and level.endswith('_test'):
        level = level[: -len('_test')] + '_train'
    return 'contributed/dmlab30/' + level


class DMLab(Env):
    """A DMLab-30 level with a discrete action set and `repeat` engine frames per step."""

    def __init__(
        self,
        level,
        repeat=4,
        size=(64, 64),
        mode='train',
        actions='popart',
        episodic=True,
        text=None,
        seed=None,
    ):
        if mode not in ('train', 'eval'):
            raise ValueError(f"DMLab mode must be 'train' or 'eval', got {mode!r}.")
        if actions not in ACTION_SETS:
            raise ValueError(
                f'DMLab actions must be one of {sorted(ACTION_SETS)}, got {actions!r}.'
            )
        deepmind_lab = registry.require('dmlab', 'deepmind_lab')
        level = LEVEL_ALIASES.get(level, level)
        self._size = tuple(int(x) for x in size)
        self._repeat = repeat
        self._actions = ACTION_SETS[actions]
        self._episodic = episodic
        self._text = level.startswith('language') if text is None else text
        self._rng = np.random.default_rng(seed)
        config = {'height': self._size[0], 'width': self._size[1], 'logLevel': 'WARN'}
        if mode == 'eval':
            config.update(allowHoldOutLevels='true', mixerSeed=EVAL_MIXER_SEED)
        observations = ['RGB_INTERLEAVED'] + (['INSTR'] if self._text else [])
        self._env = deepmind_lab.Lab(
            level=level_path(level, mode),
            observations=observations,
            config={k: str(v) for k, v in config.items()},
        )
        if self._text:
            # A fixed random table: token ids hash into it, so no vocabulary is needed.
            self._embeddings = (
                np.random.default_rng(seed=0)
                .normal(0.0, 1.0, (VOCAB_BUCKETS, EMBED_SIZE))
                .astype(np.float32)
            )
        self._image = None
        self._instr = None
        self._done = True

    @property
    def obs_space(self):
        """The RGB frame, the standard keys and, for language levels, `instr`."""
        spaces = {
            'image': elements.Space(np.uint8, self._size + (3,)),
            **step_spaces(),
        }
        if self._text:
            spaces['instr'] = elements.Space(np.float32, (INSTR_TOKENS * EMBED_SIZE,))
        return spaces

    @property
    def act_space(self):
        """An index into the action set and `reset`."""
        return {
            'action': elements.Space(np.int32, (), 0, len(self._actions)),
            'reset': elements.Space(bool),
        }

    def step(self, action):
        """Apply one action for `repeat` frames, or reset with a fresh level seed."""
        if action['reset'] or self._done:
            self._env.reset(seed=int(self._rng.integers(0, 2**31 - 1)))
            self._done = False
            return self._obs(0.0, is_first=True)
        raw = np.array(self._actions[int(action['action'])], np.intc)
        reward = self._env.step(raw, num_steps=self._repeat)
        self._done = not self._env.is_running()
        return self._obs(reward, is_last=self._done)

    def close(self):
        """Shut the engine down."""
        self._env.close()

    def _obs(self, reward, is_first=False, is_last=False):
        if not self._done:
            # After the level ends there is no new frame; the last one is repeated.
            observations = self._env.observations()
            self._image = observations['RGB_INTERLEAVED']
            if self._text:
                self._instr = self.embed(observations['INSTR'])
        obs = {
            'image': self._image,
            'reward': np.float32(reward),
            'is_first': np.bool_(is_first),
            'is_last': np.bool_(is_last),
            'is_terminal': np.bool_(is_last and self._episodic),
        }
        if self._text:
            obs['instr'] = self._instr
        return obs

    def embed(self, text):
        """Embed an instruction as INSTR_TOKENS hashed token vectors, zero-index padded."""
        tokens = TOKENIZER.findall(text.lower())[:INSTR_TOKENS]
        indices = [_token_id(token) for token in tokens]
        indices += [0] * (INSTR_TOKENS - len(indices))
        return self._embeddings[indices].reshape(-1)


@functools.lru_cache(maxsize=None)
def _token_id(token):
    return zlib.crc32(token.encode('utf-8')) % VOCAB_BUCKETS
