"""The `train` script: act in the environments and train from replay in one process."""

from . import interrupt
from .loop import TrainLoop


def train(make_agent, make_replay, make_env, make_stream, make_logger, args):
    """Train until `args.steps` env steps, logging, reporting and saving on clocks.

    SIGINT or SIGTERM stops after the current update with a final checkpoint (exit status 0).
    """
    with interrupt.Interrupt() as stop:
        agent = make_agent()
        replay = make_replay('replay', 'train')
        logger = make_logger()
        loop = TrainLoop(agent, replay, logger, make_env, make_stream, args, stop)
        try:
            checkpoint = loop.restore(replay=replay)
            print(f'Training from step {int(loop.step)} to {int(args.steps)}.')
            stopped = loop.run(loop.act, checkpoint)
        finally:
            loop.close()
    if stopped:
        print(loop.stopped_line())
    else:
        print(f'Finished training at step {int(loop.step)}: {loop.episodes.summary()}.')
