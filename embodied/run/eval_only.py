"""The `eval_only` script: run a trained policy from a checkpoint without learning."""

import elements

from . import checkpoints, interrupt, outputs, videos
from .loop import Actor, Loop


def eval_only(config: elements.Config, make_agent) -> None:
    """Act with mode='eval' until `run.steps` env steps, logging episodes and saving videos.

    `run.from_checkpoint` names a checkpoint folder, its ckpt directory or the logdir of a run
    (then its latest checkpoint is used). The first episode of every env is written as an mp4
    per image observation into `<logdir>/videos/`. No replay, no training, no checkpoint.
    """
    # Fail before building the agent (which compiles) when there is nothing to load.
    folder = check(config)
    run = config.run
    logdir = elements.Path(config.logdir)
    with interrupt.Interrupt() as stop:
        agent = make_agent(config)
        logger = outputs.make_logger(config)
        loop = Loop(agent, logger, config, run.steps, 'env steps', stop)
        try:
            actor = Actor(agent, logger, config, run.envs, 'eval')
            loop.on_close(actor.close)
            fps = elements.FPS()
            actor.on_step(lambda tran, _: loop.step.increment())
            actor.on_step(lambda tran, _: fps.step())
            recorder = videos.EpisodeVideos(logdir / 'videos', config.logger.fps)
            actor.on_step(recorder)
            loop.on_log(actor.log)
            loop.on_log(lambda: logger.add({'fps/policy': fps.result()}))
            loop.status = lambda: (None, actor.episodes.mean_score())
            checkpoints.load_agent(agent, folder, run.from_checkpoint_regex)
            print(f'Evaluating {folder} for {int(run.steps)} steps.')
            actor.reset()
            stopped = loop.run(lambda: actor(steps=10))
        finally:
            loop.close()
    ending = 'Stopped by ' + stop.signame if stopped else 'Finished evaluation'
    print(
        f'{ending} at step {int(loop.step)}: {actor.episodes.summary()}; '
        f'{len(recorder.paths)} videos in {logdir / "videos"}.'
    )


def check(config: elements.Config) -> elements.Path:
    """The checkpoint folder to evaluate, or a CheckpointError that says what to pass."""
    if not config.run.from_checkpoint:
        raise checkpoints.CheckpointError(
            'The eval_only script needs a checkpoint: pass --run.from_checkpoint with a '
            'checkpoint folder or the logdir of a training run.'
        )
    return checkpoints.resolve(config.run.from_checkpoint)
