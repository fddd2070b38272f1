"""Maps suite names to environment constructors, importing each adapter only when asked for.

`load(suite)` returns the constructor for a suite; `make_env` calls it as `ctor(task, **kwargs)`
with the task name after the first underscore of `config.task`. A suite whose third-party package
cannot be imported raises `MissingSuiteError`, which says what to install.

Environments outside this project are named by an import path in the task, so a user needs no
change here: `gym_<module>:<id>` imports the module (which registers the gymnasium id) and makes
the id, `gym_<module>:<Class>` builds an unregistered gymnasium env class (an entry point), and
`custom_<module>:<attr>` calls an `embodied.Env` subclass or factory. Import failures raise
`ImportPathError`, which names the module or attribute and how to make it importable.
"""

import importlib
import os

from embodied.core.base import SetupError

# suite -> (adapter module, constructor name)
SUITES = {
    'dummy': ('embodied.envs.dummy', 'Dummy'),
    'gym': ('embodied.envs.registry', 'make_gym'),
    'custom': ('embodied.envs.registry', 'make_custom'),
    'dm': ('embodied.envs.from_dm', 'FromDM'),
    'crafter': ('embodied.envs.crafter', 'Crafter'),
    'dmc': ('embodied.envs.dmc', 'DMC'),
    'atari': ('embodied.envs.atari', 'Atari'),
    'atari100k': ('embodied.envs.atari', 'Atari'),
    'dmlab': ('embodied.envs.dmlab', 'DMLab'),
    'minecraft': ('embodied.envs.minecraft', 'Minecraft'),
    'loconav': ('embodied.envs.loconav', 'LocoNav'),
    'pinpad': ('embodied.envs.pinpad', 'PinPad'),
    'procgen': ('embodied.envs.procgen', 'ProcGen'),
    'bsuite': ('embodied.envs.bsuite', 'BSuite'),
    'memmaze': ('embodied.envs.memmaze', 'MemoryMaze'),
}

# suite -> Python modules its adapter needs, checked in this order by `load`.
SUITE_MODULES = {
    'dummy': (),
    'custom': (),
    'pinpad': (),
    'gym': ('gymnasium',),
    'dm': ('dm_env',),
    'crafter': ('crafter',),
    'dmc': ('mujoco', 'dm_control'),
    'atari': ('ale_py',),
    'atari100k': ('ale_py',),
    'dmlab': ('deepmind_lab',),
    'minecraft': ('minerl',),
    'loconav': ('mujoco', 'dm_control', 'labmaze'),
    'procgen': ('procgen',),
    'bsuite': ('dm_env', 'bsuite'),
    'memmaze': ('memory_maze', 'gym'),
}

# suite -> name of the `dreamerv3[...]` extra that installs its packages (None: nothing needed,
# or not installable with pip; see SYSTEM_REQUIREMENTS).
SUITE_EXTRAS = {
    'dummy': None,
    'custom': None,
    'pinpad': None,
    'gym': 'gym',
    'dm': 'dm',
    'crafter': 'crafter',
    'dmc': 'dmc',
    'atari': 'atari',
    'atari100k': 'atari',
    'dmlab': None,
    'minecraft': None,
    'loconav': 'dmc',
    'procgen': 'procgen',
    'bsuite': 'bsuite',
    'memmaze': 'memmaze',
}

# Suites whose packages pip cannot install on its own: what the user has to do instead.
SYSTEM_REQUIREMENTS = {
    'dmlab': (
        'DeepMind Lab is not on the Python package index; build the `deepmind_lab` Python '
        'package from source (the deepmind/lab repository, docs/users/build.md) and install '
        'the wheel it produces into this environment.'
    ),
    'minecraft': (
        'MineRL 0.4.4 is needed (`pip install minerl==0.4.4`); its build needs JDK 8 and '
        'internet access to download Gradle and Minecraft, so install it on a machine that '
        'has both.'
    ),
}

# Extra hints for suites with known installation traps.
SUITE_HINTS = {
    'dmc': (
        'dm-control 1.0.50 breaks with mujoco 4 (`flex_vertedge` errors); keep mujoco<4. '
        'Rendering also needs the system libraries libegl1 libegl-mesa0 libgl1-mesa-dri '
        '(MUJOCO_GL=egl) or libosmesa6 (MUJOCO_GL=osmesa).'
    ),
    'loconav': 'Keep mujoco<4 next to dm-control 1.0.50.',
    'procgen': (
        'procgen-mirror requires numpy<2, which conflicts with recent JAX; use a separate '
        'environment or install it with --no-deps next to numpy 2 (gym3, gym==0.26.2 '
        'installed by hand).'
    ),
    'memmaze': 'memory-maze imports the old `gym` package (gym==0.26.2) and needs mujoco<4.',
}

# Suites for which this reimplementation has no adapter, with the reason.
UNSUPPORTED = {
    'langroom': 'the reference lists it but ships no module for it',
}

# Suites that accept only these task names; the others build whatever their task names.
TASKS = {'dummy': ('disc',)}


def check_name(suite: str, task: str) -> None:
    """Raise ValueError when `suite` has a fixed list of tasks and `task` is not on it."""
    if suite in TASKS and task not in TASKS[suite]:
        names = ', '.join(f'{suite}_{name}' for name in TASKS[suite])
        raise ValueError(f"Unknown task '{suite}_{task}'. The {suite} suite has: {names}.")


class MissingSuiteError(ImportError):
    """A suite's third-party package is not importable; the message says what to install."""

    def __init__(self, suite, module, cause=None, message=None):
        self.suite = suite
        self.module = module
        if message is None:
            reason = f' ({type(cause).__name__}: {cause})' if cause is not None else ''
            if suite in SYSTEM_REQUIREMENTS:
                action = SYSTEM_REQUIREMENTS[suite]
            elif SUITE_EXTRAS.get(suite):
                action = f"Install it with: pip install 'dreamerv3[{SUITE_EXTRAS[suite]}]'"
            else:
                action = f'Install the package that provides `{module}`.'
            hint = f'\nNote: {SUITE_HINTS[suite]}' if suite in SUITE_HINTS else ''
            message = (
                f"Environment suite '{suite}' needs the Python module '{module}', which could "
                f'not be imported{reason}. {action}{hint}'
            )
        super().__init__(message, name=module)

    def __reduce__(self):
        # Keeps the error intact when a driver subprocess sends it back to the main process.
        return type(self), (self.suite, self.module, None, str(self))


def suites():
    """Names of all suites that `load` accepts, sorted."""
    return sorted(SUITES)


def require(suite, module):
    """Import and return `module`, raising MissingSuiteError (naming `suite`) if that fails."""
    if suite in ('dmc', 'loconav', 'memmaze'):
        default_mujoco_gl()
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if isinstance(e, MissingSuiteError):
            raise
        raise MissingSuiteError(suite, module, e) from e


def default_mujoco_gl():
    """Select EGL rendering for MuJoCo unless the user chose a backend (must precede imports)."""
    # The GLFW default needs a display; EGL renders headless on the CPU (llvmpipe) or the GPU.
    os.environ.setdefault('MUJOCO_GL', 'egl')


def load(suite):
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
    for module in SUITE_MODULES[suite]:
        require(suite, module)
    module, name = SUITES[suite]
    return getattr(importlib.import_module(module), name)


class ImportPathError(SetupError):
    """A task's `<module>:<attribute>` path cannot be imported; the message says how to fix it."""


def split_path(suite: str, path: str) -> tuple:
    """Split `<module>:<attribute>` of a `<suite>_` task, raising ImportPathError if malformed."""
    module, sep, attr = path.partition(':')
    if not sep or not module or not attr:
        raise ImportPathError(
            f"Task '{suite}_{path}' must name an import path <module>:<attribute>, e.g. "
            f'{suite}_mypkg.envs:MyEnv.'
        )
    return module, attr


def import_path_module(suite: str, path: str):
    """Import the module of a `<module>:<attribute>` task path with an actionable error."""
    name, _ = split_path(suite, path)
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if isinstance(e, MissingSuiteError):
            raise
        raise ImportPathError(
            f"Task '{suite}_{path}': the module '{name}' could not be imported "
            f'({type(e).__name__}: {e}). Install its package, or add the folder that holds it '
            f'to PYTHONPATH (PYTHONPATH=/path/to/folder python -m dreamerv3.main ...).'
        ) from e


def make_gym(task: str, obs_key='image', act_key='action', seed=None, **kwargs):
    """The `gym` suite: a gymnasium id, `<module>:<id>` or an entry point `<module>:<Class>`."""
    from .from_gym import FromGym

    adapter = dict(obs_key=obs_key, act_key=act_key, seed=seed)
    if ':' not in task:
        return FromGym(task, **adapter, **kwargs)
    gym = require('gym', 'gymnasium')
    module = import_path_module('gym', task)
    _, name = split_path('gym', task)
    if name in gym.registry:
        # Importing the module registered the id.
        return FromGym(name, **adapter, **kwargs)
    entry = getattr(module, name, None)
    if callable(entry):
        return FromGym(entry(**kwargs), **adapter)
    ids = sorted(
        key
        for key, spec in gym.registry.items()
        if _entry_module(spec.entry_point) == module.__name__
    )
    known = f' It registers: {", ".join(ids)}.' if ids else ''
    raise ImportPathError(
        f"Task 'gym_{task}': the module '{module.__name__}' neither registers the gymnasium id "
        f"'{name}' nor defines an environment class or factory of that name.{known}"
    )


def make_custom(task: str, **kwargs):
    """The `custom` suite: `<module>:<attr>` names an `embodied.Env` subclass or factory."""
    module = import_path_module('custom', task)
    _, name = split_path('custom', task)
    entry = getattr(module, name, None)
    if not callable(entry):
        found = sorted(
            key
            for key, value in vars(module).items()
            if isinstance(value, type) and {'obs_space', 'act_space', 'step'} <= set(dir(value))
        )
        known = f' Environment classes there: {", ".join(found)}.' if found else ''
        raise ImportPathError(
            f"Task 'custom_{task}': the module '{module.__name__}' has no class or factory "
            f"'{name}'.{known}"
        )
    env = entry(**kwargs)
    if not all(hasattr(env, attr) for attr in ('obs_space', 'act_space', 'step')):
        hint = ' For a gymnasium environment use --task gym_<module>:<id>.'
        raise ImportPathError(
            f"Task 'custom_{task}': {name}() returned a {type(env).__name__}, which is not an "
            f'embodied.Env (it needs obs_space, act_space and step).{hint}'
        )
    return env


def _entry_module(entry_point):
    """The module name of a gymnasium entry point (a 'module:attr' string or a callable)."""
    if isinstance(entry_point, str):
        return entry_point.split(':', 1)[0]
    return getattr(entry_point, '__module__', None)
