"""A logdir whose replay chunks hold the earlier layout (float32 deter, one-hot stoch) resumes."""

import ml_dtypes
import numpy as np
import pytest
from runhelpers import main, metrics, output

from embodied.core import chunk as chunklib

CLASSES = 4  # agent.dyn.rssm.classes of the debug preset
FLAGS = ('--jax.precompile', 'False', '--run.envs', '1', '--run.log_every', '0')


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


@pytest.mark.slow
def test_a_replay_in_the_old_layout_loads_and_trains(tmp_path):
    first = main(tmp_path, '--run.steps', '120', *FLAGS, timeout=900)
    assert first.returncode == 0, output(first)
    assert 'Replay memory at capacity' in first.stdout
    paths = to_old_layout(tmp_path / 'replay')
    assert paths
    before = {p.name: p.stat().st_size for p in paths}

    second = main(tmp_path, '--run.steps', '200', *FLAGS, timeout=900)
    assert second.returncode == 0, output(second)
    assert f'converting {len(paths)} chunk files to the compact layout' in second.stdout
    for path in paths:
        # Same file, now compact: the replay loaded these steps and wrote nothing twice.
        assert path.stat().st_size < before[path.name]
        with np.load(path) as data:
            assert data['dyn/deter'].dtype == np.uint16 and data['dyn/stoch'].dtype == np.uint8
            assert data['dyn/stoch'].max() < CLASSES
    resumed = [m for m in metrics(tmp_path) if m['step'] > 120]
    assert any('train/loss/dyn' in m for m in resumed), output(second)
    assert any(m.get('replay/items', 0) > 0 for m in resumed)
