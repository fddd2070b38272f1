"""Adapters whose packages cannot be installed here (DMLab, MineRL, Procgen, Memory Maze).

Each adapter runs against a small stand-in for its package, injected into sys.modules, so its
own logic (spaces, action mapping, episode flags, rewards, fixes of reference defects) is still
tested.
"""

import sys
import types

import gymnasium
import numpy as np
import pytest

import embodied
from embodied.envs import registry


def fake_module(monkeypatch, name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


# ---------------------------------------------------------------- DMLab


class FakeLab:
    """Mimics deepmind_lab.Lab: episodes last `length` engine frames."""

    instances = []

    def __init__(self, level, observations, config, length=12):
        self.level = level
        self.observation_names = observations
        self.config = config
        self.length = length
        self.frame = 0
        self.seeds = []
        self.actions = []
        FakeLab.instances.append(self)

    def reset(self, seed=None):
        self.seeds.append(seed)
        self.frame = 0

    def step(self, action, num_steps=1):
        assert action.dtype == np.intc and action.shape == (7,)
        self.actions.append((action.tolist(), num_steps))
        self.frame += num_steps
        return 0.25 * num_steps

    def is_running(self):
        return self.frame < self.length

    def observations(self):
        if not self.is_running():
            raise RuntimeError('no observations after the episode ended')
        height, width = int(self.config['height']), int(self.config['width'])
        obs = {'RGB_INTERLEAVED': np.full((height, width, 3), self.frame, np.uint8)}
        if 'INSTR' in self.observation_names:
            obs['INSTR'] = 'Pick the RED_ball, then 2 keys!'
        return obs

    def close(self):
        pass


@pytest.fixture
def dmlab(monkeypatch):
    FakeLab.instances = []
    fake_module(monkeypatch, 'deepmind_lab', Lab=FakeLab)
    return registry.load('dmlab')


def dmlab_act(action=0, reset=False):
    return {'action': np.int32(action), 'reset': np.bool_(reset)}


def test_dmlab_goals_shortcut_and_level_modes(dmlab):
    dmlab('goals')
    assert FakeLab.instances[-1].level == 'contributed/dmlab30/explore_goal_locations_small'
    dmlab('rooms_watermaze_test', mode='train')
    assert FakeLab.instances[-1].level == 'contributed/dmlab30/rooms_watermaze_train'
    dmlab('rooms_watermaze_test', mode='eval', size=(72, 96))
    config = FakeLab.instances[-1].config
    assert FakeLab.instances[-1].level.endswith('rooms_watermaze_test')
    assert config == {
        'height': '72',
        'width': '96',
        'logLevel': 'WARN',
        'allowHoldOutLevels': 'true',
        'mixerSeed': str(0x600D5EED),
    }
    with pytest.raises(ValueError, match='mode'):
        dmlab('goals', mode='test')


def test_dmlab_steps_actions_and_episode_end(dmlab, rollout):
    env = dmlab('goals', repeat=4, seed=0)
    lab = FakeLab.instances[-1]
    assert env.act_space['action'].classes == 15
    obs = env.step(dmlab_act(reset=True))
    assert obs['is_first'] and obs['image'].shape == (64, 64, 3)
    obs = env.step(dmlab_act(12))  # forward + large look left
    assert lab.actions[-1] == ([-60, 0, 0, 1, 0, 0, 0], 4)
    assert obs['reward'] == np.float32(1.0)
    env.step(dmlab_act(0))
    obs = env.step(dmlab_act(0))  # frame 12: the level stopped
    assert obs['is_last'] and obs['is_terminal']
    assert obs['image'][0, 0, 0] == 8  # the last valid frame is repeated
    assert env.step(dmlab_act(0))['is_first']
    trajectory = rollout(embodied.wrap_env(dmlab('goals', episodic=False)), 20)
    lasts = [o for o in trajectory if o['is_last']]
    assert lasts and not any(o['is_terminal'] for o in lasts)


def test_dmlab_seeded_level_seeds(dmlab):
    first, second = dmlab('goals', seed=5), dmlab('goals', seed=5)
    for env in (first, second):
        for _ in range(3):
            env.step(dmlab_act(reset=True))
    assert FakeLab.instances[0].seeds == FakeLab.instances[1].seeds
    assert len(set(FakeLab.instances[0].seeds)) == 3


def test_dmlab_language_instruction(dmlab):
    env = dmlab('language_select_described_object', actions='impala')
    assert env.act_space['action'].classes == 9
    assert env.obs_space['instr'].shape == (1024,)
    obs = env.step(dmlab_act(reset=True))
    instr = obs['instr']
    assert instr.shape == (1024,) and instr.dtype == np.float32
    tokens = instr.reshape(32, 32)
    # 'pick the red_ball , then 2 keys !' has 8 tokens; the rest pad with row 0.
    assert not np.array_equal(tokens[7], tokens[0])
    np.testing.assert_array_equal(tokens[8:], np.broadcast_to(tokens[8], (24, 32)))
    np.testing.assert_array_equal(env.embed('Ball ball'), env.embed('ball BALL'))
    np.testing.assert_array_equal(env.embed('x')[32:64], env.embed('')[:32])


# ---------------------------------------------------------------- Minecraft


class SpaceDict(dict):
    """Stands in for gym Dict spaces: a dict that also has `.spaces`."""

    @property
    def spaces(self):
        return self


ITEMS = (
    'air',
    'dirt',
    'log',
    'log2',
    'planks',
    'stick',
    'crafting_table',
    'wooden_pickaxe',
    'cobblestone',
    'stone_pickaxe',
    'iron_ore',
    'furnace',
    'iron_ingot',
    'iron_pickaxe',
    'diamond',
)


class FakeMineRL:
    """A gym env with MineRL's observation layout; the test scripts its state."""

    observation_space = SpaceDict(
        inventory=SpaceDict({item: None for item in ITEMS}),
        equipped_items=SpaceDict(
            mainhand=SpaceDict(
                type=types.SimpleNamespace(values=np.array(['air', 'wooden_pickaxe', 'other']))
            )
        ),
    )

    def __init__(self):
        self.inventory = dict.fromkeys(ITEMS, 0)
        self.height = 64.0
        self.life = 20.0
        self.actions = []
        self.info = {}
        self.resets = 0

    def reset(self):
        self.resets += 1
        return self._obs()

    def step(self, action):
        self.actions.append(dict(action))
        info, self.info = self.info, {}
        return self._obs(), 0.0, False, info

    def close(self):
        pass

    def _obs(self):
        return {
            'pov': np.zeros((64, 64, 3), np.uint8),
            'inventory': dict(self.inventory),
            'equipped_items': {'mainhand': {'type': 'wooden_pickaxe'}},
            'location_stats': {'xpos': 1.0, 'ypos': self.height, 'zpos': -2.0},
            'life_stats': {'life': self.life, 'food': 10.0, 'air': 300.0},
        }


@pytest.fixture
def minecraft(monkeypatch):
    from embodied.envs import minecraft as module

    fake_module(monkeypatch, 'minerl')
    fakes = []

    def make(size, break_speed):
        fakes.append(FakeMineRL())
        return fakes[-1]

    monkeypatch.setattr(module, '_make_minerl_env', make)
    ctor = registry.load('minecraft')
    return lambda *a, **k: (ctor(*a, **k), fakes[-1])


def mc_act(env, name='noop', reset=False):
    index = env._base.action_names.index(name)
    return {'action': np.int32(index), 'reset': np.bool_(reset)}


def test_minecraft_spaces_emit_player_position(minecraft):
    env, _ = minecraft('climb')
    space = env.obs_space
    assert space['log/player_pos'].shape == (3,) and space['log/player_pos'].dtype == np.float32
    assert {'log/log', 'log/cobblestone', 'log/iron_ingot', 'log/diamond'} <= set(space)
    assert space['inventory'].shape == (len(ITEMS) - 1,)  # log2 is merged into log
    assert space['equipped'].shape == (3,)
    assert env.act_space['action'].classes == 12
    assert minecraft('diamond')[0].act_space['action'].classes == 25
    obs = env.step(mc_act(env, reset=True))
    np.testing.assert_array_equal(obs['log/player_pos'], [1.0, 64.0, -2.0])
    np.testing.assert_array_equal(obs['equipped'], [0, 1, 0])


def test_minecraft_climb_reward_reads_the_height(minecraft):
    env, fake = minecraft('climb')
    env.step(mc_act(env, reset=True))
    fake.height = 66.5
    assert env.step(mc_act(env, 'jump'))['reward'] == pytest.approx(2.5)
    fake.height = 66.0
    fake.life = 10.0  # health 1.0 -> 0.5 adds 0.01 * -0.5
    assert env.step(mc_act(env))['reward'] == pytest.approx(-0.5 - 0.005)


def test_minecraft_wood_and_diamond_rewards(minecraft):
    env, fake = minecraft('wood')
    env.step(mc_act(env, reset=True))
    fake.inventory['log'], fake.inventory['log2'] = 1, 1
    obs = env.step(mc_act(env, 'attack'))
    assert obs['reward'] == 2 and obs['log/log'] == 2
    env, fake = minecraft('diamond')
    fake.inventory['dirt'] = 5
    env.step(mc_act(env, reset=True))
    fake.inventory['planks'] = 4
    fake.inventory['stick'] = 2
    assert env.step(mc_act(env))['reward'] == 2  # first planks, first sticks
    fake.inventory['planks'] = 8
    assert env.step(mc_act(env))['reward'] == 0  # not again
    obs = env.step(mc_act(env, 'craft_planks'))
    assert fake.actions[-1]['craft'] == 'planks'


def test_minecraft_action_shaping(minecraft):
    env, fake = minecraft('wood', break_speed=1.0)
    env.step(mc_act(env, reset=True))
    env.step(mc_act(env, 'attack'))
    for _ in range(29):
        env.step(mc_act(env))
    assert [a['attack'] for a in fake.actions] == [1] * 30  # sticky attack for 30 steps
    env.step(mc_act(env))
    assert fake.actions[-1]['attack'] == 0
    for _ in range(5):
        env.step(mc_act(env, 'turn_up'))
    pitches = [a['camera'][0] for a in fake.actions[-5:]]
    assert pitches == [-15, -15, -15, -15, 0]  # the turn past -60 degrees is dropped
    env, fake = minecraft('wood')  # break_speed 100 disables sticky attack
    env.step(mc_act(env, reset=True))
    env.step(mc_act(env, 'attack'))
    env.step(mc_act(env))
    assert [a['attack'] for a in fake.actions] == [1, 0]


def test_minecraft_time_limit_and_error_reset(minecraft, rollout):
    env, fake = minecraft('wood', length=5)
    trajectory = rollout(embodied.wrap_env(env), 13)
    assert [i for i, o in enumerate(trajectory) if o['is_last']] == [5, 11]
    env.step(mc_act(env, reset=True))
    resets = fake.resets
    fake.info = {'error': 'connection lost'}
    assert env.step(mc_act(env))['is_first'] and fake.resets == resets + 1


# ---------------------------------------------------------------- Procgen


class FakeGym3:
    def get_info(self):
        return [{'rgb': np.full((512, 512, 3), 77, np.uint8)}]


class FakeProcgen:
    """Old-gym-API procgen env behind one wrapper layer, as gym.make returns it."""

    observation_space = gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gymnasium.spaces.Discrete(15)

    def __init__(self, env_id, **kwargs):
        self.env_id, self.kwargs = env_id, kwargs
        self.env = types.SimpleNamespace(env=FakeGym3())

    def reset(self):
        return np.zeros((64, 64, 3), np.uint8)

    def step(self, action):
        return np.ones((64, 64, 3), np.uint8), 1.0, False, {}


@pytest.fixture
def procgen(monkeypatch):
    made = []

    def make(env_id, **kwargs):
        made.append(FakeProcgen(env_id, **kwargs))
        return made[-1]

    fake_module(monkeypatch, 'procgen')
    fake_module(monkeypatch, 'gym', make=make)
    ctor = registry.load('procgen')
    return lambda *a, **k: (ctor(*a, **k), made[-1])


def test_procgen_native_size_uses_the_step_image(procgen):
    env, fake = procgen('coinrun', size=(64, 64))
    assert fake.env_id == 'procgen:procgen-coinrun-v0'
    assert fake.kwargs == {'disable_env_checker': True}  # gym's checker breaks on NumPy 2
    assert env.act_space['action'].classes == 15
    env.step({'action': np.int32(0), 'reset': np.bool_(True)})
    obs = env.step({'action': np.int32(3), 'reset': np.bool_(False)})
    assert obs['image'].shape == (64, 64, 3) and obs['image'][0, 0, 0] == 1


def test_procgen_other_sizes_resize_the_large_frame(procgen):
    env, fake = procgen('coinrun', size=(96, 96), resize='pillow')
    assert fake.kwargs == {'render_mode': 'rgb_array', 'disable_env_checker': True}
    assert env.obs_space['image'].shape == (96, 96, 3)
    obs = env.step({'action': np.int32(0), 'reset': np.bool_(True)})
    assert obs['image'].shape == (96, 96, 3) and (obs['image'] == 77).all()


# ---------------------------------------------------------------- Memory Maze


def test_memmaze_makes_the_gym_id(monkeypatch):
    made = []

    def make(env_id, **kwargs):
        made.append((env_id, kwargs))
        return FakeProcgen(env_id)

    fake_module(monkeypatch, 'memory_maze')
    fake_module(monkeypatch, 'gym', make=make)
    env = registry.load('memmaze')('9x9')
    assert made == [('MemoryMaze-9x9-v0', {'disable_env_checker': True})]
    assert env.obs_space['image'].shape == (64, 64, 3)
    assert set(env.act_space) == {'action', 'reset'}
