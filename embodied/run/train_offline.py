"""The `train_offline` script: train from the replay folder of an earlier run, without envs."""

import elements

from ..core import base
from . import interrupt
from .loop import Learner, Loop, restore


def train_offline(make_agent, make_replay, make_stream, make_logger, args):
    """Run `args.offline_updates` updates on the chunks in `args.from_replay`, never writing there.

    The replay lives in memory only; the checkpoint in `<logdir>/ckpt` holds the agent and the
    update count, so running the same command again continues, and `eval_only` can evaluate
    it. Reports run on the same replay. The step counter (and the metrics' x axis) counts
    updates. SIGINT or SIGTERM stops after the current update with a final checkpoint.
    """
    source = check(args)
    with interrupt.Interrupt() as stop:
        agent = make_agent()
        # No folder: the replay writes nothing, chunks are only read from the source.
        replay = make_replay(None, 'train')
        replay.load(directory=source)
        if not len(replay):
            raise base.SetupError(
                f'The replay folder {source} holds no complete item of '
                f'{replay.length} steps to train on; pass the replay folder of a run that '
                'collected data (e.g. --run.from_replay <logdir>/replay).'
            )
        logger = make_logger()
        # The replay is full from the start, so the first report is a baseline at update 0.
        loop = Loop(agent, logger, args, args.offline_updates, 'updates', stop, report_first=True)
        try:
            learner = Learner(agent, replay, logger, make_stream, args)
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
                f'from update {int(loop.step)} to {int(args.offline_updates)}.'
            )
            stopped = loop.run(update, checkpoint)
        finally:
            loop.close()
    if stopped:
        print(loop.stopped_line())
    else:
        print(f'Finished offline training at update {int(loop.step)}.')


def check(args) -> elements.Path:
    """The replay folder to read, or a SetupError that says what to pass."""
    if not args.from_replay:
        raise base.SetupError(
            'The train_offline script needs a replay folder: pass --run.from_replay '
            '<logdir of an earlier run>/replay.'
        )
    folder = elements.Path(args.from_replay)
    if not folder.exists() or not list(folder.glob('*.npz')):
        raise base.SetupError(
            f"No replay chunks (*.npz) in '{folder}'. Pass the replay folder of an earlier "
            'run, e.g. --run.from_replay ~/logdir/run/replay.'
        )
    return folder
