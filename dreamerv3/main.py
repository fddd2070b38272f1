"""Command line: parse the config, check it, then run the script it names.

`python -m dreamerv3.main` (and the `dreamerv3` console script) go through `main`, top to bottom:
parse the presets and flags into one config, look the script up in `SCRIPTS`, check what can be
checked without side effects, lock the logdir and write its `config.yaml`, then call
`script.run(config, make_agent)`. The config is handed on whole: scripts read `config.run`,
the replay `config.replay`, the agent `config.agent` and `config.jax`.
"""

import dataclasses
import functools
import os
import sys
from collections.abc import Callable

import colored_traceback
import elements

from embodied.core.base import SetupError
from embodied.envs import registry
from embodied.run import (
    checkpoint_fit,
    checkpoints,
    diskfull,
    eval_only,
    interrupt,
    lifetime,
    lock,
    parallel,
    train,
    train_device,
    train_eval,
    train_offline,
)

from . import config as configlib
from . import replay_layout

BANNER = r"""
  ___                        __   ______
 |   \ _ _ ___ __ _ _ __  ___\ \ / /__ /
 | |) | '_/ -_) _` | '  \/ -_)\ V / |_ \
 |___/|_| \___\__,_|_|_|_\___| \_/ |___/
"""


@dataclasses.dataclass(frozen=True)
class Script:
    """One `--script` choice: `run(config, make_agent)` and what main checks before it."""

    run: Callable
    summary: str
    # Locks the logdir and writes config.yaml there (roles started on other machines do not).
    owns_logdir: bool = True
    # Steps environments of the configured task, so the task is checked first.
    needs_task: bool = True
    # Builds the agent, so the JAX platform is checked first.
    builds_agent: bool = True
    # Raises on settings that cannot work, before anything is written.
    check: Callable | None = None


SCRIPTS = {
    'train': Script(
        train.train,
        'act in run.envs environments and train from replay in one process (the default)',
    ),
    'train_device': Script(
        train_device.train_device,
        'train on a JAX-native task (gymnax, craftax, xminigrid) with environments, replay and '
        'updates in one compiled program on the device, run.seeds agents at once',
        check=train_device.check,
    ),
    'train_eval': Script(
        train_eval.train_eval,
        'like train, plus run.eval_envs evaluation environments on the report clock',
    ),
    'train_offline': Script(
        train_offline.train_offline,
        'train for run.offline_updates updates from the replay folder run.from_replay, '
        'without stepping environments',
        check=train_offline.check,
    ),
    'eval_only': Script(
        eval_only.eval_only,
        'run the policy of run.from_checkpoint and record episodes and videos',
        check=eval_only.check,
    ),
    'parallel': Script(
        parallel.parallel,
        'actor, learner, replay, logger and environments in separate processes',
    ),
    'parallel_env': Script(
        parallel.parallel_env,
        'one env role of a parallel run (env id = replica)',
        owns_logdir=False,
        builds_agent=False,
    ),
    'parallel_envs': Script(
        parallel.parallel_envs,
        'the env roles of a parallel run on this machine',
        owns_logdir=False,
        builds_agent=False,
    ),
    'parallel_replay': Script(
        parallel.parallel_replay,
        'the replay role of a parallel run',
        owns_logdir=False,
        needs_task=False,
        builds_agent=False,
    ),
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m dreamerv3.main` and the `dreamerv3` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # Until the run loop begins there is nothing to save: a signal ends the process at once.
    with interrupt.Startup():
        _main(argv)


def _main(argv: list[str]) -> None:
    # Crashes print a coloured traceback when stderr is a terminal (plain text otherwise).
    colored_traceback.add_hook()
    summaries = {name: script.summary for name, script in SCRIPTS.items()}
    try:
        config, help_text = configlib.parse(argv, summaries)
    except configlib.ConfigError as e:
        # An error about --help itself already names the closest keys.
        hint = (
            '' if str(e).startswith('--help') else '\nRun with --help to list the presets and keys.'
        )
        fail(f'{e}{hint}')
    if help_text:
        print(help_text)
        return
    script = SCRIPTS[config.script]
    print(BANNER)
    try:
        # Settings that cannot work fail here, before the logdir or its config.yaml exist.
        check(config, script)
        if not script.owns_logdir:
            start_portal(config)
            script.run(config, make_agent)
            return
        found = listing(config.logdir)
        with lock.acquire(config.logdir):
            previous = None
            try:
                previous = write_config(config)
                start_portal(config)
                script.run(config, make_agent)
            except (configlib.ConfigError, checkpoints.CheckpointError, SetupError) as e:
                if interrupt.starting():
                    # Nothing was trained: leave the logdir as this start found it.
                    undo_start(config.logdir, found, previous)
                if isinstance(e, checkpoint_fit.DoesNotFit) and previous is not None:
                    raise e.naming(config_changes(previous, config)) from e
                raise
    except (configlib.ConfigError, checkpoints.CheckpointError, SetupError) as e:
        fail(str(e))
    except OSError as e:
        # Writers other than the run's own raise a bare OSError when the disk fills up.
        if not diskfull.is_full(e):
            raise
        fail(str(diskfull.DiskFull(e.filename or config.logdir, e)))


def make_agent(config: elements.Config):
    """The agent for the spaces of environment 0: DreamerV3, or random with `random_agent`."""
    import embodied

    if not config.random_agent:
        from embodied.jax.setup import configure

        # JAX-native environments compute with JAX, which must start with the agent's settings.
        configure(config.jax)
    env = registry.make_env(config, 0)
    obs_space = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
    act_space = {k: v for k, v in env.act_space.items() if k != 'reset'}
    env.close()
    if config.random_agent:
        return embodied.RandomAgent(obs_space, act_space)
    from .agent import Agent

    return Agent(obs_space, act_space, config)


def check(config: elements.Config, script: Script) -> None:
    """Check the task, the JAX platform and the script's own settings, without side effects."""
    if script.needs_task:
        registry.check_task(config.task)
    if script.builds_agent and not config.random_agent:
        check_cuda(config.jax.platform)
        check_replays(config)
    if script.check:
        script.check(config)


def check_cuda(platform: str) -> None:
    """Fail on a CUDA platform without the CUDA build of JAX or a driver, without starting JAX.

    Starting a backend here would reserve GPU memory in the parent of the `parallel` roles.
    """
    import ctypes
    import importlib.util

    if platform not in ('cuda', 'gpu'):
        return
    plugins = ('jax_cuda12_plugin', 'jax_cuda13_plugin')
    if not any(importlib.util.find_spec(name) for name in plugins):
        reason = 'the CUDA build of JAX is not installed'
    else:
        try:
            ctypes.CDLL('libcuda.so.1')
            return
        except OSError:
            reason = 'no NVIDIA driver (libcuda.so.1) was found'
    raise SetupError(
        f"JAX platform '{platform}' is not available on this machine ({reason}). Either "
        "install the CUDA build with pip install -e '.[cuda12]' on a machine with an NVIDIA "
        'GPU, or run on the CPU with --jax.platform cpu.'
    )


def check_replays(config: elements.Config) -> None:
    """Stop before compiling when a replay the run trains on holds chunks of an earlier layout."""
    logdir = elements.Path(config.logdir)
    folders = [logdir / name for name in ('replay', 'eval_replay', 'replay_eval')]
    if config.replicas > 1:
        folders = [folder / f'{config.replica:05}' for folder in folders]
    if config.run.from_replay:
        folders.append(elements.Path(config.run.from_replay))
    for folder in folders:
        replay_layout.check_folder(folder, config.jax.compute_dtype)


def write_config(config: elements.Config) -> str | None:
    """Write `<logdir>/config.yaml`, saying what changed; returns the earlier one's text."""
    logdir = elements.Path(config.logdir)
    logdir.mkdir()
    path = logdir / 'config.yaml'
    previous = None
    if path.exists():
        try:
            previous = path.read_text()
        except (UnicodeDecodeError, OSError) as e:
            set_aside(path, e)
        else:
            report_changes(config, path)
    # Written beside it and renamed, so that a kill or a full disk never leaves half a file.
    temp = logdir / 'config.tmp.yaml'
    try:
        with diskfull.writing(path):
            config.save(temp)
            os.replace(str(temp), str(path))
    finally:
        if temp.exists():
            temp.remove()
    print('Logdir:', logdir)
    return previous


def listing(logdir) -> set | None:
    """The names at the top of a local logdir; None when it does not exist (or is remote)."""
    if '://' in str(logdir) or not os.path.isdir(str(logdir)):
        return None
    return set(os.listdir(str(logdir)))


def undo_start(logdir, found: set | None, previous: str | None) -> None:
    """Take back what a failed start added to the logdir: its config.yaml, lock, empty folders.

    `found` is the logdir's listing before the start (None: the start created it) and
    `previous` the text of the config.yaml it replaced. Anything holding a file stays.
    """
    root = str(logdir)
    if '://' in root or not os.path.isdir(root):
        return
    try:
        for name in set(os.listdir(root)) - (found or set()):
            path = os.path.join(root, name)
            if os.path.isdir(path):
                walk = list(os.walk(path, topdown=False))
                if not any(files for _, _, files in walk):
                    for folder, _, _ in walk:
                        os.rmdir(folder)
            elif name == 'lock' or (name == 'config.yaml' and previous is None):
                os.remove(path)
        if previous is not None:
            temp = os.path.join(root, 'config.tmp.yaml')
            with open(temp, 'w') as f:
                f.write(previous)
            os.replace(temp, os.path.join(root, 'config.yaml'))
        if found is None and not os.listdir(root):
            os.rmdir(root)
    except OSError:
        pass  # What is left is harmless; the error message matters more.


def set_aside(path: elements.Path, error: Exception) -> None:
    """Move an unreadable config.yaml out of the way, keeping it for a look, and say so."""
    aside = path.parent / f'config.yaml.unreadable-{elements.timestamp()}'
    os.replace(str(path), str(aside))
    print(f'The earlier {path} could not be read ({type(error).__name__}); moved it to {aside}.')


def config_changes(previous: str, config: elements.Config) -> list:
    """(key, before, after) of each key whose value differs from the config.yaml text `previous`."""
    from ruamel.yaml import YAML

    try:
        old = elements.Config(YAML(typ='safe').load(previous))
    except Exception:
        return []  # Said when it was read: write_config reports an unreadable config.yaml.
    return configlib.config_diff(old, config)


def report_changes(config: elements.Config, path: elements.Path) -> None:
    """Print how the config differs from the one an earlier run left in the logdir."""
    try:
        old = elements.Config.load(path)
    except Exception as e:
        print(f'Could not read the earlier {path}: {e}')
        return
    diffs = configlib.config_diff(old, config)
    if diffs:
        print(f'Resuming {path.parent} with a changed config:')
        for key, before, after in diffs:
            print(f'  {key}: {before!r} -> {after!r}')


def start_portal(config: elements.Config) -> None:
    """Set up portal, which starts the env workers and the parallel roles."""
    import portal

    errfile = elements.Path(config.logdir) / 'error' if config.errfile else None
    if errfile and errfile.exists():
        # portal stops every process at once while an error file of an earlier run exists.
        errfile.remove()
    portal.setup(
        errfile=errfile,
        ipv6=config.ipv6,
        initfns=[functools.partial(init_timer, config.logger.timer)],
    )
    # Every process portal starts from here on ends once its parent has, even after a SIGKILL.
    portal.initfn(lifetime.end_with_parent, call_now=False)


def init_timer(enabled: bool) -> None:
    """Enable or disable the global section timer (runs in every spawned process too)."""
    elements.timer.global_timer.enabled = enabled


def fail(message: str) -> None:
    """Print a command-line error without a traceback and exit with status 2."""
    print(f'dreamerv3: error: {message}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
    main()
