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


def test_keeps_the_newest_and_prunes_leftovers_of_pruning(tmp_path):
    checkpoint = make(tmp_path, keep=2, step=0)
    saved = []
    for step in range(4):
        checkpoint.step.value = step
        saved.append(checkpoint.save().name)
        if step == 1:
            # Pruning killed after it removed the marker of a folder older than a complete one.
            (tmp_path / '20000101T000000F000000').mkdir()
            (tmp_path / 'notes').mkdir()  # not a checkpoint folder: never touched
    assert folders(tmp_path) == saved[-2:] + ['notes']
    assert make(tmp_path, keep=1, step=0).save().name == folders(tmp_path)[0]
    assert not (tmp_path / 'corrupt').exists()


def cut_off(directory, **values):
    """A checkpoint folder whose save was killed just before its done marker."""
    folder = elements.Path(directory) / elements.timestamp(millis=True)
    checkpoints.write(folder, {name: Box(value).save for name, value in values.items()})
    (folder / 'done').remove()
    return folder


def test_cut_off_newer_checkpoint_is_set_aside_at_load_never_pruned(tmp_path, capsys):
    checkpoint = make(tmp_path, keep=1, step=1)
    older = checkpoint.save()
    newer = cut_off(tmp_path, step=2)
    restored = make(tmp_path, keep=1, step=None)
    assert restored.load() == older and restored.step.value == 1
    out = capsys.readouterr().out
    assert f'Skipping the checkpoint {newer}: it has no done marker' in out
    kept = tmp_path / 'corrupt' / newer.name
    assert checkpoints.peek(kept, 'step') == {'value': 2}
    # The next saves prune the loaded checkpoint but leave the set aside one as it was.
    restored.save()
    newest = restored.save()
    assert folders(tmp_path) == [newest.name, 'corrupt']
    assert checkpoints.peek(kept, 'step') == {'value': 2}


def test_save_without_load_sets_a_cut_off_folder_aside(tmp_path, capsys):
    checkpoint = make(tmp_path, keep=1, step=1)
    older = checkpoint.save()
    newer = cut_off(tmp_path, step=2)
    newest = make(tmp_path, keep=1, step=3).save()
    assert folders(tmp_path) == [newest.name, 'corrupt']
    assert not older.exists()  # a newer checkpoint is complete and verified
    moved = tmp_path / 'corrupt' / newer.name
    out = capsys.readouterr().out
    assert f'Moved the checkpoint {newer} to {moved}: it has no done marker' in out
    assert checkpoints.peek(moved, 'step') == {'value': 2}


def test_only_a_cut_off_folder_is_set_aside_by_the_first_save(tmp_path):
    first = cut_off(tmp_path, step=5)
    checkpoint = make(tmp_path, step=0)
    saved = checkpoint.load_or_save()
    assert checkpoint.step.value == 0
    assert folders(tmp_path) == [saved.name, 'corrupt']
    assert checkpoints.peek(tmp_path / 'corrupt' / first.name, 'step') == {'value': 5}


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


def test_empty_done_marker_is_not_trusted(tmp_path, capsys):
    checkpoint = make(tmp_path, agent=np.arange(100), step=1)
    older = checkpoint.save()
    newer = checkpoint.save()
    data = bytearray((newer / 'agent.pkl').read_bytes())
    data[-30] ^= 0xFF  # inside the array: it still unpickles
    (newer / 'agent.pkl').write_bytes(bytes(data))
    (newer / 'done').write_bytes(b'')
    restored = make(tmp_path, agent=None, step=None)
    assert restored.load() == older
    assert list(restored.agent.value) == list(range(100))
    out = capsys.readouterr().out
    assert f'Skipping the checkpoint {newer}: its done marker is empty' in out
    moved = tmp_path / 'corrupt' / newer.name
    assert f'If an earlier version wrote {moved}' in out and '{"format": 0}' in out
    assert moved.exists()


def test_checkpoints_of_earlier_versions_load_once_declared(tmp_path, capsys):
    # The layout earlier versions wrote through elements.Checkpoint: an empty done marker.
    old = elements.Checkpoint(tmp_path)
    old.step = Box(7)
    old.save()
    folder = checkpoints.complete(tmp_path)[0]
    with pytest.raises(checkpoints.CheckpointError) as info:
        make(tmp_path, step=None).load()
    assert f"echo '{{\"format\": 0}}' > '{folder / 'done'}'" in str(info.value)
    assert checkpoints.complete(tmp_path) == [folder]  # nothing moved
    (folder / 'done').write_text(checkpoints.OLDER_FORMAT)
    restored = make(tmp_path, step=None)
    assert restored.load() == folder and restored.step.value == 7
    # A truncated pickle without a checksum is detected by unpickling it.
    old.step = Box(8)
    old._keep = 2
    old.save()
    newest = checkpoints.complete(tmp_path)[0]
    (newest / 'done').write_text(checkpoints.OLDER_FORMAT)
    (newest / 'step.pkl').write_bytes((newest / 'step.pkl').read_bytes()[:5])
    again = make(tmp_path, step=None)
    assert again.load() == folder and again.step.value == 7
    assert 'cannot be unpickled' in capsys.readouterr().out


@pytest.mark.parametrize(
    'marker, reason',
    [
        (b'  \n', 'its done marker is empty'),
        (b'{"format": 1}', 'lists no checksums and does not declare'),
        (b'{"format": false}', 'lists no checksums and does not declare'),
        (b'{}', 'lists no checksums and does not declare'),
        (b'[0]', 'is damaged'),
        (b'{"format": 1, "files": {"step.pkl": 3}}', 'no size and checksum for step.pkl'),
        (b'{"format": 1, "fi', 'is damaged'),
    ],
)
def test_done_markers_that_do_not_verify(tmp_path, marker, reason):
    folder = make(tmp_path, step=1).save()
    (folder / 'done').write_bytes(marker)
    with pytest.raises(checkpoints.Corrupt, match=reason):
        checkpoints.read(folder, ['step'])


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


def test_start_removes_temporary_files_of_interrupted_writes(tmp_path, capsys):
    replay = Replay(2, capacity=100, directory=tmp_path / 'replay', chunksize=4)
    checkpoint = checkpoints.Checkpoint(tmp_path / 'ckpt')
    checkpoint.step = Box(0)
    checkpoint.replay = replay
    folder = checkpoint.load_or_save()
    # What a killed chunk write, `latest` update and done marker leave behind.
    chunk = chunklib.Chunk(4)
    chunk.append({'x': np.float32(0)})
    (tmp_path / 'replay' / (chunk.filename + '.tmp')).write_bytes(b'PK')
    (tmp_path / 'ckpt' / 'latest.tmp').write_text('x')
    (folder / 'done.tmp').write_text('{')
    others = [tmp_path / 'replay' / 'notes.tmp', tmp_path / 'replay' / 'a.npz.tmp']
    others += [tmp_path / 'ckpt' / 'other.tmp', folder / 'step.pkl.tmp']
    for path in others:
        path.write_text('mine')
    restarted = checkpoints.Checkpoint(tmp_path / 'ckpt')
    restarted.step = Box()
    restarted.replay = Replay(2, capacity=100, directory=tmp_path / 'replay', chunksize=4)
    assert restarted.load_or_save() == folder
    out = capsys.readouterr().out
    assert f'Removed 2 temporary files of an interrupted write in {tmp_path / "ckpt"}.' in out
    assert f'Removed 1 temporary file of an interrupted write in {tmp_path / "replay"}.' in out
    assert sorted(p.name for p in (tmp_path / 'replay').glob('*.tmp')) == ['a.npz.tmp', 'notes.tmp']
    assert not (tmp_path / 'ckpt' / 'latest.tmp').exists() and not (folder / 'done.tmp').exists()
    assert all(path.read_text() == 'mine' for path in others)
    # Nothing left: nothing printed.
    assert restarted.remove_temporary() == 0


def test_failed_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(checkpoints.os, 'replace', full)
    with pytest.raises(OSError):
        checkpoints._write_atomic(elements.Path(tmp_path) / 'latest', b'name')
    assert os.listdir(tmp_path) == []


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
