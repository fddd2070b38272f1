"""The `train` script: act in the environments and train from replay in one process."""

from .loop import TrainLoop


def train(make_agent, make_replay, make_env, make_stream, make_logger, args):
    """Train until `args.steps` env steps, logging, reporting and saving on clocks (spec 9.2)."""
    agent = make_agent()
    replay = make_replay('replay', 'train')
    logger = make_logger()
    loop = TrainLoop(agent, replay, logger, make_env, make_stream, args)
    checkpoint = loop.restore(replay=replay)
    print(f'Training from step {int(loop.step)} to {int(args.steps)}.')
    try:
        while loop.step < args.steps:
            loop.act()
            if loop.agree(loop.should_report(loop.step)) and len(replay):
                loop.carry_report = loop.report(loop.stream_report, loop.carry_report, 'report')
            if loop.should_log(loop.step):
                loop.log(replay=replay)
            if loop.agree(loop.should_save(loop.step)):
                checkpoint.save()
        # Saving at the end lets the same command with more steps continue from here.
        checkpoint.save()
        loop.log(replay=replay)
    finally:
        loop.close()
    print(f'Finished training at step {int(loop.step)}: {loop.episodes.summary()}.')
