"""The `train_eval` script: evaluation episodes, reports on both replays, checkpoint, resume."""

import time

import helpers
from helpers import checkpoint, cli, keys, metrics, output

from embodied.run import train_eval


def run_in_process(logdir, fake_agent, *flags):
    config = helpers.config(*flags, logdir=logdir)
    agent = fake_agent(config)
    train_eval.train_eval(config, lambda config: agent)
    return agent


FLAGS = (
    '--run.steps',
    '60',
    '--run.envs',
    '2',
    '--run.eval_envs',
    '2',
    '--run.eval_eps',
    '1',
    '--run.log_every',
    '0',
    '--run.save_every',
    '0',
    '--run.report_every',
    '1',
    '--consec_report',
    '2',
    '--run.report_batches',
    '3',
    '--batch_size',
    '2',
)


def test_eval_episodes_reports_and_step_counting(tmp_path, fake_agent, always_clock):
    agent = run_in_process(tmp_path, fake_agent, *FLAGS)
    # The report clock fires on every loop iteration (10 env steps); each one runs at least
    # one eval episode (101 transitions) with mode='eval'.
    assert agent.modes['eval'] >= 6 * 101
    assert agent.modes['train'] >= 60
    # consec_report * report_batches = 6 report calls per report and replay, as in train; the
    # train replay is still empty at the first reports, the eval replay never is.
    assert agent.reports['eval'] == 6 * 6
    assert agent.reports['report'] > 0 and agent.reports['report'] % 6 == 0
    assert agent.reports['report'] < agent.reports['eval']
    assert agent.trains > 0
    # Eval steps do not count as env steps: 60 steps are reached in chunks of 10.
    assert checkpoint(tmp_path / 'ckpt', 'step') == 60
    names = keys(tmp_path)
    assert {'eval_episode/score', 'eval_episode/length', 'eval_epstats/reward_rate'} <= names
    assert {'report/value', 'eval/value', 'train/loss'} <= names
    # Eval episodes are logged apart from train episodes; a dummy episode has 100 env steps,
    # i.e. 101 transitions, and its length counts env steps.
    lengths = [r['eval_episode/length'] for r in metrics(tmp_path) if 'eval_episode/length' in r]
    assert set(lengths) == {100}
    # Replay chunks are written by background threads of the replay.
    deadline = time.monotonic() + 30
    while not list((tmp_path / 'eval_replay').glob('*.npz')):
        assert time.monotonic() < deadline, 'no eval replay chunk was written'
        time.sleep(0.05)


def test_resumes_with_both_replays(tmp_path, fake_agent, always_clock, capsys):
    run_in_process(tmp_path, fake_agent, *FLAGS)
    step = checkpoint(tmp_path / 'ckpt', 'step')
    trains = checkpoint(tmp_path / 'ckpt', 'agent')['trains']
    capsys.readouterr()
    flags = list(FLAGS)
    flags[1] = '100'
    agent = run_in_process(tmp_path, fake_agent, *flags)
    assert f'from step {step} to 100' in capsys.readouterr().out
    assert agent.trains > trains
    assert checkpoint(tmp_path / 'ckpt', 'step') == 100


def test_command_line_writes_what_a_user_expects_and_resumes(tmp_path):
    # One test, so that parallel workers do not each repeat the first run.
    flags = ('--script', 'train_eval', '--random_agent', 'True', '--run.eval_envs', '2')
    result = cli(
        tmp_path, *flags, '--run.steps', '12000', '--run.report_every', '1', '--run.log_every', '1'
    )
    assert result.returncode == 0, output(result)
    assert 'Finished training at step' in result.stdout
    assert (tmp_path / 'config.yaml').exists()
    assert (tmp_path / 'scores.jsonl').read_text().strip()
    assert list((tmp_path / 'scope').iterdir())
    names = keys(tmp_path)
    for name in (
        'episode/score',
        'episode/length',
        'eval_episode/score',
        'fps/policy',
        'replay/items',
        'replay_eval/items',
    ):
        assert name in names, sorted(names)
    folder = tmp_path / 'ckpt'
    assert {'step', 'agent', 'replay_train', 'replay_eval'} <= {
        p.stem for p in (folder / (folder / 'latest').read_text().strip()).glob('*.pkl')
    }
    assert list((tmp_path / 'replay').glob('*.npz'))
    assert list((tmp_path / 'eval_replay').glob('*.npz'))

    step = checkpoint(tmp_path / 'ckpt', 'step')
    result = cli(tmp_path, *flags, '--run.steps', str(step + 100))
    assert result.returncode == 0, output(result)
    assert f'from step {step} to {step + 100}' in result.stdout
    assert checkpoint(tmp_path / 'ckpt', 'step') >= step + 100
