"""What the `train` and `train_eval` scripts share: acting, training from replay, reports, logs."""

import functools

import elements

from ..core import clock
from ..core import driver as driverlib
from . import checkpoints, episodes, replay_memory


def make_driver(make_env, count, args):
    """A driver over envs 0..count-1, in subprocesses unless `args.debug`."""
    fns = [functools.partial(make_env, i) for i in range(count)]
    return driverlib.Driver(fns, parallel=not args.debug)


class TrainLoop:
    """Acts in the training envs and trains the agent from replay at `args.train_ratio`.

    Every training transition increments the step counter, goes into the replay and into the
    episode statistics; once the replay holds a batch worth of items, each transition triggers
    as many updates as the train ratio asks for (spec 9.2). Logs, reports and saves run on
    wall-clock clocks that the caller checks between driver calls.
    """

    def __init__(self, agent, replay, logger, make_env, make_stream, args):
        replay_memory.report(agent, replay)  # before the replay fills: is there memory for it?
        self.agent = agent
        self.replay = replay
        self.logger = logger
        self.args = args
        self.step = logger.step
        self.usage = elements.Usage(**args.usage)
        self.metrics = elements.Agg()
        self.epstats = elements.Agg()
        self.policy_fps = elements.FPS()
        self.train_fps = elements.FPS()
        self.batch_steps = args.batch_size * args.batch_length
        self.should_train = elements.when.Ratio(args.train_ratio / self.batch_steps)
        self.should_log = clock.LocalClock(args.log_every)
        self.should_report = clock.LocalClock(args.report_every)
        self.should_save = clock.LocalClock(args.save_every)
        # Reports and saves are collective in multi-host JAX: every process follows process 0.
        self.agree = getattr(agent, 'agree', bool)

        self.driver = make_driver(make_env, args.envs, args)
        self.driver.on_step(lambda tran, _: self.step.increment())
        self.driver.on_step(lambda tran, _: self.policy_fps.step())
        self.driver.on_step(replay.add)
        self.episodes = episodes.EpisodeStats(logger, self.epstats)
        self.driver.on_step(self.episodes)
        self.driver.on_step(self._train)

        self.stream_train = iter(agent.stream(make_stream(replay, 'train')))
        self.stream_report = iter(agent.stream(make_stream(replay, 'report')))
        self.carry_train = agent.init_train(args.batch_size)
        self.carry_report = agent.init_report(args.batch_size)

    def restore(self, **saveables):
        """Load `run.from_checkpoint`, then resume from logdir/ckpt or save the first one."""
        directory = elements.Path(self.args.logdir) / 'ckpt'
        checkpoint = checkpoints.Checkpoint(directory, self.args.keep_checkpoints)
        checkpoint.step = self.step
        checkpoint.agent = self.agent
        for name, saveable in saveables.items():
            setattr(checkpoint, name, saveable)
        if self.args.from_checkpoint:
            checkpoints.load_agent(
                self.agent, self.args.from_checkpoint, self.args.from_checkpoint_regex
            )
        checkpoints.load_or_save(checkpoint, directory)
        self.driver.reset(self.agent.init_policy)
        return checkpoint

    def act(self, steps=10):
        """Step the training envs (at least `steps` env steps), training along the way."""
        self.driver(lambda *a: self.agent.policy(*a, mode='train'), steps=steps)

    def report(self, stream, carry, prefix):
        """Log the metrics of `consec_report * report_batches` report calls; returns the carry."""
        agg = elements.Agg()
        for _ in range(self.args.consec_report * self.args.report_batches):
            carry, metrics = self.agent.report(carry, next(stream))
            agg.add(metrics)
        self.logger.add(agg.result(), prefix=prefix)
        return carry

    def log(self, **replays):
        """Write the training metrics, episode stats, replay stats (by prefix) and usage."""
        self.logger.add(self.metrics.result())
        self.logger.add(self.epstats.result(), prefix='epstats')
        for prefix, replay in replays.items():
            self.logger.add(replay.stats(), prefix=prefix)
        self.logger.add(self.usage.stats(), prefix='usage')
        self.logger.add(
            {'fps/policy': self.policy_fps.result(), 'fps/train': self.train_fps.result()}
        )
        # The summary is missing when logger.timer disabled the timer.
        self.logger.add({'timer': elements.timer.stats().get('summary', '')})
        self.logger.write()

    def close(self):
        """Stop the env workers and flush the logger."""
        self.driver.close()
        self.logger.close()

    def _train(self, tran, worker):
        if len(self.replay) < self.batch_steps:
            return
        for _ in range(self.should_train(self.step)):
            with elements.timer.section('stream_next'):
                batch = next(self.stream_train)
            self.carry_train, outs, metrics = self.agent.train(self.carry_train, batch)
            self.train_fps.step(self.batch_steps)
            if 'replay' in outs:
                self.replay.update(outs['replay'])
            self.metrics.add(metrics, prefix='train')
