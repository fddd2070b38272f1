"""The `train_offline` script: train from another run's replay folder, then evaluate it."""

import helpers
from helpers import checkpoint, keys, metrics

from embodied.run import eval_only, train, train_offline


def snapshot(folder):
    """Every file under `folder` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob('*'))
    }


def test_trains_from_a_replay_folder_without_writing_there_then_eval_only(
    tmp_path, make_debug_agent, capsys
):
    source = tmp_path / 'source'
    train.train(helpers.config('--run.steps', '150', logdir=source), make_debug_agent)
    replay = source / 'replay'
    before = snapshot(replay)
    assert any(name.endswith('.npz') for name in before)

    offline = tmp_path / 'offline'
    flags = ('--script', 'train_offline', '--run.from_replay', str(replay))
    config = helpers.config(*flags, '--run.offline_updates', '12', logdir=offline)
    capsys.readouterr()
    train_offline.train_offline(config, make_debug_agent)
    out = capsys.readouterr().out
    assert 'from update 0 to 12' in out
    assert 'Finished offline training at update 12.' in out
    assert snapshot(replay) == before  # read-only: nothing written, moved or deleted
    assert not (offline / 'replay').exists()
    assert checkpoint(offline / 'ckpt', 'step') == 12
    assert int(checkpoint(offline / 'ckpt', 'agent')['counters']['updates']) == 12
    names = keys(offline)
    assert {'train/loss/dyn', 'train/loss/image', 'fps/train', 'replay/items'} <= names
    assert any(name.startswith('report/') for name in names), sorted(names)
    assert not any(name.startswith('episode/') for name in names)
    # The x axis counts updates.
    assert max(r['step'] for r in metrics(offline)) == 12

    evaluated = tmp_path / 'eval'
    flags = ('--script', 'eval_only', '--run.from_checkpoint', str(offline), '--run.envs', '1')
    config = helpers.config(*flags, '--run.steps', '110', logdir=evaluated)
    eval_only.eval_only(config, make_debug_agent)
    assert f'Loading agent parameters from {offline / "ckpt"}' in capsys.readouterr().out
    assert [r['episode/length'] for r in metrics(evaluated) if 'episode/length' in r] == [100]
