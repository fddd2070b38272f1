"""The `eval_only` script: run a trained policy from a checkpoint without learning (spec 9.4)."""

import functools

import elements

from ..core import clock
from ..core import driver as driverlib
from . import checkpoints, episodes, videos

# Frame rate of the episode videos when the arguments carry none (logger.fps's default).
VIDEO_FPS = 15


def eval_only(make_agent, make_replay, make_env, make_stream, make_logger, args):
    """Act with mode='eval' until `args.steps` env steps, logging episodes and saving videos.

    `args.from_checkpoint` names a checkpoint folder, its ckpt directory or the logdir of a run
    (then its latest checkpoint is used). The first episode of every env is written as an mp4
    per image observation into `<logdir>/videos/`. No replay, no training, no checkpoint.
    """
    del make_replay, make_stream
    if not args.from_checkpoint:
        raise checkpoints.CheckpointError(
            'The eval_only script needs a checkpoint: pass --run.from_checkpoint with a '
            'checkpoint folder or the logdir of a training run.'
        )
    # Fail before building the agent (which compiles) when there is nothing to load.
    folder = checkpoints.resolve(args.from_checkpoint)

    agent = make_agent()
    logger = make_logger()
    logdir = elements.Path(args.logdir)
    step = logger.step
    usage = elements.Usage(**args.usage)
    epstats = elements.Agg()
    policy_fps = elements.FPS()
    should_log = clock.LocalClock(args.log_every)

    fns = [functools.partial(make_env, i) for i in range(args.envs)]
    driver = driverlib.Driver(fns, parallel=not args.debug)
    driver.on_step(lambda tran, _: step.increment())
    driver.on_step(lambda tran, _: policy_fps.step())
    stats = episodes.EpisodeStats(logger, epstats)
    driver.on_step(stats)
    recorder = videos.EpisodeVideos(logdir / 'videos', args.get('video_fps', VIDEO_FPS))
    driver.on_step(recorder)

    checkpoints.load_agent(agent, folder, args.from_checkpoint_regex)

    def logfn():
        logger.add(epstats.result(), prefix='epstats')
        logger.add(usage.stats(), prefix='usage')
        logger.add({'fps/policy': policy_fps.result()})
        # The summary is missing when logger.timer disabled the timer.
        logger.add({'timer': elements.timer.stats().get('summary', '')})
        logger.write()

    print(f'Evaluating {folder} for {int(args.steps)} steps.')
    policy = lambda *a: agent.policy(*a, mode='eval')
    driver.reset(agent.init_policy)
    try:
        while step < args.steps:
            driver(policy, steps=10)
            if should_log(step):
                logfn()
        logfn()
    finally:
        driver.close()
        logger.close()
    print(
        f'Finished evaluation at step {int(step)}: {stats.summary()}; '
        f'{len(recorder.paths)} videos in {logdir / "videos"}.'
    )
