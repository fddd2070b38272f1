"""The table of run scripts: what `--script` accepts, what `--help` lists and how each is called.

A script is a function `<name>` in the module `embodied.run.<module>`. It takes `args` (the
run settings) and, by parameter name, any of the factories `make_agent`, `make_replay`,
`make_env`, `make_stream` and `make_logger`; `extra` derives further keyword arguments from
`args`. A module may also define `check(args)`, which raises on settings that cannot work
before anything is written. Adding a script means writing its module and adding one entry to
`TABLE`.
"""

import dataclasses
import importlib
import inspect
from collections.abc import Callable

FACTORIES = ('make_agent', 'make_replay', 'make_env', 'make_stream', 'make_logger')


@dataclasses.dataclass(frozen=True)
class Script:
    """One `--script` choice."""

    name: str
    module: str
    summary: str
    # Writes config.yaml into the logdir (roles started on their own machine do not).
    owns_logdir: bool = True
    # Steps environments of the configured task, so the task is checked before starting.
    needs_task: bool = True
    # Builds the agent, so the JAX platform is checked before starting.
    builds_agent: bool = True
    # Shows a progress bar (terminal) or line (log file); the others print the metrics block.
    progress: bool = False
    # What the step counter counts: 'env steps' or 'updates'.
    unit: str = 'env steps'
    extra: Callable | None = None


def _env_role(args) -> dict:
    # A cluster replica runs the env whose id is its replica index; ids past run.envs evaluate.
    return dict(env_id=args.replica, is_eval=args.replica >= args.envs)


TABLE = {
    script.name: script
    for script in (
        Script(
            'train',
            'train',
            'act in run.envs environments and train from replay in one process (the default)',
            progress=True,
        ),
        Script(
            'train_eval',
            'train_eval',
            'like train, plus run.eval_envs evaluation environments on the report clock',
            progress=True,
        ),
        Script(
            'train_offline',
            'train_offline',
            'train for run.offline_updates updates from the replay folder run.from_replay, '
            'without stepping environments',
            progress=True,
            unit='updates',
        ),
        Script(
            'eval_only',
            'eval_only',
            'run the policy of run.from_checkpoint and record episodes and videos',
            progress=True,
        ),
        Script(
            'parallel',
            'parallel',
            'actor, learner, replay, logger and environments in separate processes',
        ),
        Script(
            'parallel_env',
            'parallel',
            'one env role of a parallel run (env id = replica)',
            owns_logdir=False,
            builds_agent=False,
            extra=_env_role,
        ),
        Script(
            'parallel_envs',
            'parallel',
            'the env roles of a parallel run on this machine',
            owns_logdir=False,
            builds_agent=False,
        ),
        Script(
            'parallel_replay',
            'parallel',
            'the replay role of a parallel run',
            owns_logdir=False,
            needs_task=False,
            builds_agent=False,
        ),
    )
}


def get(name: str) -> Script:
    """The table entry of a script (KeyError for an unknown name)."""
    return TABLE[name]


def module(script: Script):
    """The module that holds the script."""
    return importlib.import_module(f'{__package__}.{script.module}')


def function(script: Script) -> Callable:
    """The script's function, imported from its module."""
    return getattr(module(script), script.name)


def check(script: Script, args) -> None:
    """Run the module's `check(args)`, if it has one, before the run writes anything."""
    fn = getattr(module(script), 'check', None)
    if fn is not None:
        fn(args)


def call(script: Script, factories: dict, args):
    """Run a script with the factories its function names, its extra arguments and `args`."""
    fn = function(script)
    params = inspect.signature(fn).parameters
    kwargs = {name: factories[name] for name in FACTORIES if name in params}
    if script.extra:
        kwargs.update(script.extra(args))
    return fn(**kwargs, args=args)


def help_lines() -> list[str]:
    """One line per script for `--help`."""
    width = max(len(name) for name in TABLE)
    return [f'  {name.ljust(width)}  {script.summary}' for name, script in TABLE.items()]
