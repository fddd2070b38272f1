"""The `eval_only` script with the real agent on a checkpoint written by `train`."""

import pickle
import signal

import av
import helpers
import numpy as np
import pytest

from embodied.run import checkpoints, eval_only, train


def test_evaluates_a_train_checkpoint(tmp_path, make_debug_agent, capsys):
    trained = tmp_path / 'train'
    train.train(helpers.config('--run.steps', '20', logdir=trained), make_debug_agent)

    logdir = tmp_path / 'eval'
    # One env: a dummy episode ends after 101 transitions.
    flags = ('--script', 'eval_only', '--run.from_checkpoint', str(trained), '--run.envs', '1')
    config = helpers.config(*flags, '--run.steps', '110', logdir=logdir)
    capsys.readouterr()
    eval_only.eval_only(config, make_debug_agent)
    out = capsys.readouterr().out
    assert f'Loading agent parameters from {trained / "ckpt"}' in out
    assert 'Evaluating' in out and 'for 110 env steps.' in out
    # The debug task pays a reward of 1 per step: 100 in its one finished episode.
    assert 'Episode scores: mean 100.00, std 0.00, min 100.00, max 100.00, count 1.' in out

    # Episodes of the loaded policy are logged; nothing is trained or stored.
    names = helpers.keys(logdir)
    assert {'episode/score', 'episode/length', 'fps/policy'} <= names
    lengths = [r['episode/length'] for r in helpers.metrics(logdir) if 'episode/length' in r]
    assert lengths == [100]
    assert helpers.metrics(logdir, 'scores.jsonl')
    assert not any(name.startswith('train/') for name in names)
    assert not (logdir / 'ckpt').exists() and not (logdir / 'replay').exists()

    # The first episode is a video of its 101 image observations.
    paths = sorted((logdir / 'videos').glob('*.mp4'))
    assert [p.name for p in paths] == ['env0_ep0_image.mp4']
    with av.open(str(paths[0])) as container:
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    assert len(frames) == 101
    assert frames[0].shape == (64, 64, 3)


def test_runs_eval_eps_episodes_and_builds_only_the_policy(tmp_path, make_debug_agent, capsys):
    trained = tmp_path / 'train'
    train.train(helpers.config('--run.steps', '20', logdir=trained), make_debug_agent)
    built = []

    def make_agent(config):
        built.append(config)
        return make_debug_agent(config)

    logdir = tmp_path / 'eval'
    flags = ('--script', 'eval_only', '--run.from_checkpoint', str(trained), '--run.envs', '2')
    config = helpers.config(*flags, '--run.eval_eps', '3', logdir=logdir)
    capsys.readouterr()
    eval_only.eval_only(config, make_agent)
    out = capsys.readouterr().out

    # Nothing but the policy is compiled ahead of time.
    assert [(c.jax.precompile, c.jax.precompile_report, c.jax.enable_policy) for c in built] == [
        (False, False, True)
    ]
    assert 'for 3 episodes.' in out
    # Two envs end their episodes (101 transitions) together: the loop stops once the second
    # pair has ended, the 4th episode, after 2 x 2 x 101 steps.
    lengths = [r['episode/length'] for r in helpers.metrics(logdir) if 'episode/length' in r]
    assert lengths == [100] * 4
    assert 'Finished evaluation at step 404' in out
    assert 'Episode scores: mean 100.00, std 0.00, min 100.00, max 100.00, count 4.' in out
    assert not (logdir / 'ckpt').exists() and not (logdir / 'replay').exists()


def test_steps_count_only_when_the_flag_is_given():
    assert helpers.config('--script', 'eval_only').run.steps == 0
    assert helpers.config('--script', 'eval_only', '--run.steps', '500').run.steps == 500
    # Presets give training budgets, which are not evaluation lengths.
    atari = helpers.config('--script', 'eval_only', presets=('atari', 'debug'))
    assert atari.run.steps == 0
    assert helpers.config('--script', 'train').run.steps == helpers.config().run.steps > 0


def test_nothing_to_run_is_a_clear_error(tmp_path, capsys):
    flags = ('--script', 'eval_only', '--run.from_checkpoint', str(tmp_path), '--run.eval_eps', '0')
    assert helpers.main_status(tmp_path / 'a', *flags) == 2
    err = capsys.readouterr().err
    assert 'nothing to run' in err and '--run.eval_eps N' in err
    assert not (tmp_path / 'a').exists()


def transition(reward, first=False, last=False):
    return {'reward': reward, 'is_first': first, 'is_last': last}


def test_scores_summary_gives_mean_and_spread():
    scores = eval_only.EpisodeScores()
    assert scores.summary() == 'Episode scores: no episode finished.'
    for worker, rewards in [(0, [0, 1, 2]), (1, [0, 5, 5]), (0, [0, 3, 4])]:
        for i, reward in enumerate(rewards):
            scores(transition(reward, first=i == 0, last=i == len(rewards) - 1), worker)
    assert scores.scores == [3.0, 10.0, 7.0] and int(scores.finished) == 3
    assert scores.summary() == (
        'Episode scores: mean 6.67, std 2.87, min 3.00, max 10.00, count 3.'
    )


def test_a_signal_stops_after_the_running_episodes(capsys):
    scores = eval_only.EpisodeScores()
    stop = eval_only.EpisodeStop(scores)
    for worker in (0, 1):
        scores(transition(0, first=True), worker)
    stop.signal.request(signal.SIGINT)
    out = capsys.readouterr().out
    assert 'Received SIGINT: stopping after the current episode(s).' in out
    assert 'checkpoint' not in out and 'update' not in out
    assert not stop.requested
    # Env 0 ends its episode and starts another; env 1 is still inside the first.
    scores(transition(1, last=True), 0)
    scores(transition(0, first=True), 0)
    assert not stop.requested
    scores(transition(1, last=True), 1)
    assert stop.requested and stop.signame == 'SIGINT'


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    result = helpers.cli(tmp_path / 'a', '--script', 'eval_only')
    assert result.returncode == 2, helpers.output(result)
    assert 'needs a checkpoint' in result.stderr and 'Traceback' not in result.stderr
    flags = ('--script', 'eval_only', '--run.from_checkpoint', str(tmp_path))
    assert helpers.main_status(tmp_path / 'b', *flags) == 2
    assert 'No complete checkpoint found' in capsys.readouterr().err
    assert not (tmp_path / 'b').exists()


def fake_checkpoint(folder, agent):
    """A complete checkpoint folder holding only `agent.pkl`."""
    folder.mkdir(parents=True)
    (folder / 'agent.pkl').write_bytes(pickle.dumps(agent))
    (folder / 'done').write_text(checkpoints.OLDER_FORMAT)
    return folder


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path, make_debug_agent):
    folder = fake_checkpoint(
        tmp_path / 'other',
        {
            'params': {'dyn/other/kernel': np.zeros((3, 3), np.float32)},
            'counters': {'updates': 0, 'batches': 0, 'actions': 0},
        },
    )
    flags = ('--script', 'eval_only', '--run.from_checkpoint', str(folder), '--run.steps', '10')
    config = helpers.config(*flags, logdir=tmp_path / 'eval')
    with pytest.raises(checkpoints.CheckpointError, match='does not fit this model'):
        eval_only.eval_only(config, make_debug_agent)


def test_checkpoint_of_a_random_agent_is_a_clear_error(tmp_path):
    class Agent:
        def load(self, data):
            return data['params']  # what the JAX agent reads first

    folder = fake_checkpoint(tmp_path / 'random', None)  # what a random agent saves
    with pytest.raises(checkpoints.CheckpointError, match='another kind of agent'):
        checkpoints.load_agent(Agent(), folder)
