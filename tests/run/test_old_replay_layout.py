"""A logdir whose replay chunks hold the earlier layout (float32 deter, one-hot stoch): a run
stops before compiling and names the command that converts them; once converted, it resumes."""

import helpers
import ml_dtypes
import numpy as np

from dreamerv3.tools import upgrade_replay
from embodied.core import chunks as chunklib
from embodied.run import train

CLASSES = 4  # agent.dyn.rssm.classes of the debug preset
FLAGS = ('--run.envs', '1', '--run.log_every', '0')


def to_old_layout(directory):
    """Rewrite every chunk file the way the earlier version stored the latents."""
    paths = sorted(directory.glob('*.npz'))
    for path in paths:
        chunk = chunklib.Chunk.load(path)
        bits = chunk.data['dyn/deter']
        assert bits.dtype == np.uint16 and chunk.data['dyn/stoch'].dtype == np.uint8
        chunk.data['dyn/deter'] = bits.view(ml_dtypes.bfloat16).astype(np.float32)
        chunk.data['dyn/stoch'] = np.eye(CLASSES, dtype=np.float32)[chunk.data['dyn/stoch']]
        chunk.save(directory)
    return paths


def test_old_chunks_stop_the_run_until_converted_by_the_command(tmp_path, make_debug_agent, capsys):
    train.train(helpers.config('--run.steps', '120', *FLAGS, logdir=tmp_path), make_debug_agent)
    paths = to_old_layout(tmp_path / 'replay')
    assert paths
    before = {p.name: p.stat().st_size for p in paths}
    capsys.readouterr()

    # One line with the command, before anything is built, and nothing converted by itself.
    assert helpers.main_status(tmp_path, '--run.steps', '200', *FLAGS) == 2
    err = capsys.readouterr().err
    command = f'python -m dreamerv3.tools.upgrade_replay {tmp_path / "replay"}'
    assert command in err and err.count('\n') == 1, err
    assert {p.name: p.stat().st_size for p in paths} == before

    assert upgrade_replay.main([str(tmp_path / 'replay')]) == 0
    assert f'converting {len(paths)} chunk files to the compact layout' in capsys.readouterr().out
    for path in paths:
        # Same file, now compact.
        assert path.stat().st_size < before[path.name]
        with np.load(path) as data:
            assert data['dyn/deter'].dtype == np.uint16 and data['dyn/stoch'].dtype == np.uint8
            assert data['dyn/stoch'].max() < CLASSES
    assert upgrade_replay.main([str(tmp_path / 'replay')]) == 0
    assert 'already has the compact layout' in capsys.readouterr().out

    config = helpers.config('--run.steps', '200', *FLAGS, logdir=tmp_path)
    train.train(config, make_debug_agent)
    resumed = [m for m in helpers.metrics(tmp_path) if m['step'] > 120]
    assert any('train/loss/dyn' in m for m in resumed)
    assert any(m.get('replay/items', 0) > 0 for m in resumed)


def test_the_command_rejects_a_folder_without_chunks(tmp_path, capsys):
    assert upgrade_replay.main([str(tmp_path)]) == 2
    assert 'no chunk files' in capsys.readouterr().err
