"""The `train_offline` script: train from the replay folder of an earlier run, without envs."""

import elements

from ..core import base
from . import interrupt, outputs, replays
from .loop import Learner, Loop, restore


def train_offline(config: elements.Config, make_agent) -> None:
    """Run `run.offline_updates` updates on the chunks in `run.from_replay`, never writing there.

    The replay lives in memory only; the checkpoint in `<logdir>/ckpt` holds the agent and the
    update count, so running the same command again continues, and `eval_only` can evaluate
    it. Reports run on the same replay. The step counter (and the metrics' x axis) counts
    updates. SIGINT or SIGTERM stops after the current update with a final checkpoint.
    """
    source = check(config)
    with interrupt.Interrupt() as stop:
        agent = make_agent(config)
        # No folder: the replay writes nothing, chunks are only read from the source.
        replay = replays.make_replay(config, None, 'train')
        replay.load(directory=source)
        if not len(replay):
            raise base.SetupError(
                f'The replay folder {source} holds no complete item of '
                f'{replay.length} steps to train on; pass the replay folder of a run that '
                'collected data (e.g. --run.from_replay <logdir>/replay).'
            )
        logger = outputs.make_logger(config, unit='updates')
        # The replay is full from the start, so the first report is a baseline at update 0.
        total = config.run.offline_updates
        loop = Loop(agent, logger, config, total, 'updates', stop, report_first=True)
        try:
            learner = Learner(agent, replay, logger, config)
            loop.on_close(learner.close)
            learner.add_report('report', replay)
            loop.on_report(lambda: learner.report('report'))
            loop.on_log(learner.log)
            loop.on_log(lambda: logger.add(replay.stats(), prefix='replay'))
            loop.status = lambda: (learner.updates, None)

            def update():
                try:
                    learner.update()
                except ValueError as e:
                    if learner.updates:
                        raise
                    raise base.SetupError(
                        f'The replay in {source} does not fit this agent ({e}). Train with '
                        "the config of the run that wrote it (see that run's config.yaml)."
                    ) from e
                loop.step.increment()

            checkpoint = restore(loop)
            print(
                f'Training offline on {len(replay)} replay items from {source}, '
                f'from update {int(loop.step)} to {int(total)}.'
            )
            stopped = loop.run(update, checkpoint)
        finally:
            loop.close()
    if stopped:
        print(loop.stopped_line())
    else:
        print(f'Finished offline training at update {int(loop.step)}.')


def check(config: elements.Config) -> elements.Path:
    """The replay folder to read, or a SetupError that says what to pass."""
    if not config.run.from_replay:
        raise base.SetupError(
            'The train_offline script needs a replay folder: pass --run.from_replay '
            '<logdir of an earlier run>/replay.'
        )
    folder = elements.Path(config.run.from_replay)
    if not folder.exists() or not list(folder.glob('*.npz')):
        raise base.SetupError(
            f"No replay chunks (*.npz) in '{folder}'. Pass the replay folder of an earlier "
            'run, e.g. --run.from_replay ~/logdir/run/replay.'
        )
    return folder
