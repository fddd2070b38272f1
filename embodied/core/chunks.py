"""Replay chunks: fixed-capacity blocks of consecutive steps of one worker, saved as .npz files."""

import contextlib
import io
import os
import pathlib
import re
from collections.abc import Iterator

import elements
import numpy as np

# The all-zero id marks "no successor yet".
NOSUCC = elements.UUID(0)
# Suffix of a file while it is written; the finished file is renamed to drop it.
TEMPORARY = '.tmp'
# A chunk file whose write never finished: <time>-<uuid>-<succ>-<length>.npz.tmp.
TEMPORARY_CHUNK = re.compile(
    r'^\d{8}T\d{6}(F\d{6})?-[0-9A-Za-z]+-[0-9A-Za-z]+-\d+\.npz' + re.escape(TEMPORARY) + '$'
)


def stepid(uuid, index):
    """The 20-byte step id: 16 chunk uuid bytes followed by the big-endian uint32 index."""
    return np.frombuffer(uuid.value + int(index).to_bytes(4, 'big'), np.uint8)


def parse_stepid(value):
    """Split a uint8[20] step id (array or bytes) into (chunk uuid bytes, index)."""
    raw = value if isinstance(value, bytes) else np.asarray(value, np.uint8).tobytes()
    if len(raw) != 20:
        raise ValueError(f'A step id has 20 bytes, got {len(raw)}; pass the stored `stepid` rows.')
    return raw[:16], int.from_bytes(raw[16:], 'big')


def parse_filename(filename):
    """Parse `<time>-<uuid>-<succ>-<length>.npz` into (time, uuid, succ, length)."""
    name = pathlib.PurePath(str(filename)).name
    if not name.endswith('.npz'):
        raise ValueError(f'Chunk file {name!r} does not end in .npz.')
    parts = name[: -len('.npz')].split('-')
    if len(parts) != 4:
        raise ValueError(f'Chunk file {name!r} is not named <time>-<uuid>-<succ>-<length>.npz.')
    time, uuid, succ, length = parts
    return time, elements.UUID(uuid), elements.UUID(succ), int(length)


def sync_directory(directory):
    """Flush a local directory's entries (new and renamed files) to disk; no-op for URLs."""
    if '://' in str(directory):
        return
    fd = os.open(str(directory), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temporary(directory) -> int:
    """Delete the chunk files of writes a killed process left in `directory`; how many."""
    if '://' in str(directory) or not os.path.isdir(str(directory)):
        return 0  # Remote folders are written in one request and leave no temporary files.
    with os.scandir(str(directory)) as entries:
        leftovers = [
            e.path
            for e in entries
            if TEMPORARY_CHUNK.match(e.name) and e.is_file(follow_symlinks=False)
        ]
    for path in leftovers:
        os.remove(path)
    return len(leftovers)


class Chunk:
    """Consecutive steps of one worker; arrays are allocated on the first append."""

    __slots__ = ('uuid', 'time', 'succ', 'length', 'capacity', 'data', 'nbytes')

    def __init__(self, capacity, uuid=None, time=None, succ=None):
        if capacity < 1:
            raise ValueError(f'Chunk capacity must be at least 1, got {capacity}.')
        self.uuid = elements.UUID(uuid) if uuid is not None else elements.UUID()
        self.time = time or elements.timestamp(millis=True)
        self.succ = elements.UUID(succ) if succ is not None else NOSUCC
        self.length = 0
        self.capacity = int(capacity)
        self.data = None
        self.nbytes = 0

    def __repr__(self):
        return f'Chunk({self.filename}, capacity={self.capacity})'

    def __len__(self):
        return self.length

    @property
    def filename(self):
        """The file name this chunk saves to."""
        return f'{self.time}-{self.uuid}-{self.succ}-{self.length}.npz'

    def append(self, step):
        """Write one step (dict of arrays) into the next row."""
        if self.length >= self.capacity:
            raise RuntimeError(f'{self!r} is full; start a successor chunk before appending.')
        if self.data is None:
            self.data = {
                k: np.empty((self.capacity, *np.shape(v)), np.asarray(v).dtype)
                for k, v in step.items()
            }
            self.nbytes = sum(v.nbytes for v in self.data.values())
        elif len(step) != len(self.data):
            raise KeyError(
                f'Step keys {sorted(step)} differ from the chunk keys {sorted(self.data)}; '
                'every step of a replay must have the same keys.'
            )
        index = self.length
        for key, value in step.items():
            self.data[key][index] = value
        self.length += 1

    def trim(self):
        """Release unused preallocated rows (after completing a partly filled chunk)."""
        if self.data is not None and self.length < len(next(iter(self.data.values()))):
            self.data = {k: v[: self.length].copy() for k, v in self.data.items()}
            self.nbytes = sum(v.nbytes for v in self.data.values())
        self.capacity = max(self.length, 1)

    def save(self, directory):
        """Write the filled rows to `directory/<filename>`, atomically; returns the path."""
        if not self.length:
            raise ValueError(f'{self!r} is empty; only non-empty chunks are saved.')
        directory = elements.Path(directory)
        arrays = {k: v[: self.length] for k, v in self.data.items()}
        path = directory / self.filename
        if '://' not in str(path):
            # Readers never see a half-written chunk, even when the process dies while saving.
            with atomic_file(path) as f:
                np.savez_compressed(f, **arrays)
        else:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)
            path.write(buffer.getvalue(), mode='wb')
        return path

    @classmethod
    def load(cls, path):
        """Read a chunk file written by `save`."""
        time, uuid, succ, length = parse_filename(path)
        with elements.Path(path).open('rb') as f:
            with np.load(f) as npz:
                data = {k: npz[k] for k in npz.files}
        lengths = {len(v) for v in data.values()}
        if lengths != {length}:
            raise ValueError(f'Chunk file {path} names length {length} but holds {lengths} rows.')
        if 'stepid' not in data:
            data['stepid'] = np.stack([stepid(uuid, i) for i in range(length)])
        chunk = cls(max(length, 1), uuid, time, succ)
        chunk.data = data
        chunk.length = length
        chunk.nbytes = sum(v.nbytes for v in data.values())
        return chunk


@contextlib.contextmanager
def atomic_file(path) -> Iterator:
    """A binary file that replaces `path` only once the body has written it and it is synced.

    It is written under a name that the *.npz glob ignores (`<path>.tmp`, removed on failure)
    and synced before the rename: a checkpoint that counts the file must not find it empty
    after a power loss.
    """
    tmp = f'{path}{TEMPORARY}'
    try:
        with open(tmp, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, str(path))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
