"""The `eval_only` script with the real agent on a checkpoint written by `train`."""

import pickle

import av
import numpy as np
import pytest
from runhelpers import keys, main, metrics, output

from embodied.run import checkpoints

# Building the agent without precompiling compiles only what a run uses (here the policy).
FAST = ('--jax.precompile', 'False', '--jax.profiler', 'False')


@pytest.mark.slow
def test_evaluates_a_train_checkpoint(tmp_path):
    # One test, so that parallel workers do not each train the checkpoint it needs.
    trained = tmp_path / 'train'
    result = main(trained, '--run.steps', '20', *FAST)
    assert result.returncode == 0, output(result)

    logdir = tmp_path / 'eval'
    # One env: a dummy episode ends after 101 transitions.
    result = main(
        logdir,
        '--script',
        'eval_only',
        '--run.from_checkpoint',
        str(trained),
        '--run.envs',
        '1',
        '--run.steps',
        '110',
        *FAST,
    )
    assert result.returncode == 0, output(result)
    assert f'Loading agent parameters from {trained / "ckpt"}' in result.stdout

    # Episodes of the loaded policy are logged; nothing is trained or stored.
    names = keys(logdir)
    assert {'episode/score', 'episode/length', 'fps/policy'} <= names
    assert [r['episode/length'] for r in metrics(logdir) if 'episode/length' in r] == [100]
    assert metrics(logdir, 'scores.jsonl')
    assert not any(name.startswith('train/') for name in names)
    assert not (logdir / 'ckpt').exists() and not (logdir / 'replay').exists()

    # The first episode is a video of its 101 image observations.
    paths = sorted((logdir / 'videos').glob('*.mp4'))
    assert [p.name for p in paths] == ['env0_ep0_image.mp4']
    with av.open(str(paths[0])) as container:
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    assert len(frames) == 101
    assert frames[0].shape == (64, 64, 3)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    result = main(tmp_path / 'a', '--script', 'eval_only', *FAST)
    assert result.returncode == 2, output(result)
    assert 'needs a checkpoint' in result.stderr and 'Traceback' not in result.stderr
    result = main(
        tmp_path / 'b', '--script', 'eval_only', '--run.from_checkpoint', str(tmp_path), *FAST
    )
    assert result.returncode == 2, output(result)
    assert 'No complete checkpoint found' in result.stderr
    assert 'Traceback' not in result.stderr


def fake_checkpoint(folder, agent):
    """A complete checkpoint folder holding only `agent.pkl`."""
    folder.mkdir(parents=True)
    (folder / 'agent.pkl').write_bytes(pickle.dumps(agent))
    (folder / 'done').write_bytes(b'')
    return folder


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    folder = fake_checkpoint(
        tmp_path / 'other',
        {
            'params': {'dyn/other/kernel': np.zeros((3, 3), np.float32)},
            'counters': {'updates': 0, 'batches': 0, 'actions': 0},
        },
    )
    result = main(
        tmp_path / 'eval',
        '--script',
        'eval_only',
        '--run.from_checkpoint',
        str(folder),
        '--run.steps',
        '10',
        *FAST,
    )
    assert result.returncode == 2, output(result)
    assert 'Traceback' not in result.stderr
    assert 'does not fit this model' in result.stderr, output(result)


def test_checkpoint_of_a_random_agent_is_a_clear_error(tmp_path):
    class Agent:
        def load(self, data):
            return data['params']  # what the JAX agent reads first

    folder = fake_checkpoint(tmp_path / 'random', None)  # what a random agent saves
    with pytest.raises(checkpoints.CheckpointError, match='another kind of agent'):
        checkpoints.load_agent(Agent(), folder)
