"""The table of environment suites, and building a run's environments from it.

A task is `<suite>_<name>`: `atari_pong`, `dmc_walker_walk`, `gym_CartPole-v1`. `make_env`
builds environment `index` of a run's task with the options under `env.<suite>` and the standard
wrappers. Each suite is one `Suite` record in `SUITES`: where its constructor lives, which
third-party modules it needs and how to install them. Adapters are imported only when their
suite is used, so a missing package is a one-line `MissingSuiteError` that names the extra to
install, never an import failure at start.
"""

import dataclasses
import difflib
import importlib
import importlib.util
import os

import elements

from embodied.core.base import SetupError


@dataclasses.dataclass(frozen=True)
class Suite:
    """One environment suite: its constructor, what it needs and how to install that."""

    # 'module:name' of the constructor, called as ctor(task, **env.<suite> options).
    ctor: str
    # Python modules the adapter needs, checked in this order before it is imported.
    needs: tuple = ()
    # The `dreamerv3[...]` extra that installs them ('': nothing to install, or not with pip).
    extra: str = ''
    # What to do instead when pip cannot install the suite's packages.
    install: str = ''
    # A known installation trap, added to the missing-package message.
    hint: str = ''
    # The only task names the suite accepts (empty: whatever its constructor builds).
    tasks: tuple = ()
    # MuJoCo suites render headless through EGL unless the user chose a backend.
    mujoco: bool = False
    # 'module:name' of the pure JAX form (a JaxEnv) of a JAX-native suite, for train_device.
    jax: str = ''
    # 'module:name' of a function(name) giving the task names the suite's library knows, so
    # that a misspelt task fails at start with the closest ones (None: it cannot tell).
    names: str = ''


DMC_HINT = (
    'dm-control 1.0.50 breaks with mujoco 4 (`flex_vertedge` errors); keep mujoco<4. '
    'Rendering also needs the system libraries libegl1 libegl-mesa0 libgl1-mesa-dri '
    '(MUJOCO_GL=egl) or libosmesa6 (MUJOCO_GL=osmesa).'
)

SUITES = {
    'dummy': Suite('embodied.envs.dummy:Dummy', tasks=('disc',)),
    'gym': Suite(
        'embodied.envs.from_gym:make_gym',
        ('gymnasium',),
        'gym',
        names='embodied.envs.from_gym:known_ids',
    ),
    'custom': Suite('embodied.envs.custom:make_custom'),
    'dm': Suite('embodied.envs.from_dm:FromDM', ('dm_env',), 'dm'),
    'crafter': Suite('embodied.envs.crafter:Crafter', ('crafter',), 'crafter'),
    'dmc': Suite(
        'embodied.envs.dmc:DMC', ('mujoco', 'dm_control'), 'dmc', hint=DMC_HINT, mujoco=True
    ),
    'atari': Suite(
        'embodied.envs.atari:Atari', ('ale_py',), 'atari', names='embodied.envs.atari:games'
    ),
    'atari100k': Suite(
        'embodied.envs.atari:Atari', ('ale_py',), 'atari', names='embodied.envs.atari:games'
    ),
    'dmlab': Suite(
        'embodied.envs.dmlab:DMLab',
        ('deepmind_lab',),
        install=(
            'DeepMind Lab is not on the Python package index; build the `deepmind_lab` Python '
            'package from source (the deepmind/lab repository, docs/users/build.md) and install '
            'the wheel it produces into this environment.'
        ),
    ),
    'minecraft': Suite(
        'embodied.envs.minecraft:Minecraft',
        ('minerl',),
        install=(
            'MineRL 0.4.4 is needed (`pip install minerl==0.4.4`); its build needs JDK 8 and '
            'internet access to download Gradle and Minecraft, so install it on a machine that '
            'has both.'
        ),
    ),
    'loconav': Suite(
        'embodied.envs.loconav:LocoNav',
        ('mujoco', 'dm_control', 'labmaze'),
        'dmc',
        hint='Keep mujoco<4 next to dm-control 1.0.50.',
        mujoco=True,
    ),
    'pinpad': Suite('embodied.envs.pinpad:PinPad'),
    'procgen': Suite(
        'embodied.envs.procgen:ProcGen',
        ('procgen',),
        'procgen',
        hint=(
            'procgen-mirror requires numpy<2, which conflicts with recent JAX; use a separate '
            'environment or install it with --no-deps next to numpy 2 (gym3, gym==0.26.2 '
            'installed by hand).'
        ),
    ),
    'bsuite': Suite('embodied.envs.bsuite:BSuite', ('dm_env', 'bsuite'), 'bsuite'),
    'gymnax': Suite(
        'embodied.envs.from_gymnax:make',
        ('gymnax', 'six'),
        'gymnax',
        jax='embodied.envs.from_gymnax:Gymnax',
    ),
    'craftax': Suite(
        'embodied.envs.from_craftax:make',
        ('craftax',),
        'craftax',
        jax='embodied.envs.from_craftax:Craftax',
    ),
    'xminigrid': Suite(
        'embodied.envs.from_xminigrid:make',
        ('xminigrid',),
        'xminigrid',
        jax='embodied.envs.from_xminigrid:XMiniGrid',
    ),
    'memmaze': Suite(
        'embodied.envs.memmaze:MemoryMaze',
        ('memory_maze', 'gym'),
        'memmaze',
        hint='memory-maze imports the old `gym` package (gym==0.26.2) and needs mujoco<4.',
        mujoco=True,
    ),
}

# Suites for which this reimplementation has no adapter, with the reason.
UNSUPPORTED = {'langroom': 'the reference lists it but ships no module for it'}


class MissingSuiteError(ImportError):
    """A suite's third-party package is not importable; the message says what to install."""

    def __init__(self, suite, module, cause=None, message=None):
        self.suite = suite
        self.module = module
        if message is None:
            entry = SUITES.get(suite, Suite(''))
            reason = f' ({type(cause).__name__}: {cause})' if cause is not None else ''
            if entry.install:
                action = entry.install
            elif entry.extra:
                action = f"Install it with: pip install 'dreamerv3[{entry.extra}]'"
            else:
                action = f'Install the package that provides `{module}`.'
            hint = f'\nNote: {entry.hint}' if entry.hint else ''
            message = (
                f"Environment suite '{suite}' needs the Python module '{module}', which could "
                f'not be imported{reason}. {action}{hint}'
            )
        super().__init__(message, name=module)

    def __reduce__(self):
        # Keeps the error intact when a driver subprocess sends it back to the main process.
        return type(self), (self.suite, self.module, None, str(self))


def suites() -> list[str]:
    """Names of all suites that `load` accepts, sorted."""
    return sorted(SUITES)


def require(suite: str, module: str):
    """Import and return `module`, raising MissingSuiteError (naming `suite`) if that fails."""
    if SUITES.get(suite, Suite('')).mujoco:
        default_mujoco_gl()
    try:
        if SUITES.get(suite, Suite('')).jax:
            import jax

            # These libraries compute with JAX at import; the agent's guard is for its calls.
            with jax.transfer_guard('allow'):
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as e:
        if isinstance(e, MissingSuiteError):
            raise
        raise MissingSuiteError(suite, module, e) from e


def default_mujoco_gl() -> None:
    """Select EGL rendering for MuJoCo unless the user chose a backend (must precede imports)."""
    # The GLFW default needs a display; EGL renders headless on the CPU (llvmpipe) or the GPU.
    os.environ.setdefault('MUJOCO_GL', 'egl')


def load(suite: str):
    """Return the environment constructor of `suite`, checking that its packages import."""
    if suite not in SUITES:
        if suite in UNSUPPORTED:
            raise ValueError(
                f"Environment suite '{suite}' is not supported: {UNSUPPORTED[suite]}. "
                f'Choose one of: {", ".join(suites())}.'
            )
        raise ValueError(
            f"Unknown environment suite '{suite}'. The task must look like <suite>_<name> with "
            f'suite one of: {", ".join(suites())}.'
        )
    entry = SUITES[suite]
    for module in entry.needs:
        require(suite, module)
    module, name = entry.ctor.split(':')
    # Adapters are imported here, by the table's path, so unused suites cost nothing.
    return getattr(importlib.import_module(module), name)


def check_task(task: str) -> None:
    """Raise SetupError on a malformed task, an unknown suite or task, or a missing package."""
    suite, sep, name = task.partition('_')
    if not sep:
        raise SetupError(
            f"Task '{task}' must look like <suite>_<name>, e.g. atari_pong or dmc_walker_walk."
        )
    try:
        if SUITES.get(suite, Suite('')).jax:
            # Importing a JAX-native library computes with JAX, which must wait for the
            # agent's JAX settings; finding its packages is enough here.
            for module in SUITES[suite].needs:
                if importlib.util.find_spec(module) is None:
                    raise MissingSuiteError(suite, module, ImportError(f'No module {module}'))
        else:
            load(suite)
    except (MissingSuiteError, ValueError) as e:
        raise SetupError(str(e)) from e
    allowed = SUITES[suite].tasks
    if allowed and name not in allowed:
        names = ', '.join(f'{suite}_{x}' for x in allowed)
        raise SetupError(f"Unknown task '{task}'. The {suite} suite has: {names}.")
    if SUITES[suite].names:
        module, function = SUITES[suite].names.split(':')
        known = getattr(importlib.import_module(module), function)(name)
        if known is not None and name not in known:
            raise SetupError(unknown_task(suite, name, known))


def unknown_task(suite: str, name: str, known: list) -> str:
    """The message for a task name the suite's library does not know, with the closest ones."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        hint = 'Did you mean ' + ' or '.join(f'{suite}_{x}' for x in close) + '?'
    else:
        shown = ', '.join(f'{suite}_{x}' for x in sorted(known)[:20])
        hint = f'It knows {len(known)} tasks, e.g. {shown}.'
    return f"Unknown task '{suite}_{name}'. {hint}"


def env_seed(seed: int, index: int) -> int:
    """The seed of environment `index` of a run with this seed (suites with `use_seed`)."""
    return hash((int(seed), int(index))) % (2**32 - 1)


def make_env(config: elements.Config, index: int, **overrides):
    """Environment `index` of the run's task, with its suite options and the standard wrappers.

    Reads `task`, `env.<suite>`, `seed` (suites with `use_seed`) and `logdir` (suites with
    `use_logdir`) of the config; `overrides` replace suite options.
    """
    from embodied.core.wrappers import wrap_env

    suite, task = config.task.split('_', 1)
    ctor = load(suite)
    kwargs = dict(config.env.get(suite, {}))
    if kwargs.pop('use_seed', False):
        kwargs['seed'] = env_seed(config.seed, index)
    if kwargs.pop('use_logdir', False):
        kwargs['logdir'] = elements.Path(config.logdir) / f'env{index}'
    kwargs.update(overrides)
    return wrap_env(ctor(task, **kwargs))


def check_jax_task(task: str) -> None:
    """Raise SetupError unless the task's suite has a pure JAX form, naming those that do."""
    suite = task.split('_', 1)[0]
    if not SUITES.get(suite, Suite('')).jax:
        native = ', '.join(name for name, entry in SUITES.items() if entry.jax)
        raise SetupError(
            f"The task '{task}' is not a JAX-native environment, so it cannot be stepped "
            f'on the device. Use one of the suites {native} (e.g. --task gymnax_CartPole-v1), '
            'or train it with --script train.'
        )


def make_jax_env(config: elements.Config):
    """The pure JAX form (a `JaxEnv`) of the run's task, for training on the device.

    Raises SetupError for a suite that has none, naming the suites that do.
    """
    check_jax_task(config.task)
    suite, task = config.task.split('_', 1)
    load(suite)  # the suite's packages, with the error that names the extra
    module, name = SUITES[suite].jax.split(':')
    kwargs = {k: v for k, v in config.env.get(suite, {}).items() if k != 'use_seed'}
    return getattr(importlib.import_module(module), name)(task, **kwargs)
