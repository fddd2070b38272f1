"""The `eval_only` script with the real agent on a checkpoint written by `train`."""

import pickle

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
    assert f'Loading agent parameters from {trained / "ckpt"}' in capsys.readouterr().out

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
    (folder / 'done').write_bytes(b'')
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
