"""The `train` script: act in the environments and train from replay in one process."""

import elements

from . import interrupt, outputs, replays
from .loop import TrainLoop


def train(config: elements.Config, make_agent) -> None:
    """Train until `run.steps` env steps, logging, reporting and saving on clocks.

    `make_agent(config)` builds the agent. SIGINT or SIGTERM stops after the current update
    with a final checkpoint (exit status 0).
    """
    with interrupt.Interrupt() as stop:
        agent = make_agent(config)
        replay = replays.make_replay(config, 'replay', 'train')
        logger = outputs.make_logger(config)
        loop = TrainLoop(agent, replay, logger, config, stop)
        try:
            checkpoint = loop.restore(replay=replay)
            print(f'Training from step {int(loop.step)} to {int(config.run.steps)}.')
            stopped = loop.run(loop.act, checkpoint)
        finally:
            loop.close()
    if stopped:
        print(loop.stopped_line())
    else:
        print(f'Finished training at step {int(loop.step)}: {loop.episodes.summary()}.')
