"""Checkpoints: durable saves with checksums, keeping the newest few, falling back on damage."""

import errno
import json
import os
import pickle

import elements
import numpy as np
import pytest

from embodied.core import chunks as chunklib
from embodied.core.replay import Replay
from embodied.run import checkpoints


class Box:
    """A saveable holding one value."""

    def __init__(self, value=None):
        self.value = value

    def save(self):
        return {'value': self.value}

    def load(self, data):
        self.value = data['value']


class Shards:
    """A saveable that saves as a generator of shards."""

    def __init__(self, values=()):
        self.values = list(values)

    def save(self):
        yield from ({'value': v} for v in self.values)

    def load(self, data):
        self.values = [shard['value'] for shard in data]


def make(directory, keep=2, **values):
    checkpoint = checkpoints.Checkpoint(directory, keep)
    for name, value in values.items():
        setattr(checkpoint, name, Box(value))
    return checkpoint


def folders(directory):
    return sorted(p.name for p in elements.Path(directory).glob('*') if p.name != 'latest')


def test_save_records_checksums_and_latest(tmp_path):
    checkpoint = make(tmp_path, agent=np.arange(5), step=3)
    folder = checkpoint.save()
    marker = json.loads((folder / 'done').read_text())
    assert sorted(marker['files']) == ['agent.pkl', 'step.pkl']
    size = len((folder / 'agent.pkl').read_bytes())
    assert marker['files']['agent.pkl']['bytes'] == size
    assert (tmp_path / 'latest').read_text() == folder.name
    restored = make(tmp_path, agent=None, step=None)
    assert restored.load() == folder
    assert restored.step.value == 3 and list(restored.agent.value) == [0, 1, 2, 3, 4]


def test_keeps_the_newest_and_prunes_incomplete_leftovers(tmp_path):
    checkpoint = make(tmp_path, keep=2, step=0)
    saved = []
    for step in range(4):
        checkpoint.step.value = step
        saved.append(checkpoint.save().name)
        if step == 1:
            # A save that was killed before its done marker.
            (tmp_path / (saved[-1] + 'x')).mkdir()
    assert folders(tmp_path) == saved[-2:]
    assert make(tmp_path, keep=1, step=0).save().name == folders(tmp_path)[0]


def test_keep_one_keeps_only_the_newest(tmp_path):
    checkpoint = make(tmp_path, keep=1, step=0)
    checkpoint.save()
    newest = checkpoint.save()
    assert folders(tmp_path) == [newest.name]


def test_truncated_newest_falls_back_to_the_one_before(tmp_path, capsys):
    checkpoint = make(tmp_path, step=1)
    older = checkpoint.save()
    checkpoint.step.value = 2
    newer = checkpoint.save()
    data = (newer / 'step.pkl').read_bytes()
    (newer / 'step.pkl').write_bytes(data[: len(data) // 2])
    restored = make(tmp_path, step=None)
    assert restored.load() == older
    assert restored.step.value == 1
    out = capsys.readouterr().out
    assert f'Skipping the checkpoint {newer}: step.pkl has' in out
    assert 'Resuming from the older checkpoint' in out
    # The damaged one is moved aside and `latest` names the one loaded.
    assert (tmp_path / 'corrupt' / newer.name / 'step.pkl').exists()
    assert (tmp_path / 'latest').read_text() == older.name
    assert checkpoints.complete(tmp_path) == [older]


def test_flipped_byte_fails_the_checksum(tmp_path, capsys):
    checkpoint = make(tmp_path, step=1)
    older = checkpoint.save()
    newer = checkpoint.save()
    data = bytearray((newer / 'step.pkl').read_bytes())
    data[-2] ^= 0xFF
    (newer / 'step.pkl').write_bytes(bytes(data))
    assert make(tmp_path, step=None).load() == older
    assert 'does not match its checksum' in capsys.readouterr().out


def test_none_verifying_names_the_files_and_the_fix(tmp_path):
    checkpoint = make(tmp_path, agent=1)
    first = checkpoint.save()
    second = checkpoint.save()
    (first / 'agent.pkl').write_bytes(b'')
    (second / 'agent.pkl').remove()
    with pytest.raises(checkpoints.CheckpointError) as info:
        make(tmp_path, agent=None).load()
    message = str(info.value)
    assert first.name in message and second.name in message
    assert 'agent.pkl is missing' in message and 'agent.pkl has 0 bytes' in message
    assert f'mv {tmp_path}' in message
    assert checkpoints.complete(tmp_path) == [second, first]  # nothing moved


def test_checkpoints_without_checksums_still_load(tmp_path, capsys):
    # The layout earlier versions wrote through elements.Checkpoint: an empty done marker.
    old = elements.Checkpoint(tmp_path)
    old.step = Box(7)
    old.save()
    restored = make(tmp_path, step=None)
    restored.load()
    assert restored.step.value == 7
    # A truncated pickle without a checksum is detected by unpickling it.
    previous = checkpoints.complete(tmp_path)[0]
    old.step = Box(8)
    old._keep = 2
    old.save()
    newest = checkpoints.complete(tmp_path)[0]
    (newest / 'step.pkl').write_bytes((newest / 'step.pkl').read_bytes()[:5])
    again = make(tmp_path, step=None)
    assert again.load() == previous and again.step.value == 7
    assert 'cannot be unpickled' in capsys.readouterr().out


def test_generator_saveables_are_sharded(tmp_path):
    checkpoint = checkpoints.Checkpoint(tmp_path)
    checkpoint.params = Shards([1, 2, 3])
    folder = checkpoint.save()
    assert sorted(p.name for p in folder.glob('params-*.pkl')) == [
        'params-0000.pkl',
        'params-0001.pkl',
        'params-0002.pkl',
    ]
    restored = checkpoints.Checkpoint(tmp_path)
    restored.params = Shards()
    restored.load()
    assert restored.params.values == [1, 2, 3]


def test_missing_saveable_is_a_clear_error(tmp_path):
    make(tmp_path, step=1).save()
    with pytest.raises(checkpoints.CheckpointError, match="holds no 'replay_eval'"):
        make(tmp_path, step=None, replay_eval=None).load()


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint = make(tmp_path, step=1)
    previous = checkpoint.save()
    original = checkpoints._write_file

    def full(folder, name, data):
        if name == 'step.pkl':
            raise OSError(errno.ENOSPC, 'No space left on device')
        return original(folder, name, data)

    monkeypatch.setattr(checkpoints, '_write_file', full)
    with pytest.raises(checkpoints.SaveFailed) as info:
        checkpoint.save()
    assert 'No space left on device' in str(info.value)
    assert f"'{previous}' is intact" in str(info.value)
    assert folders(tmp_path) == [previous.name]  # the partial folder is gone
    assert (tmp_path / 'latest').read_text() == previous.name


def test_failing_chunk_write_fails_the_save(tmp_path, monkeypatch):
    replay = Replay(2, capacity=100, directory=tmp_path / 'replay', chunksize=4)
    checkpoint = checkpoints.Checkpoint(tmp_path / 'ckpt')
    checkpoint.step = Box(0)
    checkpoint.replay = replay
    previous = checkpoint.save()
    for index in range(6):
        replay.add({'x': np.float32(index), 'is_first': index == 0}, 0)
    original = chunklib.Chunk.save

    def broken(chunk, directory):
        raise OSError(errno.EROFS, 'Read-only file system')

    monkeypatch.setattr(chunklib.Chunk, 'save', broken)
    checkpoint.step.value = 6
    with pytest.raises(checkpoints.SaveFailed, match='could not write the chunk'):
        checkpoint.save()
    assert checkpoints.complete(tmp_path / 'ckpt') == [previous]
    # The chunk was not marked as saved: the next save writes it.
    monkeypatch.setattr(chunklib.Chunk, 'save', original)
    newest = checkpoint.save()
    entry = pickle.loads((newest / 'replay.pkl').read_bytes())
    assert sum(chunklib.parse_filename(n)[3] for n in entry['chunks']) == 6
    assert sorted(os.listdir(tmp_path / 'replay')) == entry['chunks']


def test_resolve_and_load_agent_fall_back(tmp_path, capsys):
    checkpoint = make(tmp_path / 'ckpt', agent=1)
    older = checkpoint.save()
    checkpoint.agent.value = 2
    newer = checkpoint.save()
    assert checkpoints.resolve(tmp_path) == newer
    (newer / 'agent.pkl').write_bytes(b'x')
    agent = Box()
    checkpoints.load_agent(agent, tmp_path)
    assert agent.value == 1
    assert f'Skipping the checkpoint {newer}' in capsys.readouterr().out
    # Loading another run's weights never moves its files.
    assert checkpoints.complete(tmp_path / 'ckpt') == [newer, older]
