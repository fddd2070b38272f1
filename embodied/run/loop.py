"""The run loop the scripts share, and the acting and training parts they plug into it.

`Loop` counts steps up to a total. Between calls of the script's body it runs the report hooks
on the report clock, writes one log on the log clock (`log()`, which runs the log hooks),
saves the checkpoint on the save clock, keeps the progress bar or line current and stops after
the current body call on SIGINT or SIGTERM, saving first. `Actor` steps envs with the agent's
policy and collects their episodes; `Learner` trains the agent from a replay and reports on
replays. `TrainLoop` joins the three the way `train` and `train_eval` use them.
"""

import functools
import time

import elements

from ..core import clock
from ..core import driver as driverlib
from ..envs import registry
from . import checkpoints, episodes, interrupt, progress, remote, replay_memory, replays


def make_driver(config: elements.Config, count: int) -> driverlib.Driver:
    """A driver over envs 0..count-1 of the run's task, in subprocesses unless `run.debug`."""
    if config.run.debug:
        fns = [functools.partial(registry.make_env, config, i) for i in range(count)]
        return driverlib.Driver(fns, parallel=False)
    fns = [functools.partial(_shielded_env, config, i) for i in range(count)]
    return driverlib.Driver(fns, parallel=True)


def _shielded_env(config, index):
    # Runs in the worker process: a Ctrl-C reaches the whole process group, but the workers
    # must keep stepping until the loop has finished its last update and closes them.
    interrupt.shield()
    return registry.make_env(config, index)


class Loop:
    """Steps a script's body until `total` steps, with clocks, hooks, one log call and a stop.

    `step` is the logger's counter; the body advances it. Hooks: `on_report(fn)` runs `fn()`
    whenever the report clock fires (process 0 decides in multi-host runs), `on_log(fn)` runs
    `fn()` before every log write to add metrics, `on_close(fn)` runs at `close()`.
    `status` returns the (updates, mean score) the progress display shows. With
    `report_first`, the report hooks also run before the first body call.
    """

    def __init__(
        self, agent, logger, config, total, unit='env steps', stop=None, report_first=False
    ):
        self.agent = agent
        self.logger = logger
        self.config = config
        self.step = logger.step
        self.total = int(total)
        self.unit = unit
        self.stop = stop or interrupt.Interrupt()
        self.usage = elements.Usage(**config.run.usage)
        self.should_log = clock.LocalClock(config.run.log_every)
        self.should_report = clock.LocalClock(config.run.report_every, first=report_first)
        self.should_save = clock.LocalClock(config.run.save_every)
        # Reports and saves are collective in multi-host JAX: every process follows process 0.
        self.agree = getattr(agent, 'agree', bool)
        self.status = lambda: (None, None)
        self.progress = None
        self.saved_to = ''
        self._report_hooks, self._log_hooks, self._close_hooks = [], [], []

    def on_report(self, fn) -> None:
        """Run `fn()` whenever the report clock fires."""
        self._report_hooks.append(fn)

    def on_log(self, fn) -> None:
        """Run `fn()` before every log write, to add metrics to the logger."""
        self._log_hooks.append(fn)

    def on_close(self, fn) -> None:
        """Run `fn()` when the loop closes (before the logger closes)."""
        self._close_hooks.append(fn)

    def log(self) -> None:
        """Add the hooks' metrics, usage and the timer summary, write them and show progress."""
        for fn in self._log_hooks:
            fn()
        self.logger.add(self.usage.stats(), prefix='usage')
        # The summary is '' when logger.timer disabled the timer.
        self.logger.add({'timer': remote.timer_summary()})
        self.logger.write()
        if self.progress is not None:
            self.progress.update(int(self.step), *self.status())
            self.progress.log()

    def run(self, body, checkpoint=None) -> bool:
        """Call `body()` until `total` steps or a stop signal; save and log at the end.

        Returns whether a signal stopped the loop early.
        """
        interrupt.started()
        self.progress = progress.Progress(self.total, int(self.step), self.unit)
        self.progress.update(int(self.step), *self.status())  # the baseline of the rates
        try:
            with self.stop:
                while self.step < self.total and not self.agree(self.stop.requested):
                    if self.agree(self.should_report(self.step)):
                        for fn in self._report_hooks:
                            fn()
                    body()
                    self.progress.update(int(self.step), *self.status())
                    if self.should_log(self.step):
                        self.log()
                    if checkpoint is not None and self.agree(self.should_save(self.step)):
                        checkpoint.save()
                # Saving at the end lets the same command with a larger total continue here.
                if checkpoint is not None:
                    checkpoint.save()
                    self.saved_to = str(checkpoint_dir(self.config))
                self.log()
        finally:
            self.progress.close()
        return self.stop.requested

    def stopped_line(self) -> str:
        """The line a script prints when a signal stopped it."""
        saved = f' and saved a checkpoint in {self.saved_to}' if self.saved_to else ''
        return f'Stopped by {self.stop.signame} at step {int(self.step)}{saved}.'

    def close(self) -> None:
        """Run the close hooks (they stop env workers) and flush the logger."""
        try:
            for fn in self._close_hooks:
                fn()
        finally:
            self.logger.close()


class Actor:
    """Envs stepped with the agent's policy in one mode; each transition goes to the callbacks.

    Episodes are logged as `<prefix>/score` and `<prefix>/length` when they end; their other
    statistics are aggregated in `epstats` until `log()` writes them under `stats_prefix`.
    """

    def __init__(self, agent, logger, config, count, mode='train', prefix='episode'):
        self.agent = agent
        self.logger = logger
        self.mode = mode
        self.stats_prefix = 'epstats' if prefix == 'episode' else f'{prefix.split("_")[0]}_epstats'
        self.driver = make_driver(config, count)
        self.epstats = elements.Agg()
        self.episodes = episodes.EpisodeStats(logger, self.epstats, prefix=prefix)
        self.driver.on_step(self.episodes)

    def on_step(self, fn) -> None:
        """Call `fn(tran, worker)` for every transition."""
        self.driver.on_step(fn)

    def reset(self) -> None:
        """Reset every env and the policy carry."""
        self.driver.reset(self.agent.init_policy)

    def __call__(self, steps: int = 0, episodes: int = 0) -> None:
        """Act for at least `steps` env steps or `episodes` episodes."""
        policy = functools.partial(self.agent.policy, mode=self.mode)
        self.driver(policy, steps=steps, episodes=episodes)

    def log(self) -> None:
        """Add the aggregated episode statistics to the logger."""
        self.logger.add(self.epstats.result(), prefix=self.stats_prefix)

    def close(self) -> None:
        """Stop the env workers."""
        self.driver.close()


class Learner:
    """Trains the agent from a replay and runs its report on replays.

    `report(name)` runs `consec_report * report_batches` report calls on the replay added as
    `name` and logs their mean under `name`. An update that compiles says so.
    """

    def __init__(self, agent, replay, logger, config):
        replay_memory.report(agent, replay)  # before the replay fills: is there memory for it?
        self.agent = agent
        self.replay = replay
        self.logger = logger
        self.config = config
        self.batch_steps = config.batch_size * config.batch_length
        self.metrics = elements.Agg()
        self.fps = elements.FPS()
        self.updates = 0
        self.stream = iter(agent.stream(replays.make_stream(config, replay, 'train')))
        self.carry = agent.init_train(config.batch_size)
        self.reports = {}

    def add_report(self, name, replay, mode='report') -> None:
        """Report on `replay` (sampled in `mode`) under the prefix `name`."""
        stream = iter(self.agent.stream(replays.make_stream(self.config, replay, mode)))
        self.reports[name] = [replay, stream, self.agent.init_report(self.config.batch_size)]

    @property
    def ready(self) -> bool:
        """Whether the replay holds a batch worth of steps."""
        return len(self.replay) >= self.batch_steps

    def update(self) -> None:
        """One training update on the next batch."""
        with elements.timer.section('stream_next'):
            batch = next(self.stream)
        # An agent that compiles lazily (jax.precompile False) compiles in its first update.
        compiles = self.updates == 0 and getattr(self.agent, 'precompiled', True) is False
        if compiles:
            print('Compiling the train step in the first update...', flush=True)
            start = time.monotonic()
        self.carry, outs, metrics = self.agent.train(self.carry, batch)
        if compiles:
            print(f'Compiled the train step in {time.monotonic() - start:.1f} s.', flush=True)
        self.updates += 1
        self.fps.step(self.batch_steps)
        if 'replay' in outs:
            self.replay.update(outs['replay'])
        self.metrics.add(metrics, prefix='train')

    def report(self, name) -> None:
        """Log the mean report metrics of the replay `name` (nothing while it is empty)."""
        replay, stream, carry = self.reports[name]
        if not len(replay):
            return
        agg = elements.Agg()
        for _ in range(self.config.consec_report * self.config.run.report_batches):
            carry, metrics = self.agent.report(carry, next(stream))
            agg.add(metrics)
        self.reports[name][2] = carry
        self.logger.add(agg.result(), prefix=name)

    def log(self) -> None:
        """Add the training metrics and the train throughput to the logger."""
        self.logger.add(self.metrics.result())
        self.logger.add({'fps/train': self.fps.result()})

    def close(self) -> None:
        """Stop the threads that prefetch batches."""
        for stream in [self.stream] + [stream for _, stream, _ in self.reports.values()]:
            if hasattr(stream, 'close'):
                stream.close()


def checkpoint_dir(config) -> elements.Path:
    """Where a run keeps its checkpoints."""
    return elements.Path(config.logdir) / 'ckpt'


def restore(loop, **saveables):
    """Load `run.from_checkpoint`, then resume from logdir/ckpt or save the first checkpoint."""
    run = loop.config.run
    directory = checkpoint_dir(loop.config)
    checkpoint = checkpoints.Checkpoint(directory, run.keep_checkpoints)
    checkpoint.step = loop.step
    checkpoint.agent = loop.agent
    for name, saveable in saveables.items():
        setattr(checkpoint, name, saveable)
    if run.from_checkpoint:
        checkpoints.load_agent(loop.agent, run.from_checkpoint, run.from_checkpoint_regex)
    checkpoints.load_or_save(checkpoint, directory)
    return checkpoint


class TrainLoop(Loop):
    """`train`'s loop: act in `run.envs` envs in train mode and train at `run.train_ratio`.

    Every training transition increments the step counter, goes into the replay and into the
    episode statistics; once the replay holds a batch worth of steps, each transition triggers
    as many updates as the train ratio asks for (updates per step = train_ratio / (batch_size
    * batch_length)). Reports on the replay run on the report clock.
    """

    def __init__(self, agent, replay, logger, config, stop=None):
        super().__init__(agent, logger, config, config.run.steps, 'env steps', stop)
        self.replay = replay
        self.policy_fps = elements.FPS()
        batch_steps = config.batch_size * config.batch_length
        self.should_train = clock.Ratio(config.run.train_ratio / batch_steps)
        self.learner = Learner(agent, replay, logger, config)
        self.learner.add_report('report', replay)
        self.actor = Actor(agent, logger, config, config.run.envs, 'train')
        self.actor.on_step(lambda tran, _: self.step.increment())
        self.actor.on_step(lambda tran, _: self.policy_fps.step())
        self.actor.on_step(replay.add)
        self.actor.on_step(self._train)
        self.replays = {'replay': replay}
        self.on_report(lambda: self.learner.report('report'))
        self.on_log(self._log)
        self.on_close(self.actor.close)
        self.on_close(self.learner.close)
        self.status = lambda: (self.learner.updates, self.actor.episodes.mean_score())

    @property
    def episodes(self):
        """The episode statistics of the training envs."""
        return self.actor.episodes

    def restore(self, **saveables):
        """Resume (or start) from the checkpoint, then reset the envs."""
        checkpoint = restore(self, **saveables)
        self.actor.reset()
        return checkpoint

    def log_replay(self, prefix, replay) -> None:
        """Log the statistics of another replay under `prefix` at every log."""
        self.replays[prefix] = replay

    def act(self, steps=10) -> None:
        """Step the training envs for at least `steps` env steps, training along the way."""
        self.actor(steps=steps)

    def _train(self, tran, worker):
        if not self.learner.ready:
            return
        for _ in range(self.should_train(self.step)):
            self.learner.update()

    def _log(self):
        self.learner.log()
        self.actor.log()
        for prefix, replay in self.replays.items():
            self.logger.add(replay.stats(), prefix=prefix)
        self.logger.add({'fps/policy': self.policy_fps.result()})
