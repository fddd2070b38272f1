"""The `eval_only` script: run a trained policy from a checkpoint without learning."""

import elements

from . import checkpoints, interrupt, videos
from .loop import Actor, Loop

# Frame rate of the episode videos when the arguments carry none (logger.fps's default).
VIDEO_FPS = 15


def eval_only(make_agent, make_env, make_logger, args):
    """Act with mode='eval' until `args.steps` env steps, logging episodes and saving videos.

    `args.from_checkpoint` names a checkpoint folder, its ckpt directory or the logdir of a run
    (then its latest checkpoint is used). The first episode of every env is written as an mp4
    per image observation into `<logdir>/videos/`. No replay, no training, no checkpoint.
    """
    # Fail before building the agent (which compiles) when there is nothing to load.
    folder = check(args)
    logdir = elements.Path(args.logdir)
    with interrupt.Interrupt() as stop:
        agent = make_agent()
        logger = make_logger()
        loop = Loop(agent, logger, args, args.steps, 'env steps', stop)
        try:
            actor = Actor(agent, logger, make_env, args.envs, args, 'eval')
            loop.on_close(actor.close)
            fps = elements.FPS()
            actor.on_step(lambda tran, _: loop.step.increment())
            actor.on_step(lambda tran, _: fps.step())
            recorder = videos.EpisodeVideos(logdir / 'videos', args.get('video_fps', VIDEO_FPS))
            actor.on_step(recorder)
            loop.on_log(actor.log)
            loop.on_log(lambda: logger.add({'fps/policy': fps.result()}))
            loop.status = lambda: (None, actor.episodes.mean_score())
            checkpoints.load_agent(agent, folder, args.from_checkpoint_regex)
            print(f'Evaluating {folder} for {int(args.steps)} steps.')
            actor.reset()
            stopped = loop.run(lambda: actor(steps=10))
        finally:
            loop.close()
    ending = 'Stopped by ' + stop.signame if stopped else 'Finished evaluation'
    print(
        f'{ending} at step {int(loop.step)}: {actor.episodes.summary()}; '
        f'{len(recorder.paths)} videos in {logdir / "videos"}.'
    )


def check(args) -> elements.Path:
    """The checkpoint folder to evaluate, or a CheckpointError that says what to pass."""
    if not args.from_checkpoint:
        raise checkpoints.CheckpointError(
            'The eval_only script needs a checkpoint: pass --run.from_checkpoint with a '
            'checkpoint folder or the logdir of a training run.'
        )
    return checkpoints.resolve(args.from_checkpoint)
