"""Replay role of the parallel script: train and eval replay behind an RPC server."""

import threading

import elements
import numpy as np
import portal

from ..core import clock, limiters
from . import checkpoints, remote, replays


class ReplayRole:
    """Stores transitions from the actor and serves batches to the learner.

    A SamplesPerInsert limiter paces inserts against sampled items: `add_batch` waits while
    the learner is too far behind, `sample_batch_train` while it is too far ahead. Once `stop()`
    was called every wait ends: inserts go through and sample requests get an empty batch.
    """

    def __init__(self, config: elements.Config):
        self.config = config
        self.replay_train = replays.make_replay(config, 'replay', 'train')
        # The folder name differs from train_eval's `eval_replay` so that logdirs of the
        # reference implementation resume.
        self.replay_eval = replays.make_replay(config, 'replay_eval', 'eval')
        self.limiter = limiters.SamplesPerInsert(
            config.run.train_ratio / config.batch_length,
            tolerance=4 * config.batch_size,
            minsize=config.batch_size * self.replay_train.length,
        )
        self.stream_train = iter(replays.make_stream(config, self.replay_train, 'train'))
        self.stream_report = iter(replays.make_stream(config, self.replay_train, 'report'))
        self.stream_eval = iter(replays.make_stream(config, self.replay_eval, 'eval'))
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.active = False
        self.waits = {k: [0.0, 0, 0] for k in ('insert', 'sample')}  # duration, waits, calls

    def add_batch(self, batch: dict) -> bool:
        """Add a batch of transitions; `envid` picks the stream, `is_eval` the replay."""
        batch = dict(batch)
        envids = batch.pop('envid')
        is_eval = batch.pop('is_eval')
        for index, env_id in enumerate(envids):
            tran = {k: v[index] for k, v in batch.items()}
            if is_eval[index]:
                self.replay_eval.add(tran, int(env_id))
                continue
            with elements.timer.section('insert_wait'):
                duration = limiters.wait(
                    lambda: self.stopping.is_set() or self.limiter.want_insert(),
                    'Replay insert waits for the learner to sample',
                )
            self._count('insert', duration)
            self.replay_train.add(tran, int(env_id))
            with self.lock:
                self.limiter.insert()
        self.active = True
        return True

    def sample_batch_train(self) -> dict:
        """The next train batch, after `batch_size` sample permissions of the limiter."""
        for _ in range(self.config.batch_size):
            with elements.timer.section('sample_wait'):
                duration = limiters.wait(
                    lambda: self.stopping.is_set() or self.limiter.want_sample(),
                    'Replay sample waits for more inserts',
                )
            self._count('sample', duration)
            if self.stopping.is_set():
                return {}
            with self.lock:
                self.limiter.sample()
        self.active = True
        return remote.contiguous(next(self.stream_train))

    def sample_batch_report(self) -> dict:
        """A report batch from the train replay."""
        return remote.contiguous(next(self.stream_report))

    def sample_batch_eval(self) -> dict:
        """A report batch from the eval replay."""
        return remote.contiguous(next(self.stream_eval))

    def update(self, data: dict) -> bool:
        """Write agent outputs back into the train replay by `stepid`."""
        self.replay_train.update(data)
        return True

    def metrics(self) -> dict:
        """Limiter, replay, usage and timer metrics since the last call."""
        metrics = {}
        for name, (duration, waits, calls) in self.waits.items():
            metrics[f'limiter/{name}_wait_dur'] = duration
            metrics[f'limiter/{name}_wait_count'] = waits
            metrics[f'limiter/{name}_wait_frac'] = waits / calls if calls else np.nan
        self.waits = {k: [0.0, 0, 0] for k in self.waits}
        metrics.update(remote.prefixed(self.replay_train.stats(), 'replay'))
        metrics.update(remote.prefixed(self.replay_eval.stats(), 'replay_eval'))
        return metrics

    def _count(self, name, duration):
        entry = self.waits[name]
        entry[0] += duration
        entry[1] += int(duration > 0)
        entry[2] += 1


def run(config: elements.Config) -> int:
    """Serve the replay at `run.replay_addr` until the agent role calls `stop`; returns 0."""
    role = ReplayRole(config)
    logdir = elements.Path(config.logdir)
    checkpoint = checkpoints.Checkpoint(logdir / 'ckpt' / 'replay', config.run.keep_checkpoints)
    checkpoint.replay_train = role.replay_train
    checkpoint.replay_eval = role.replay_eval
    checkpoint.limiter = role.limiter
    checkpoints.load_or_save(checkpoint, logdir / 'ckpt' / 'replay')

    saver = checkpoints.SerialSaver(checkpoint)

    def stop():
        role.stopping.set()
        saver.save()
        return True, None

    server = portal.Server(config.run.replay_addr, 'Replay')
    # Each method has its own thread, so a blocked sample never delays inserts or stop().
    server.bind('add_batch', role.add_batch, workers=1)
    server.bind('sample_batch_train', role.sample_batch_train, workers=1)
    server.bind('sample_batch_report', role.sample_batch_report, workers=1)
    server.bind('sample_batch_eval', role.sample_batch_eval, workers=1)
    server.bind('update', role.update, workers=1)
    server.bind('stop', stop, lambda _: role.finished.set(), workers=1)
    server.start(block=False)
    logger = portal.Client(config.run.logger_addr, 'ReplayLogger', maxinflight=8)
    usage = elements.Usage(**config.run.usage)
    should_log = clock.LocalClock(config.run.log_every)
    should_save = clock.LocalClock(config.run.save_every)
    while not role.finished.wait(0.1):
        if should_log():
            metrics = role.metrics()
            metrics.update(remote.prefixed(usage.stats(), 'usage/replay'))
            metrics.update(remote.prefixed(server.stats(), 'server/replay'))
            metrics['timer/replay'] = remote.timer_summary()
            logger.add(metrics)
        if should_save() and role.active and not role.stopping.is_set():
            role.active = False
            saver.save()
    print('Replay saved and stops because the run has ended.')
    logger.close()
    remote.wait_for_clients(server, remote.SHUTDOWN_WAIT)
    return 0
