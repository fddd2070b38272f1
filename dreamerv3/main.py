"""Command line: parse the config, build the factories and dispatch to a run script."""

import functools
import importlib
import sys

import elements

from . import config as configlib

# Top-level keys that both the run scripts and the agent receive next to their own section.
SHARED_KEYS = (
    'logdir',
    'replica',
    'replicas',
    'batch_size',
    'batch_length',
    'report_length',
    'replay_context',
)

BANNER = r"""
  ___                        __   ______
 |   \ _ _ ___ __ _ _ __  ___\ \ / /__ /
 | |) | '_/ -_) _` | '  \/ -_)\ V / |_ \
 |___/|_| \___\__,_|_|_|_\___| \_/ |___/
"""


def main(argv=None):
    """Entry point of `python -m dreamerv3.main` and the `dreamerv3` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        config, help_text = configlib.parse(argv)
    except configlib.ConfigError as e:
        fail(f'{e}\nRun with --help to list the presets and keys.')
    if help_text:
        print(help_text)
        return
    print(BANNER)
    from embodied import SetupError
    from embodied.run.checkpoints import CheckpointError

    try:
        run(config)
    except (configlib.ConfigError, CheckpointError, SetupError) as e:
        fail(str(e))


def fail(message):
    """Print a command-line error without a traceback and exit with status 2."""
    print(f'dreamerv3: error: {message}', file=sys.stderr)
    sys.exit(2)


def run(config):
    """Write config.yaml, set up portal and start the script the config names."""
    import portal

    from embodied.run.checkpoints import CheckpointError

    if config.script != 'parallel_replay':
        check_task(config.task)
    logdir = elements.Path(config.logdir)
    previous = None
    if not config.script.endswith(('_env', '_replay')):
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

    bind = functools.partial
    fns = dict(
        make_agent=bind(make_agent, config),
        make_replay=bind(make_replay, config),
        make_env=bind(make_env, config),
        make_stream=bind(make_stream, config),
        make_logger=bind(make_logger, config),
    )
    args = make_args(config)
    script = config.script
    name = 'parallel' if script.startswith('parallel') else script
    try:
        module = importlib.import_module(f'embodied.run.{name}')
    except ModuleNotFoundError as e:
        if e.name != f'embodied.run.{name}':
            raise
        raise configlib.ConfigError(f"Script '{script}' is not available in this version.") from e
    if script == 'parallel_env':
        is_eval = config.replica >= config.run.envs
        return module.parallel_env(fns['make_env'], config.replica, args, is_eval)
    if script == 'parallel_envs':
        return module.parallel_envs(fns['make_env'], args)
    if script == 'parallel_replay':
        return module.parallel_replay(fns['make_replay'], fns['make_stream'], args)
    try:
        return getattr(module, script)(**fns, args=args)
    except CheckpointError:
        if previous is not None:
            # The logdir belongs to another config: keep its config.yaml as it was.
            (logdir / 'config.yaml').write_text(previous)
        raise


def check_task(task):
    """Fail early, with one line, on an unknown suite or a suite whose package is missing."""
    from embodied.envs import registry

    if '_' not in task:
        raise configlib.ConfigError(
            f"Task '{task}' must look like <suite>_<name>, e.g. atari_pong or dmc_walker_walk."
        )
    try:
        registry.load(task.split('_', 1)[0])
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


def make_args(config):
    """The run-script arguments: every run.* key plus the batch and replica settings."""
    keys = SHARED_KEYS + ('consec_train', 'consec_report')
    return elements.Config(
        **config.run, **{k: config[k] for k in keys}, video_fps=config.logger.fps
    )


def make_agent(config):
    """The agent for the spaces of environment 0 (random or DreamerV3)."""
    import embodied

    env = make_env(config, 0)
    obs_space = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
    act_space = {k: v for k, v in env.act_space.items() if k != 'reset'}
    env.close()
    if config.random_agent:
        return embodied.RandomAgent(obs_space, act_space)
    from .agent import Agent

    return Agent(
        obs_space,
        act_space,
        elements.Config(
            **config.agent, **{k: config[k] for k in SHARED_KEYS}, seed=config.seed, jax=config.jax
        ),
    )


def make_logger(config):
    """Logger with the terminal output plus the outputs named by logger.outputs."""
    from embodied.run import outputs

    step = elements.Counter()
    suite = config.task.split('_', 1)[0]
    multiplier = config.env.get(suite, {}).get('repeat', 1)
    return elements.Logger(
        step,
        outputs.make_outputs(
            config.logdir,
            config.logger.outputs,
            config.logger.filter,
            config.logger.fps,
        ),
        multiplier,
    )


def make_replay(config, folder, mode='train'):
    """The replay buffer for one mode, stored in logdir/<folder> (spec 7.1)."""
    import embodied

    batlen = config.batch_length if mode == 'train' else config.report_length
    consec = config.consec_train if mode == 'train' else config.consec_report
    capacity = config.replay.size if mode == 'train' else config.replay.size / 10
    length = consec * batlen + config.replay_context
    if config.batch_size * length > capacity:
        raise configlib.ConfigError(
            f'replay.size {capacity:g} ({mode}) cannot hold one batch of '
            f'batch_size {config.batch_size} x {length} steps; raise replay.size.'
        )
    directory = elements.Path(config.logdir) / folder
    if config.replicas > 1:
        directory /= f'{config.replica:05}'
    kwargs = dict(
        length=length,
        capacity=int(capacity),
        directory=directory,
        online=config.replay.online,
        chunksize=config.replay.chunksize,
    )
    if mode == 'train' and config.replay.fracs.uniform < 1:
        if config.jax.compute_dtype not in ('bfloat16', 'float32'):
            raise configlib.ConfigError(
                'Prioritized and recency replay need jax.compute_dtype bfloat16 or '
                f'float32, not {config.jax.compute_dtype}.'
            )
        import numpy as np

        recency = 1.0 / np.arange(1, int(capacity) + 1) ** config.replay.recexp
        prio = dict(config.replay.prio)
        prio['initial'] = float(prio['initial'])
        kwargs['selector'] = embodied.selectors.Mixture(
            dict(
                uniform=embodied.selectors.Uniform(),
                priority=embodied.selectors.Prioritized(**prio),
                recency=embodied.selectors.Recency(recency),
            ),
            dict(config.replay.fracs),
        )
    return embodied.replay.Replay(**kwargs)


def make_env(config, index, **overrides):
    """Environment `index` of the configured task, with the standard wrappers."""
    import embodied
    from embodied.envs import registry

    suite, task = config.task.split('_', 1)
    ctor = registry.load(suite)
    kwargs = dict(config.env.get(suite, {}))
    if kwargs.pop('use_seed', False):
        kwargs['seed'] = hash((config.seed, index)) % (2**32 - 1)
    if kwargs.pop('use_logdir', False):
        kwargs['logdir'] = elements.Path(config.logdir) / f'env{index}'
    kwargs.update(overrides)
    return embodied.wrap_env(ctor(task, **kwargs))


def make_stream(config, replay, mode):
    """Batches of consecutive chunks sampled from a replay (spec 7.10)."""
    import embodied

    fn = functools.partial(replay.sample, config.batch_size, mode)
    stream = embodied.streams.Stateless(fn)
    return embodied.streams.Consec(
        stream,
        length=config.batch_length if mode == 'train' else config.report_length,
        consec=config.consec_train if mode == 'train' else config.consec_report,
        prefix=config.replay_context,
        strict=(mode == 'train'),
        contiguous=True,
    )


if __name__ == '__main__':
    main()
