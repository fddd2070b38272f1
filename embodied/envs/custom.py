"""Environments outside this project, named by import path: `custom_<module>:<attr>`.

`custom_mypkg.envs:MyEnv` imports `mypkg.envs` and calls `MyEnv(**env.custom options)`, which
must return an `embodied.Env`. The helpers that import a task's `<module>:<attribute>` path with
errors a user can act on are shared with the `gym` suite (`gym_<module>:<id>`).
"""

import importlib

from embodied.core.base import SetupError

from .registry import MissingSuiteError


class ImportPathError(SetupError):
    """A task's `<module>:<attribute>` path cannot be imported; the message says how to fix it."""


def split_path(suite: str, path: str) -> tuple[str, str]:
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
