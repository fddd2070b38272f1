"""Minecraft through MineRL 0.4.4, suite `minecraft` (`minecraft_<wood|climb|diamond>`).

A custom MineRL environment spec (POV image, flat inventory, equipped item, location, life
stats) drives a discrete set of action macros with sticky attack/jump and a camera pitch limit.
Each task wraps the base environment in TimeLimit(`length`) and computes its own reward. The
player position is emitted as `log/player_pos`, which the climb reward reads (the reference read
it but no longer produced it). MineRL cannot be pip-installed without JDK 8 and network access
(see the `install` field of its `registry.SUITES` record).
"""

import threading

import elements
import numpy as np

from embodied.core.base import Env, step_spaces

from . import registry

NOOP_ACTION = {
    'camera': (0, 0),
    'forward': 0,
    'back': 0,
    'left': 0,
    'right': 0,
    'attack': 0,
    'sprint': 0,
    'jump': 0,
    'sneak': 0,
    'craft': 'none',
    'nearbyCraft': 'none',
    'nearbySmelt': 'none',
    'place': 'none',
    'equip': 'none',
}
# Camera deltas are (pitch, yaw) in degrees; negative pitch looks up.
BASIC_ACTIONS = {
    'noop': {},
    'attack': {'attack': 1},
    'turn_up': {'camera': (-15, 0)},
    'turn_down': {'camera': (15, 0)},
    'turn_left': {'camera': (0, -15)},
    'turn_right': {'camera': (0, 15)},
    'forward': {'forward': 1},
    'back': {'back': 1},
    'left': {'left': 1},
    'right': {'right': 1},
    'jump': {'jump': 1, 'forward': 1},
    'place_dirt': {'place': 'dirt'},
}
DIAMOND_ACTIONS = {
    **BASIC_ACTIONS,
    'craft_planks': {'craft': 'planks'},
    'craft_stick': {'craft': 'stick'},
    'craft_crafting_table': {'craft': 'crafting_table'},
    'place_crafting_table': {'place': 'crafting_table'},
    'craft_wooden_pickaxe': {'nearbyCraft': 'wooden_pickaxe'},
    'craft_stone_pickaxe': {'nearbyCraft': 'stone_pickaxe'},
    'craft_iron_pickaxe': {'nearbyCraft': 'iron_pickaxe'},
    'equip_stone_pickaxe': {'equip': 'stone_pickaxe'},
    'equip_wooden_pickaxe': {'equip': 'wooden_pickaxe'},
    'equip_iron_pickaxe': {'equip': 'iron_pickaxe'},
    'craft_furnace': {'nearbyCraft': 'furnace'},
    'place_furnace': {'place': 'furnace'},
    'smelt_iron_ingot': {'nearbySmelt': 'iron_ingot'},
}
DIAMOND_ITEMS = (
    'log',
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
# Keys repeated on the extra frames of an action with repeat > 1.
MOVEMENT_KEYS = ('attack', 'forward', 'back', 'left', 'right')
HEALTH_SCALE = 0.01


class Minecraft(Env):
    """A Minecraft task: `wood` (+1 per log), `climb` (height gain) or `diamond` (milestones).

    All tasks add HEALTH_SCALE times the change in health to the reward.
    """

    def __init__(self, task, length=36000, **kwargs):
        if task not in ('wood', 'climb', 'diamond'):
            raise ValueError(
                f"Unknown Minecraft task '{task}'; expected 'wood', 'climb' or 'diamond'."
            )
        from embodied.core import wrappers

        actions = DIAMOND_ACTIONS if task == 'diamond' else BASIC_ACTIONS
        self._base = MinecraftBase(actions, **kwargs)
        self._env = wrappers.TimeLimit(self._base, length)
        if task == 'wood':
            self._rewards = [CollectReward('log', repeated=1)]
        elif task == 'climb':
            self._rewards = [ClimbReward()]
        else:
            self._rewards = [CollectReward(item, once=1) for item in DIAMOND_ITEMS]
        self._rewards.append(HealthReward())

    @property
    def obs_space(self):
        """The base environment's observation spaces."""
        return self._env.obs_space

    @property
    def act_space(self):
        """The discrete macro `action` and `reset`."""
        return self._env.act_space

    def step(self, action):
        """Step the base environment and compute the task reward."""
        obs = self._env.step(action)
        inventory = self._base.inventory
        reward = sum(fn(obs, inventory) for fn in self._rewards)
        obs['reward'] = np.float32(reward)
        return obs

    def close(self):
        """Close the game."""
        self._base.close()


class CollectReward:
    """+`once` when the item is first held (if not held at the start), +`repeated` per gain."""

    def __init__(self, item, once=0, repeated=0):
        self.item = item
        self.once = once
        self.repeated = repeated
        self.previous = 0
        self.maximum = 0

    def __call__(self, obs, inventory):
        """The reward for this step."""
        current = inventory.get(self.item, 0)
        if obs['is_first']:
            self.previous = self.maximum = current
            return 0.0
        reward = self.repeated * max(0, current - self.previous)
        if self.maximum == 0 and current > 0:
            reward += self.once
        self.previous = current
        self.maximum = max(self.maximum, current)
        return float(reward)


class HealthReward:
    """HEALTH_SCALE times the change in normalised health."""

    def __init__(self, scale=HEALTH_SCALE):
        self.scale = scale
        self.previous = None

    def __call__(self, obs, inventory=None):
        """The reward for this step."""
        health = float(obs['health'])
        if obs['is_first']:
            self.previous = health
            return 0.0
        reward = self.scale * (health - self.previous)
        self.previous = health
        return reward


class ClimbReward:
    """The change in the player's height since the previous step."""

    def __init__(self):
        self.previous = None

    def __call__(self, obs, inventory=None):
        """The reward for this step."""
        height = float(obs['log/player_pos'][1])
        if obs['is_first']:
            self.previous = height
        reward = height - self.previous
        self.previous = height
        return reward


class MinecraftBase(Env):
    """The MineRL environment with macro actions, action shaping and processed observations."""

    LOCK = threading.Lock()

    def __init__(
        self,
        actions,
        repeat=1,
        size=(64, 64),
        break_speed=100.0,
        sticky_attack=30,
        sticky_jump=10,
        pitch_limit=(-60, 60),
        log_inv_keys=('log', 'cobblestone', 'iron_ingot', 'diamond'),
        logs=False,
    ):
        registry.require('minecraft', 'minerl')
        if logs:
            import logging

            logging.basicConfig(level=logging.DEBUG)
        from .from_gym import flatten

        self._flatten = flatten
        self._repeat = repeat
        self._size = tuple(int(x) for x in size)
        if break_speed != 1.0:
            # Faster breaking makes holding attack pointless.
            sticky_attack = 0
        with self.LOCK:
            self._gymenv = _make_minerl_env(self._size, break_speed)
        space = self._gymenv.observation_space
        self._inv_keys = [f'inventory/{k}' for k in space['inventory'].spaces if k != 'log2']
        self._inv_log_keys = [f'inventory/{k}' for k in log_inv_keys]
        missing = [k for k in self._inv_log_keys if k not in self._inv_keys]
        if missing:
            raise ValueError(f'Minecraft log_inv_keys {missing} are not inventory items.')
        self._equip_enum = list(space['equipped_items']['mainhand']['type'].values)
        self._action_names = tuple(actions)
        self._action_values = tuple({**NOOP_ACTION, **value} for value in actions.values())
        self._sticky_attack_length = sticky_attack
        self._sticky_jump_length = sticky_jump
        self._pitch_limit = pitch_limit
        self._inventory = {}
        self._max_inventory = None
        self._sticky_attack = 0
        self._sticky_jump = 0
        self._pitch = 0
        self._done = True
        self._info = {}

    @property
    def inventory(self):
        """Item counts of the latest observation, by item name."""
        return self._inventory

    @property
    def action_names(self):
        """The macro names, in action index order."""
        return self._action_names

    @property
    def obs_space(self):
        """Image, inventory, equipment, life stats, the standard keys and `log/` entries."""
        items = len(self._inv_keys)
        return {
            'image': elements.Space(np.uint8, self._size + (3,)),
            'inventory': elements.Space(np.float32, (items,), 0),
            'inventory_max': elements.Space(np.float32, (items,), 0),
            'equipped': elements.Space(np.float32, (len(self._equip_enum),), 0, 1),
            'health': elements.Space(np.float32),
            'hunger': elements.Space(np.float32),
            'breath': elements.Space(np.float32),
            **step_spaces(),
            **{f'log/{k.split("/", 1)[1]}': elements.Space(np.int32) for k in self._inv_log_keys},
            'log/player_pos': elements.Space(np.float32, (3,)),
        }

    @property
    def act_space(self):
        """An index into the macro actions and `reset`."""
        return {
            'action': elements.Space(np.int32, (), 0, len(self._action_values)),
            'reset': elements.Space(bool),
        }

    def step(self, action):
        """Apply the macro (with shaping) `repeat` times; an env error triggers a reset."""
        if action['reset'] or self._done:
            return self._reset()
        act = self._shape(dict(self._action_values[int(action['action'])]))
        following = {**NOOP_ACTION, **{k: act[k] for k in MOVEMENT_KEYS}}
        for current in [act] + [following] * (self._repeat - 1):
            raw, _, done, self._info = self._gymenv.step(current)
            if self._info and 'error' in self._info:
                return self._reset()
            if done:
                break
        self._done = bool(done)
        return self._obs(raw, is_last=self._done, is_terminal=self._done)

    def close(self):
        """Shut Minecraft down."""
        try:
            self._gymenv.close()
        except Exception:
            pass

    def _reset(self):
        with self.LOCK:
            raw = self._gymenv.reset()
        self._max_inventory = None
        self._sticky_attack = 0
        self._sticky_jump = 0
        self._pitch = 0
        self._done = False
        return self._obs(raw, is_first=True)

    def _shape(self, act):
        if self._sticky_attack_length:
            if act['attack']:
                self._sticky_attack = self._sticky_attack_length
            if self._sticky_attack > 0:
                act['attack'] = 1
                act['jump'] = 0
                self._sticky_attack -= 1
        if self._sticky_jump_length:
            if act['jump']:
                self._sticky_jump = self._sticky_jump_length
            if self._sticky_jump > 0:
                act['jump'] = 1
                act['forward'] = 1
                self._sticky_jump -= 1
        pitch, yaw = act['camera']
        if self._pitch_limit and pitch:
            low, high = self._pitch_limit
            if low <= self._pitch + pitch <= high:
                self._pitch += pitch
            else:
                act['camera'] = (0, yaw)  # Drop turns past the limit.
        return act

    def _obs(self, raw, is_first=False, is_last=False, is_terminal=False):
        obs = self._flatten(raw)
        obs['inventory/log'] = obs['inventory/log'] + obs.pop('inventory/log2', 0)
        self._inventory = {
            k.split('/', 1)[1]: int(obs[k]) for k in self._inv_keys if k != 'inventory/air'
        }
        inventory = np.array([obs[k] for k in self._inv_keys], np.float32)
        if self._max_inventory is None:
            self._max_inventory = inventory
        else:
            self._max_inventory = np.maximum(self._max_inventory, inventory)
        equipped = np.zeros(len(self._equip_enum), np.float32)
        item = str(obs['equipped_items/mainhand/type'])
        equipped[self._equip_enum.index(item) if item in self._equip_enum else -1] = 1.0
        position = [obs[f'location_stats/{axis}pos'] for axis in 'xyz']
        return {
            'image': np.asarray(obs['pov'], np.uint8),
            'inventory': inventory,
            'inventory_max': self._max_inventory.copy(),
            'equipped': equipped,
            'health': np.float32(obs['life_stats/life'] / 20),
            'hunger': np.float32(obs['life_stats/food'] / 20),
            'breath': np.float32(obs['life_stats/air'] / 300),
            'reward': np.float32(0.0),
            'is_first': np.bool_(is_first),
            'is_last': np.bool_(is_last),
            'is_terminal': np.bool_(is_terminal),
            **{f'log/{k.split("/", 1)[1]}': np.int32(obs[k]) for k in self._inv_log_keys},
            'log/player_pos': np.array(position, np.float32),
        }


def _make_minerl_env(size, break_speed):
    """Build the gym environment of a custom MineRL 0.4.4 environment spec."""
    from minerl.herobraine.env_spec import EnvSpec
    from minerl.herobraine.hero import handler, handlers, mc
    from minerl.herobraine.hero.mc import INVERSE_KEYMAP

    class BreakSpeedMultiplier(handler.Handler):
        """Agent-start handler that multiplies block breaking speed."""

        def __init__(self, multiplier=1.0):
            self.multiplier = multiplier

        def to_string(self):
            return f'break_speed({self.multiplier})'

        def xml_template(self):
            return '<BreakSpeedMultiplier>{{multiplier}}</BreakSpeedMultiplier>'

    class Spec(EnvSpec):
        """Open world, default generator, no built-in rewards or episode end."""

        def __init__(self):
            super().__init__(name='EmbodiedMinecraft-v1')

        def create_agent_start(self):
            return [BreakSpeedMultiplier(break_speed)]

        def create_agent_handlers(self):
            return []

        def create_server_world_generators(self):
            return [handlers.DefaultWorldGenerator(force_reset=True)]

        def create_server_quit_producers(self):
            return [handlers.ServerQuitWhenAnyAgentFinishes()]

        def create_server_initial_conditions(self):
            return [
                handlers.TimeInitialCondition(allow_passage_of_time=True, start_time=0),
                handlers.SpawningInitialCondition(allow_spawning=True),
            ]

        def create_observables(self):
            return [
                handlers.POVObservation(size),
                handlers.FlatInventoryObservation(mc.ALL_ITEMS),
                handlers.EquippedItemObservation(mc.ALL_ITEMS, _default='air', _other='other'),
                handlers.ObservationFromCurrentLocation(),
                handlers.ObservationFromLifeStats(),
            ]

        def create_actionables(self):
            items = ['none'] + mc.ALL_ITEMS
            kw = {'_other': 'none', '_default': 'none'}
            keys = ('forward', 'back', 'left', 'right', 'jump', 'sneak', 'attack')
            return [
                *[handlers.KeybasedCommandAction(k, INVERSE_KEYMAP[k]) for k in keys],
                handlers.CameraAction(),
                handlers.PlaceBlock(items, **kw),
                handlers.EquipAction(items, **kw),
                handlers.CraftAction(items, **kw),
                handlers.CraftNearbyAction(items, **kw),
                handlers.SmeltItemNearby(items, **kw),
            ]

        def create_rewardables(self):
            return []

        def create_server_decorators(self):
            return []

        def create_mission_handlers(self):
            return []

        def create_monitors(self):
            return []

        def is_from_folder(self, folder):
            return folder == 'none'

        def get_docstring(self):
            return ''

        def determine_success_from_rewards(self, rewards):
            return True

    return Spec().make()
