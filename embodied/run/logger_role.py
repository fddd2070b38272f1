"""Logger role of the parallel script: the env step counter, episode stats and all outputs."""

import threading
import time

import elements
import numpy as np
import portal

from ..core import clock
from . import checkpoints, episodes, outputs, remote


class Episodes:
    """Episode statistics per env id from transition batches.

    Train episodes are logged as `episode/*` and `epstats/*`, eval episodes as
    `eval_episode/*` and `eval_epstats/*`. Lengths count env steps, i.e. transitions - 1, as in
    every script. Videos come only from the first env id seen of each kind.
    """

    def __init__(self, logger, timeout):
        self.timeout = timeout
        self.epstats = {False: elements.Agg(), True: elements.Agg()}
        self.stats = {
            False: episodes.EpisodeStats(logger, self.epstats[False], video_worker=None),
            True: episodes.EpisodeStats(
                logger, self.epstats[True], prefix='eval_episode', video_worker=None
            ),
        }
        self.open = set()  # env ids with an episode that has not ended
        self.seen = {}  # env id -> (is_eval, time of its last transition)
        self.counts = {'ep_starts': 0, 'ep_ends': 0, 'ep_abandoned': 0}

    def add(self, tran: dict, env_id: int, is_eval: bool) -> None:
        """Add one transition of env `env_id`."""
        stats = self.stats[is_eval]
        if stats.video_worker is None:
            stats.video_worker = env_id
        self.seen[env_id] = (is_eval, time.monotonic())
        if tran['is_first']:
            self.counts['ep_starts'] += 1
            if env_id in self.open:
                self.counts['ep_abandoned'] += 1
            self.open.add(env_id)
        elif env_id not in self.open:
            return  # The start of this episode was dropped or came before a restart.
        stats(tran, env_id)
        if tran['is_last']:
            self.counts['ep_ends'] += 1
            self.open.discard(env_id)

    def drop_silent(self) -> None:
        """Forget the open episodes of env ids that sent nothing for `timeout` seconds."""
        now = time.monotonic()
        for env_id, (is_eval, last) in list(self.seen.items()):
            if now - last > self.timeout:
                del self.seen[env_id]
                self.open.discard(env_id)
                self.stats[is_eval].episodes.pop(env_id, None)

    def metrics(self) -> dict:
        """Episode counters since the last call plus the stats aggregators."""
        metrics = remote.prefixed(self.counts, 'parallel')
        self.counts = {k: 0 for k in self.counts}
        metrics.update(remote.prefixed(self.epstats[False].result(), 'epstats'))
        metrics.update(remote.prefixed(self.epstats[True].result(), 'eval_epstats'))
        return metrics


class LoggerRole:
    """Receives metrics and transitions from the other roles and writes the outputs."""

    def __init__(self, config: elements.Config):
        # The roles always print the metrics block: they show no progress display.
        self.logger = outputs.make_logger(config, progress=False)
        self.step = self.logger.step
        self.episodes = Episodes(self.logger, config.run.episode_timeout)
        self.lock = threading.Lock()
        self.active = False
        self.written = None

    def add(self, metrics: dict) -> bool:
        """Log a dict of metrics at the current step."""
        with self.lock:
            self.logger.add(metrics)
            self.active = True
        return True

    def tran(self, batch: dict) -> int:
        """Count and track a batch of transitions; returns the env step after it."""
        batch = dict(batch)
        envids = batch.pop('envid')
        is_eval = np.asarray(batch.pop('is_eval'), bool)
        with self.lock:
            self.step.increment(int((~is_eval).sum()))
            for index, env_id in enumerate(envids):
                tran = {k: v[index] for k, v in batch.items()}
                self.episodes.add(tran, int(env_id), bool(is_eval[index]))
            self.active = True
            return int(self.step)

    def current_step(self) -> int:
        """The env step counter (restored from the checkpoint on resume)."""
        return int(self.step)

    def write(self, usage, server, final: bool = False) -> None:
        """Add the role's own metrics and write; skipped when nothing changed."""
        with self.lock:
            self.episodes.drop_silent()
            if not self.active and not final:
                return
            self.active = False
            self.logger.add(self.episodes.metrics())
            self.logger.add(remote.prefixed(usage.stats(), 'usage/logger'))
            self.logger.add(remote.prefixed(server.stats(), 'server/logger'))
            self.logger.add({'timer/logger': remote.timer_summary()})
            # Writing twice at one step would give two records for one step; the values wait
            # for the next write instead.
            if int(self.step) != self.written or final:
                self.written = int(self.step)
                self.logger.write()


def run(config: elements.Config) -> int:
    """Serve the logger at `run.logger_addr` until the agent role calls `stop`; returns 0."""
    role = LoggerRole(config)
    logdir = elements.Path(config.logdir)
    checkpoint = checkpoints.Checkpoint(logdir / 'ckpt' / 'logger', config.run.keep_checkpoints)
    checkpoint.step = role.step
    checkpoints.load_or_save(checkpoint, logdir / 'ckpt' / 'logger')
    usage = elements.Usage(**config.run.usage)
    server = portal.Server(config.run.logger_addr, 'Logger')
    finished = threading.Event()
    saver = checkpoints.SerialSaver(checkpoint)

    def stop():
        role.write(usage, server, final=True)
        saver.save()
        return True, None

    server.bind('add', role.add)
    server.bind('tran', role.tran)
    server.bind('step', role.current_step)
    server.bind('stop', stop, lambda _: finished.set(), workers=1)
    server.start(block=False)
    should_log = clock.LocalClock(config.run.log_every)
    should_save = clock.LocalClock(config.run.save_every)
    saved = int(role.step)
    while not finished.wait(0.1):
        if should_log():
            role.write(usage, server)
        if should_save() and int(role.step) != saved:
            saved = int(role.step)
            saver.save()
    role.logger.close()
    print(f'Logger saved and stops at step {int(role.step)}.')
    remote.wait_for_clients(server, remote.SHUTDOWN_WAIT)
    return 0
