"""The `train_eval` script: `train` plus evaluation episodes in separate envs (spec 9.3)."""

import elements

from . import episodes
from .loop import TrainLoop, make_driver


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
    loop = TrainLoop(agent, replay_train, logger, make_env, make_stream, args)

    eval_epstats = elements.Agg()
    stats_eval = episodes.EpisodeStats(logger, eval_epstats, prefix='eval_episode')
    driver_eval = None
    if args.eval_envs > 0:
        driver_eval = make_driver(make_env, args.eval_envs, args)
        driver_eval.on_step(lambda tran, _: loop.policy_fps.step())
        driver_eval.on_step(replay_eval.add)
        driver_eval.on_step(stats_eval)
    stream_eval = iter(agent.stream(make_stream(replay_eval, 'eval')))
    carry_eval = agent.init_report(args.batch_size)

    def evaluate():
        if driver_eval is None or args.eval_eps <= 0:
            return
        driver_eval.reset(agent.init_policy)
        driver_eval(lambda *a: agent.policy(*a, mode='eval'), episodes=args.eval_eps)
        logger.add(eval_epstats.result(), prefix='eval_epstats')

    checkpoint = loop.restore(replay_train=replay_train, replay_eval=replay_eval)
    replays = dict(replay=replay_train, replay_eval=replay_eval)
    print(f'Training with evaluation from step {int(loop.step)} to {int(args.steps)}.')
    try:
        while loop.step < args.steps:
            if loop.agree(loop.should_report(loop.step)):
                evaluate()
                if len(replay_train):
                    loop.carry_report = loop.report(loop.stream_report, loop.carry_report, 'report')
                if len(replay_eval):
                    carry_eval = loop.report(stream_eval, carry_eval, 'eval')
            loop.act()
            if loop.should_log(loop.step):
                loop.log(**replays)
            if loop.agree(loop.should_save(loop.step)):
                checkpoint.save()
        # Saving at the end lets the same command with more steps continue from here.
        checkpoint.save()
        loop.log(**replays)
    finally:
        loop.close()
        if driver_eval is not None:
            driver_eval.close()
    print(
        f'Finished training at step {int(loop.step)}: {loop.episodes.summary()}; '
        f'evaluation: {stats_eval.summary()}.'
    )
