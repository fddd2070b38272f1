"""The `train_offline` script: train from another run's replay folder, then evaluate it."""

import pytest
from runhelpers import checkpoint, keys, main, metrics, output

FAST = ('--jax.precompile', 'False')
TIMEOUT = 1200  # seconds per command, for slow shared machines


def snapshot(folder):
    """Every file under `folder` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob('*'))
    }


@pytest.mark.slow
def test_trains_from_a_replay_folder_without_writing_there_then_eval_only(tmp_path):
    # One test, so that parallel workers do not each collect the replay it needs.
    source = tmp_path / 'source'
    result = main(source, '--run.steps', '150', *FAST, timeout=TIMEOUT)
    assert result.returncode == 0, output(result)
    replay = source / 'replay'
    before = snapshot(replay)
    assert any(name.endswith('.npz') for name in before)

    offline = tmp_path / 'offline'
    result = main(
        offline,
        '--script',
        'train_offline',
        '--run.from_replay',
        str(replay),
        '--run.offline_updates',
        '12',
        *FAST,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, output(result)
    assert 'from update 0 to 12' in result.stdout
    assert 'Finished offline training at update 12.' in result.stdout
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
    result = main(
        evaluated,
        '--script',
        'eval_only',
        '--run.from_checkpoint',
        str(offline),
        '--run.steps',
        '110',
        '--run.envs',
        '1',
        *FAST,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, output(result)
    assert f'Loading agent parameters from {offline / "ckpt"}' in result.stdout
    assert [r['episode/length'] for r in metrics(evaluated) if 'episode/length' in r] == [100]
