"""The `train` script: act in the environments and train from replay in one process."""

import functools

import elements

from ..core import clock
from ..core import driver as driverlib
from . import checkpoints, episodes


def train(make_agent, make_replay, make_env, make_stream, make_logger, args):
    """Train until `args.steps` env steps, logging, reporting and saving on clocks."""
    agent = make_agent()
    replay = make_replay('replay', 'train')
    logger = make_logger()
    logdir = elements.Path(args.logdir)
    step = logger.step
    usage = elements.Usage(**args.usage)
    train_agg = elements.Agg()
    epstats = elements.Agg()
    policy_fps = elements.FPS()
    train_fps = elements.FPS()

    batch_steps = args.batch_size * args.batch_length
    should_train = elements.when.Ratio(args.train_ratio / batch_steps)
    should_log = clock.LocalClock(args.log_every)
    should_report = clock.LocalClock(args.report_every)
    should_save = clock.LocalClock(args.save_every)

    fns = [functools.partial(make_env, i) for i in range(args.envs)]
    driver = driverlib.Driver(fns, parallel=not args.debug)
    driver.on_step(lambda tran, _: step.increment())
    driver.on_step(lambda tran, _: policy_fps.step())
    driver.on_step(replay.add)
    stats = episodes.EpisodeStats(logger, epstats)
    driver.on_step(stats)

    stream_train = iter(agent.stream(make_stream(replay, 'train')))
    stream_report = iter(agent.stream(make_stream(replay, 'report')))
    carry_train = [agent.init_train(args.batch_size)]
    carry_report = [agent.init_report(args.batch_size)]

    def trainfn(tran, worker):
        if len(replay) < batch_steps:
            return
        for _ in range(should_train(step)):
            with elements.timer.section('stream_next'):
                batch = next(stream_train)
            carry_train[0], outs, metrics = agent.train(carry_train[0], batch)
            train_fps.step(batch_steps)
            if 'replay' in outs:
                replay.update(outs['replay'])
            train_agg.add(metrics, prefix='train')

    driver.on_step(trainfn)

    def reportfn():
        agg = elements.Agg()
        for _ in range(args.consec_report * args.report_batches):
            carry_report[0], metrics = agent.report(carry_report[0], next(stream_report))
            agg.add(metrics)
        logger.add(agg.result(), prefix='report')

    def logfn():
        logger.add(train_agg.result())
        logger.add(epstats.result(), prefix='epstats')
        logger.add(replay.stats(), prefix='replay')
        logger.add(usage.stats(), prefix='usage')
        logger.add({'fps/policy': policy_fps.result(), 'fps/train': train_fps.result()})
        # The summary is missing when logger.timer disabled the timer.
        logger.add({'timer': elements.timer.stats().get('summary', '')})
        logger.write()

    checkpoint = elements.Checkpoint(logdir / 'ckpt')
    checkpoint.step = step
    checkpoint.agent = agent
    checkpoint.replay = replay
    if args.from_checkpoint:
        checkpoints.load_agent(agent, args.from_checkpoint, args.from_checkpoint_regex)
    checkpoints.load_or_save(checkpoint, logdir / 'ckpt')

    print(f'Training from step {int(step)} to {int(args.steps)}.')
    policy = lambda *a: agent.policy(*a, mode='train')
    # Reports and saves are collective in multi-host JAX: every process follows process 0.
    agree = getattr(agent, 'agree', bool)
    driver.reset(agent.init_policy)
    try:
        while step < args.steps:
            driver(policy, steps=10)
            if agree(should_report(step)) and len(replay):
                reportfn()
            if should_log(step):
                logfn()
            if agree(should_save(step)):
                checkpoint.save()
        # Saving at the end lets the same command with more steps continue from here.
        checkpoint.save()
        logfn()
    finally:
        driver.close()
        logger.close()
    print(f'Finished training at step {int(step)}: {stats.summary()}.')
