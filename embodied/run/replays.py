"""The replays a run keeps and the batch streams cut from them, built from the run's config."""

import functools

import elements
import numpy as np

from ..core import replay as replaylib
from ..core import sampling, streams
from ..core.base import SetupError


def make_replay(config: elements.Config, folder: str | None, mode: str = 'train'):
    """The replay of one mode (`train`, `report` or `eval`) stored in `<logdir>/<folder>`.

    `folder=None` keeps it in memory only. Eval replays hold a tenth of `replay.size`.
    """
    batlen = config.batch_length if mode == 'train' else config.report_length
    consec = config.consec_train if mode == 'train' else config.consec_report
    capacity = config.replay.size if mode == 'train' else config.replay.size / 10
    length = consec * batlen + config.replay_context
    if config.batch_size * length > capacity:
        raise SetupError(
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
            raise SetupError(
                'Prioritized and recency replay need jax.compute_dtype bfloat16 or '
                f'float32, not {config.jax.compute_dtype}.'
            )
        recency = 1.0 / np.arange(1, int(capacity) + 1) ** config.replay.recexp
        prio = dict(config.replay.prio)
        prio['initial'] = float(prio['initial'])
        kwargs['selector'] = sampling.Mixture(
            dict(
                uniform=sampling.Uniform(),
                priority=sampling.Prioritized(**prio),
                recency=sampling.Recency(recency),
            ),
            dict(config.replay.fracs),
        )
    return replaylib.Replay(**kwargs)


def make_stream(config: elements.Config, replay, mode: str):
    """Batches of `batch_size` consecutive chunks sampled from a replay, for train or report."""
    fn = functools.partial(replay.sample, config.batch_size, mode)
    return streams.Consec(
        streams.Stateless(fn),
        length=config.batch_length if mode == 'train' else config.report_length,
        consec=config.consec_train if mode == 'train' else config.consec_report,
        prefix=config.replay_context,
        strict=(mode == 'train'),
        contiguous=True,
    )
