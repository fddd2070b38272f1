"""The `train_eval` script: `train` plus evaluation episodes in separate envs."""

import elements

from . import interrupt, outputs, replays
from .loop import Actor, TrainLoop


def train_eval(config: elements.Config, make_agent) -> None:
    """Train like `train`; on every report clock also run `run.eval_eps` evaluation episodes.

    Evaluation episodes act with mode='eval', go to their own replay (folder `eval_replay`) and
    are logged under `eval_episode/*` and `eval_epstats/*`; they do not count as env steps.
    Reports use `consec_report * report_batches` batches of each replay, logged under
    `report/*` (train replay) and `eval/*` (eval replay).
    """
    run = config.run
    with interrupt.Interrupt() as stop:
        agent = make_agent(config)
        replay_train = replays.make_replay(config, 'replay', 'train')
        replay_eval = replays.make_replay(config, 'eval_replay', 'eval')
        logger = outputs.make_logger(config)
        loop = TrainLoop(agent, replay_train, logger, config, stop)
        try:
            loop.learner.add_report('eval', replay_eval, 'eval')
            loop.log_replay('replay_eval', replay_eval)
            evaluator = None
            if run.eval_envs > 0:
                evaluator = Actor(agent, logger, config, run.eval_envs, 'eval', 'eval_episode')
                loop.on_close(evaluator.close)
                evaluator.on_step(lambda tran, _: loop.policy_fps.step())
                evaluator.on_step(replay_eval.add)

            def evaluate():
                if evaluator is None or run.eval_eps <= 0:
                    return
                evaluator.reset()
                evaluator(episodes=run.eval_eps)
                evaluator.log()

            # After the train replay's report: evaluate, then report on the new eval episodes.
            loop.on_report(evaluate)
            loop.on_report(lambda: loop.learner.report('eval'))
            checkpoint = loop.restore(replay_train=replay_train, replay_eval=replay_eval)
            print(f'Training with evaluation from step {int(loop.step)} to {int(run.steps)}.')
            stopped = loop.run(loop.act, checkpoint)
        finally:
            loop.close()
    if stopped:
        print(loop.stopped_line())
        return
    summary = evaluator.episodes.summary() if evaluator else 'no evaluation envs'
    print(
        f'Finished training at step {int(loop.step)}: {loop.episodes.summary()}; '
        f'evaluation: {summary}.'
    )
