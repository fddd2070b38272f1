"""The `train_eval` script: `train` plus evaluation episodes in separate envs (spec 9.3)."""

import functools

import elements

from ..core import clock
from ..core import driver as driverlib
from . import checkpoints, episodes


def train_eval(make_agent, make_replay, make_env, make_stream, make_logger, args):
    """Train like `train`; on every report clock also run `eval_eps` evaluation episodes.

    Evaluation episodes act with mode='eval', go to their own replay (folder `eval_replay`) and
    are logged under `eval_episode/*` and `eval_epstats/*` (spec §14.26); they do not count as
    env steps. Reports use `consec_report * report_batches` batches of each replay (§14.31).
    """
    agent = make_agent()
    replay_train = make_replay('replay', 'train')
    replay_eval = make_replay('eval_replay', 'eval')
    logger = make_logger()
    logdir = elements.Path(args.logdir)
    step = logger.step
    usage = elements.Usage(**args.usage)
    train_agg = elements.Agg()
    epstats = elements.Agg()
    eval_epstats = elements.Agg()
    policy_fps = elements.FPS()
    train_fps = elements.FPS()

    batch_steps = args.batch_size * args.batch_length
    should_train = elements.when.Ratio(args.train_ratio / batch_steps)
    should_log = clock.LocalClock(args.log_every)
    should_report = clock.LocalClock(args.report_every)
    should_save = clock.LocalClock(args.save_every)

    fns = [functools.partial(make_env, i) for i in range(args.envs)]
    driver_train = driverlib.Driver(fns, parallel=not args.debug)
    driver_train.on_step(lambda tran, _: step.increment())
    driver_train.on_step(lambda tran, _: policy_fps.step())
    driver_train.on_step(replay_train.add)
    stats_train = episodes.EpisodeStats(logger, epstats)
    driver_train.on_step(stats_train)

    driver_eval = None
    stats_eval = episodes.EpisodeStats(logger, eval_epstats, prefix='eval_episode')
    if args.eval_envs > 0:
        fns = [functools.partial(make_env, i) for i in range(args.eval_envs)]
        driver_eval = driverlib.Driver(fns, parallel=not args.debug)
        driver_eval.on_step(lambda tran, _: policy_fps.step())
        driver_eval.on_step(replay_eval.add)
        driver_eval.on_step(stats_eval)

    stream_train = iter(agent.stream(make_stream(replay_train, 'train')))
    stream_report = iter(agent.stream(make_stream(replay_train, 'report')))
    stream_eval = iter(agent.stream(make_stream(replay_eval, 'eval')))
    carry_train = [agent.init_train(args.batch_size)]
    carry_report = [agent.init_report(args.batch_size)]
    carry_eval = [agent.init_report(args.batch_size)]

    def trainfn(tran, worker):
        if len(replay_train) < batch_steps:
            return
        for _ in range(should_train(step)):
            with elements.timer.section('stream_next'):
                batch = next(stream_train)
            carry_train[0], outs, metrics = agent.train(carry_train[0], batch)
            train_fps.step(batch_steps)
            if 'replay' in outs:
                replay_train.update(outs['replay'])
            train_agg.add(metrics, prefix='train')

    driver_train.on_step(trainfn)

    def reportfn(stream, carry, prefix):
        agg = elements.Agg()
        for _ in range(args.consec_report * args.report_batches):
            carry[0], metrics = agent.report(carry[0], next(stream))
            agg.add(metrics)
        logger.add(agg.result(), prefix=prefix)

    def evalfn():
        if driver_eval is None or args.eval_eps <= 0:
            return
        driver_eval.reset(agent.init_policy)
        driver_eval(policy_eval, episodes=args.eval_eps)
        logger.add(eval_epstats.result(), prefix='eval_epstats')

    def logfn():
        logger.add(train_agg.result())
        logger.add(epstats.result(), prefix='epstats')
        logger.add(replay_train.stats(), prefix='replay')
        logger.add(replay_eval.stats(), prefix='replay_eval')
        logger.add(usage.stats(), prefix='usage')
        logger.add({'fps/policy': policy_fps.result(), 'fps/train': train_fps.result()})
        # The summary is missing when logger.timer disabled the timer.
        logger.add({'timer': elements.timer.stats().get('summary', '')})
        logger.write()

    checkpoint = elements.Checkpoint(logdir / 'ckpt')
    checkpoint.step = step
    checkpoint.agent = agent
    checkpoint.replay_train = replay_train
    checkpoint.replay_eval = replay_eval
    if args.from_checkpoint:
        checkpoints.load_agent(agent, args.from_checkpoint, args.from_checkpoint_regex)
    checkpoints.load_or_save(checkpoint, logdir / 'ckpt')

    print(f'Training with evaluation from step {int(step)} to {int(args.steps)}.')
    policy_train = lambda *a: agent.policy(*a, mode='train')
    policy_eval = lambda *a: agent.policy(*a, mode='eval')
    driver_train.reset(agent.init_policy)
    # Reports and saves are collective in multi-host JAX: every process follows process 0.
    agree = getattr(agent, 'agree', bool)
    try:
        while step < args.steps:
            if agree(should_report(step)):
                evalfn()
                if len(replay_train):
                    reportfn(stream_report, carry_report, 'report')
                if len(replay_eval):
                    reportfn(stream_eval, carry_eval, 'eval')
            driver_train(policy_train, steps=10)
            if should_log(step):
                logfn()
            if agree(should_save(step)):
                checkpoint.save()
        # Saving at the end lets the same command with more steps continue from here.
        checkpoint.save()
        logfn()
    finally:
        driver_train.close()
        if driver_eval is not None:
            driver_eval.close()
        logger.close()
    print(
        f'Finished training at step {int(step)}: {stats_train.summary()}; '
        f'evaluation: {stats_eval.summary()}.')
