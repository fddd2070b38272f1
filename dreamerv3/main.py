"""Command line: parse the config, build the factories and dispatch to a run script."""

import contextlib
import functools
import sys

import colored_traceback
import elements

from . import config as configlib
from .factories import (  # noqa: F401 (callers import them from main, too)
    SHARED_KEYS,
    make_agent,
    make_args,
    make_env,
    make_factories,
    make_logger,
    make_replay,
    make_stream,
)

BANNER = r"""
  ___                        __   ______
 |   \ _ _ ___ __ _ _ __  ___\ \ / /__ /
 | |) | '_/ -_) _` | '  \/ -_)\ V / |_ \
 |___/|_| \___\__,_|_|_|_\___| \_/ |___/
"""


def main(argv=None):
    """Entry point of `python -m dreamerv3.main` and the `dreamerv3` console script."""
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    # Crashes print a coloured traceback when stderr is a terminal (plain text otherwise).
    colored_traceback.add_hook()
    try:
        config, help_text = configlib.parse(argv)
    except configlib.ConfigError as e:
        fail(f'{e}\nRun with --help to list the presets and keys.')
    if help_text:
        print(help_text)
        return
    if command_line:
        # Only a process started from the command line is replaced; callers of main(argv) keep
        # theirs.
        relaunch_for_hugepages(config)
    print(BANNER)
    from embodied import SetupError
    from embodied.run.checkpoints import CheckpointError

    try:
        # Settings that cannot work fail here, before the logdir or its config.yaml exist.
        check_setup(config)
        with lock_logdir(config):
            run(config)
    except (configlib.ConfigError, CheckpointError, SetupError) as e:
        fail(str(e))


def relaunch_for_hugepages(config):
    """Start this command again with huge pages for XLA:CPU's buffers (`jax.hugepages`)."""
    if config.jax.hugepages and config.jax.platform == 'cpu':
        from embodied.core import hugepages

        hugepages.relaunch()


def fail(message):
    """Print a command-line error without a traceback and exit with status 2."""
    print(f'dreamerv3: error: {message}', file=sys.stderr)
    sys.exit(2)


def run(config):
    """Write config.yaml, set up portal and start the script the config names."""
    import portal

    from embodied.run import scripts
    from embodied.run.checkpoints import CheckpointError, SaveFailed

    logdir = elements.Path(config.logdir)
    previous = None
    if writes_logdir(config.script):
        logdir.mkdir()
        if (logdir / 'config.yaml').exists():
            previous = (logdir / 'config.yaml').read_text()
            report_changes(config, logdir / 'config.yaml')
        config.save(logdir / 'config.yaml')
        print('Logdir:', logdir)
    errfile = logdir / 'error' if config.errfile else None
    if errfile and errfile.exists():
        # portal stops every process at once while an error file of an earlier run exists.
        errfile.remove()
    portal.setup(
        errfile=errfile,
        ipv6=config.ipv6,
        initfns=[functools.partial(init_timer, config.logger.timer)],
    )

    fns = make_factories(config)
    args = make_args(config)
    try:
        return scripts.call(scripts.get(config.script), fns, args)
    except SaveFailed:
        raise
    except CheckpointError:
        if previous is not None:
            # The logdir belongs to another config: keep its config.yaml as it was.
            (logdir / 'config.yaml').write_text(previous)
        raise


def writes_logdir(script):
    """Whether a script writes config, metrics and checkpoints to the logdir (and locks it)."""
    from embodied.run import scripts

    return scripts.get(script).owns_logdir


def lock_logdir(config):
    """The exclusive lock of the logdir for scripts that write it; a second run exits 2."""
    from embodied.run import lock

    return lock.acquire(config.logdir) if writes_logdir(config.script) else contextlib.nullcontext()


def check_setup(config):
    """Check the task, the JAX platform and the checkpoint to evaluate, without side effects."""
    from embodied.run import scripts

    script = scripts.get(config.script)
    if script.needs_task:
        check_task(config.task)
    if script.builds_agent and not config.random_agent:
        check_platform(config.jax.platform)
    scripts.check(script, make_args(config))


def check_platform(platform):
    """Fail on a CUDA platform without the CUDA build of JAX or a driver, without starting JAX.

    Starting a backend here would reserve GPU memory in the parent of the `parallel` roles.
    """
    import ctypes
    import importlib.util

    from embodied import SetupError

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


def check_task(task):
    """Fail early, with one line, on an unknown suite or a suite whose package is missing."""
    from embodied.envs import registry

    if '_' not in task:
        raise configlib.ConfigError(
            f"Task '{task}' must look like <suite>_<name>, e.g. atari_pong or dmc_walker_walk."
        )
    try:
        registry.load(task.split('_', 1)[0])
        registry.check_name(*task.split('_', 1))
    except (registry.MissingSuiteError, ValueError) as e:
        raise configlib.ConfigError(str(e)) from e


def init_timer(enabled):
    """Enable or disable the global section timer (runs in every spawned process too)."""
    elements.timer.global_timer.enabled = enabled


def report_changes(config, path):
    """Print how the config differs from the one an earlier run left in the logdir."""
    if not path.exists():
        return
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


if __name__ == '__main__':
    main()
