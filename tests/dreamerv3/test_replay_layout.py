"""The compact replay layout of the latents and the conversion of chunks in the earlier layout."""

import elements
import ml_dtypes
import numpy as np
import pytest

from dreamerv3 import replay_layout as layout
from dreamerv3.tools import upgrade_replay
from embodied.core import chunks as chunklib
from embodied.core.replay import Replay

S = elements.Space
D, SV, V = 64, 2, 4


def test_dtypes():
    assert layout.storage_dtype('bfloat16') == np.uint16
    assert layout.storage_dtype('float32') == np.float32
    assert layout.storage_dtype(np.float16) == np.float16
    assert [layout.index_dtype(n) for n in (4, 256, 257, 65536, 65537)] == [
        np.uint8,
        np.uint8,
        np.uint16,
        np.uint16,
        np.uint32,
    ]
    with pytest.raises(ValueError, match='float64'):
        layout.storage_dtype('float64')


def test_compact_spaces():
    deter = layout.compact_space('dyn/deter', S(np.float32, 4096), 'bfloat16')
    stoch = layout.compact_space('dyn/stoch', S(np.float32, (32, 64)), 'bfloat16')
    assert (deter.dtype, deter.shape) == (np.uint16, (4096,))
    assert (stoch.dtype, stoch.shape, stoch.low.max(), stoch.high.min()) == (np.uint8, (32,), 0, 64)
    assert layout.compact_space('dyn/deter', S(np.float32, 3), 'float32').dtype == np.float32


def old_latents(length, seed=0):
    """Latents as the earlier layout stored them: float32 deter, float32 one-hot stoch."""
    rng = np.random.default_rng(seed)
    deter = rng.normal(size=(length, D)).astype(ml_dtypes.bfloat16).astype(np.float32)
    index = rng.integers(0, V, (length, SV))
    return {'dyn/deter': deter, 'dyn/stoch': np.eye(V, dtype=np.float32)[index]}, index


def test_compact_arrays_are_lossless():
    old, index = old_latents(10)
    stoch = layout.compact_array('dyn/stoch', old['dyn/stoch'], 'bfloat16')
    assert stoch.dtype == np.uint8
    np.testing.assert_array_equal(stoch, index)
    deter = layout.compact_array('dyn/deter', old['dyn/deter'], 'bfloat16')
    assert deter.dtype == np.uint16
    np.testing.assert_array_equal(
        deter.view(ml_dtypes.bfloat16).astype(np.float32), old['dyn/deter']
    )
    # Compact arrays stay as they are; stored bits read back exactly under another dtype.
    assert layout.compact_array('dyn/deter', deter, 'bfloat16') is deter
    assert layout.compact_array('dyn/stoch', stoch, 'bfloat16') is stoch
    back = layout.compact_array('dyn/deter', deter, 'float32')
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, old['dyn/deter'])


def test_float_entries_round_like_the_models_cast():
    value = np.array([1 + 2**-9, 1 + 3 * 2**-9, -0.1], np.float32)
    bits = layout.compact_array('dyn/deter', value, 'bfloat16')
    np.testing.assert_array_equal(bits, value.astype(ml_dtypes.bfloat16).view(np.uint16))


def write_chunk(directory, data):
    length = len(next(iter(data.values())))
    chunk = chunklib.Chunk(length)
    for i in range(length):
        chunk.append(
            {**{k: v[i] for k, v in data.items()}, 'stepid': chunklib.stepid(chunk.uuid, i)}
        )
    return chunk.save(directory)


def steps(length, seed):
    rng = np.random.default_rng(seed)
    return {
        'image': rng.integers(0, 255, (length, 4, 4, 3), np.uint8),
        'reward': rng.normal(size=length).astype(np.float32),
        'is_first': np.arange(length) == 0,
    }


def test_upgrade_directory_converts_old_chunks_and_keeps_new_ones(tmp_path):
    old, index = old_latents(12, seed=1)
    oldpath = write_chunk(tmp_path, {**steps(12, 1), **old})
    new = {k: layout.compact_array(k, v, 'bfloat16') for k, v in old_latents(7, seed=2)[0].items()}
    newpath = write_chunk(tmp_path, {**steps(7, 2), **new})
    newbytes = newpath.read_bytes()
    oldsize = len(oldpath.read_bytes())

    messages = []
    assert layout.upgrade_directory(tmp_path, 'bfloat16', log=messages.append) == 1
    assert 'converting 1 chunk files' in messages[0] and 'converted 1 chunk files' in messages[-1]
    assert sorted(p.name for p in tmp_path.glob('*')) == sorted([oldpath.name, newpath.name])
    assert newpath.read_bytes() == newbytes
    assert len(oldpath.read_bytes()) < oldsize

    chunk = chunklib.Chunk.load(oldpath)
    assert chunk.data['dyn/deter'].dtype == np.uint16
    np.testing.assert_array_equal(
        chunk.data['dyn/deter'].view(ml_dtypes.bfloat16).astype(np.float32), old['dyn/deter']
    )
    np.testing.assert_array_equal(chunk.data['dyn/stoch'], index)
    for key, value in steps(12, 1).items():
        np.testing.assert_array_equal(chunk.data[key], value)
    assert layout.upgrade_directory(tmp_path, 'bfloat16', log=messages.append) == 0


def test_a_replay_samples_old_and_new_chunks_in_one_layout(tmp_path):
    write_chunk(tmp_path, {**steps(20, 3), **old_latents(20, seed=3)[0]})
    new = {k: layout.compact_array(k, v, 'bfloat16') for k, v in old_latents(20, seed=4)[0].items()}
    write_chunk(tmp_path, {**steps(20, 4), **new})
    layout.upgrade_directory(tmp_path, 'bfloat16', log=lambda _: None)
    replay = Replay(5, 100, directory=tmp_path)
    replay.load()
    batch = replay.sample(16)
    assert batch['dyn/deter'].shape == (16, 5, D) and batch['dyn/deter'].dtype == np.uint16
    assert batch['dyn/stoch'].shape == (16, 5, SV) and batch['dyn/stoch'].dtype == np.uint8


def test_unreadable_files_are_left_to_the_replay(tmp_path):
    (tmp_path / '20240101T000000-0-0-3.npz').write_bytes(b'not a zip file')
    assert layout.upgrade_directory(tmp_path, 'bfloat16') == 0
    assert layout.upgrade_directory(tmp_path / 'missing', 'bfloat16') == 0


def test_in_memory_replays_have_no_directory_to_convert():
    assert layout.upgrade_directory(None, 'bfloat16') == 0


def test_command_line_converts_a_folder(tmp_path, capsys):
    old, index = old_latents(5, seed=6)
    path = write_chunk(tmp_path, {**steps(5, 6), **old})
    assert upgrade_replay.main([str(tmp_path)]) == 0
    assert 'converted 1 chunk files' in capsys.readouterr().out
    np.testing.assert_array_equal(chunklib.Chunk.load(path).data['dyn/stoch'], index)
    assert upgrade_replay.main([str(tmp_path)]) == 0
    assert 'already has the compact layout' in capsys.readouterr().out
    assert upgrade_replay.main([str(tmp_path / 'empty')]) == 2
    assert 'no chunk files' in capsys.readouterr().err
