"""The factories a run script receives, bound to one config: agent, replay, env, stream, logger.

`python -m dreamerv3.main`, the tests and the benchmark scripts build runs from
`make_factories(config)`, so they construct the same objects the same way.
"""

import functools

import elements

from .config import ConfigError

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


def make_factories(config: elements.Config) -> dict:
    """The factories every run script takes (`make_agent`, `make_replay`, ...), bound to config."""
    bind = functools.partial
    return dict(
        make_agent=bind(make_agent, config),
        make_replay=bind(make_replay, config),
        make_env=bind(make_env, config),
        make_stream=bind(make_stream, config),
        make_logger=bind(make_logger, config),
    )


def make_args(config: elements.Config) -> elements.Config:
    """The run-script arguments: every run.* key plus the batch and replica settings."""
    keys = SHARED_KEYS + ('consec_train', 'consec_report')
    return elements.Config(
        **config.run, **{k: config[k] for k in keys}, video_fps=config.logger.fps
    )


def make_agent(config: elements.Config):
    """The agent for the spaces of environment 0 (random or DreamerV3)."""
    import embodied

    env = make_env(config, 0)
    obs_space = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
    act_space = {k: v for k, v in env.act_space.items() if k != 'reset'}
    env.close()
    if config.random_agent:
        return embodied.RandomAgent(obs_space, act_space)
    from .agent import Agent

    return Agent(obs_space, act_space, agent_config(config))


def agent_config(config: elements.Config) -> elements.Config:
    """The agent's config: its own section plus the shared top-level keys, seed and jax."""
    return elements.Config(
        **config.agent, **{k: config[k] for k in SHARED_KEYS}, seed=config.seed, jax=config.jax
    )


def make_logger(config: elements.Config) -> elements.Logger:
    """Logger with the outputs named by logger.outputs, plus the terminal metrics block.

    Scripts with a progress display print the block only with `logger.terminal metrics`; the
    others (the parallel roles) always print it.
    """
    from embodied.run import outputs, scripts

    script = scripts.get(config.script)
    step = elements.Counter()
    suite = config.task.split('_', 1)[0]
    # Steps count env steps (agent steps times the action repeat), except in scripts that
    # count updates.
    multiplier = config.env.get(suite, {}).get('repeat', 1) if script.unit == 'env steps' else 1
    items = outputs.make_outputs(
        config.logdir,
        config.logger.outputs,
        config.logger.filter,
        config.logger.fps,
    )
    if script.progress and config.logger.terminal != 'metrics':
        items = [item for item in items if not isinstance(item, elements.logger.TerminalOutput)]
    if not items:
        # elements.Logger needs an output; writing to no file at all is valid here.
        items = [lambda summaries: None]
    return elements.Logger(step, items, multiplier)


def make_replay(config: elements.Config, folder: str | None, mode: str = 'train'):
    """The replay buffer for one mode, stored in logdir/<folder> (in memory only for None)."""
    import embodied

    batlen = config.batch_length if mode == 'train' else config.report_length
    consec = config.consec_train if mode == 'train' else config.consec_report
    capacity = config.replay.size if mode == 'train' else config.replay.size / 10
    length = consec * batlen + config.replay_context
    if config.batch_size * length > capacity:
        raise ConfigError(
            f'replay.size {capacity:g} ({mode}) cannot hold one batch of '
            f'batch_size {config.batch_size} x {length} steps; raise replay.size.'
        )
    directory = None
    if folder is not None:
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
            raise ConfigError(
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
    from . import replay_layout

    # Chunk files of earlier versions (float32 deter, one-hot stoch) get the compact layout.
    replay_layout.upgrade_directory(directory, config.jax.compute_dtype)
    return embodied.replay.Replay(**kwargs)


def make_env(config: elements.Config, index: int, **overrides):
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


def make_stream(config: elements.Config, replay, mode: str):
    """Batches of consecutive chunks sampled from a replay."""
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
