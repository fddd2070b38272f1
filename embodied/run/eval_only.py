"""The `eval_only` script: run a trained policy from a checkpoint without learning."""

import collections

import elements
import numpy as np

from ..core.base import SetupError
from . import checkpoints, interrupt, outputs, videos
from .loop import Actor, Loop

# Only the policy runs: nothing else is compiled ahead of time, and the agent must act.
AGENT_SETTINGS = {
    'jax.precompile': False,
    'jax.precompile_report': False,
    'jax.enable_policy': True,
}


def eval_only(config: elements.Config, make_agent) -> None:
    """Act with mode='eval' for `run.eval_eps` episodes, or for `run.steps` env steps when that
    is positive, logging episodes and saving videos; print the spread of the episode scores.

    The command line sets `run.steps` to 0 for this script unless --run.steps is given, so by
    default it counts episodes. `run.from_checkpoint` names a checkpoint folder, its ckpt
    directory or the logdir of a run (then its latest checkpoint is used). The first episode of
    every env is written as an mp4 per image observation into `<logdir>/videos/`. Only the
    policy is compiled; no replay, no training, no checkpoint. The first Ctrl-C (or SIGTERM)
    lets the episodes that are running end, then stops; a second one quits at once.
    """
    # Fail before building the agent (which compiles) when there is nothing to load.
    folder = check(config)
    run = config.run
    by_steps = run.steps > 0
    total, unit = (int(run.steps), 'env steps') if by_steps else (int(run.eval_eps), 'episodes')
    logdir = elements.Path(config.logdir)
    scores = EpisodeScores()
    stop = EpisodeStop(scores)
    with stop:
        agent = make_agent(config.update(AGENT_SETTINGS))
        logger = outputs.make_logger(config)
        loop = Loop(agent, logger, config, total, unit, stop)
        try:
            actor = Actor(agent, logger, config, run.envs, 'eval')
            loop.on_close(actor.close)
            fps = elements.FPS()
            actor.on_step(lambda tran, _: logger.step.increment())
            actor.on_step(lambda tran, _: fps.step())
            actor.on_step(scores)
            recorder = videos.EpisodeVideos(logdir / 'videos', config.logger.fps)
            actor.on_step(recorder)
            if not by_steps:
                loop.step = scores.finished  # the loop counts finished episodes
            loop.on_log(actor.log)
            loop.on_log(lambda: logger.add({'fps/policy': fps.result()}))
            loop.status = lambda: (None, actor.episodes.mean_score())
            checkpoints.load_agent(agent, folder, run.from_checkpoint_regex)
            print(f'Evaluating {folder} for {total} {unit}.')
            actor.reset()
            # One driver step per call, so the loop stops right after the last episode ends.
            loop.run(lambda: actor(steps=run.envs))
        finally:
            loop.close()
    signal = stop.signal.signame
    ending = f'Stopped by {signal}' if signal else 'Finished evaluation'
    print(
        f'{ending} at step {int(logger.step)}; {len(recorder.paths)} videos in {logdir / "videos"}.'
    )
    print(scores.summary())


def check(config: elements.Config) -> elements.Path:
    """The checkpoint folder to evaluate, or an error that says what to pass."""
    if not config.run.from_checkpoint:
        raise checkpoints.CheckpointError(
            'The eval_only script needs a checkpoint: pass --run.from_checkpoint with a '
            'checkpoint folder or the logdir of a training run.'
        )
    if config.run.steps <= 0 and config.run.eval_eps <= 0:
        raise SetupError(
            f'The eval_only script has nothing to run: run.eval_eps is {config.run.eval_eps}. '
            'Pass --run.eval_eps N for N episodes, or --run.steps N for N env steps.'
        )
    return checkpoints.resolve(config.run.from_checkpoint)


class EpisodeScores:
    """Driver callback that keeps the score of every finished episode, the episodes each env
    has ended and which envs are inside an episode."""

    def __init__(self):
        self.scores = []
        self.finished = elements.Counter()
        self.ends = collections.Counter()
        self.running = set()
        self._sums = collections.defaultdict(float)

    def __call__(self, tran, worker) -> None:
        """Add one transition of env `worker`."""
        if tran['is_first']:
            self._sums[worker] = 0.0
        self._sums[worker] += float(tran['reward'])
        if tran['is_last']:
            self.scores.append(self._sums.pop(worker))
            self.running.discard(worker)
            self.ends[worker] += 1
            self.finished.increment()
        else:
            self.running.add(worker)

    def summary(self) -> str:
        """One line with the mean, std, min, max and count of the episode scores."""
        if not self.scores:
            return 'Episode scores: no episode finished.'
        s = np.asarray(self.scores)
        return (
            f'Episode scores: mean {s.mean():.2f}, std {s.std():.2f}, min {s.min():.2f}, '
            f'max {s.max():.2f}, count {len(s)}.'
        )


class EpisodeStop:
    """The loop's stop: after the first SIGINT or SIGTERM, the episodes running then end first.

    `requested` turns true once each env that was inside an episode at the signal has finished
    it. The signal restores the default handlers, so a second one quits at once.
    """

    def __init__(self, scores: EpisodeScores):
        self.scores = scores
        self.signal = interrupt.Interrupt(callback=self._received, announce=False)
        self.waiting = {}  # env -> the episodes it had ended when the signal arrived

    @property
    def requested(self) -> bool:
        """Whether a signal arrived and the episodes that were running then have ended."""
        ends = self.scores.ends
        return self.signal.requested and all(ends[w] > n for w, n in self.waiting.items())

    @property
    def signame(self) -> str:
        """The name of the signal that asked to stop ('' when none did)."""
        return self.signal.signame

    def __enter__(self) -> 'EpisodeStop':
        self.signal.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.signal.__exit__(*exc)

    def _received(self, signum) -> None:
        self.waiting = {w: self.scores.ends[w] for w in self.scores.running}
        key = 'Ctrl-C' if self.signal.signame == 'SIGINT' else f'{self.signal.signame} or Ctrl-C'
        print(
            f'Received {self.signal.signame}: stopping after the current episode(s). Send {key} '
            'again to quit at once.',
            flush=True,
        )
