"""Chunked replay buffer of fixed-length sequences, with FIFO eviction and disk persistence."""

import collections
import concurrent.futures
import os
import threading
import time

import elements
import numpy as np
import psutil

from . import chunks as chunklib
from . import sampling

MODES = ('train', 'report', 'eval')


class SaveError(OSError):
    """Writing replay chunks failed: a checkpoint that counts those steps must not complete."""


class Replay:
    """Stores steps per worker in chunks and samples items of `length` consecutive steps."""

    # Seconds between the messages printed while `sample` waits for a first item.
    wait_notify = 60.0

    def __init__(
        self,
        length,
        capacity=None,
        directory=None,
        chunksize=1024,
        online=False,
        selector=None,
        name=None,
        seed=0,
    ):
        if int(length) < 1:
            raise ValueError(f'Replay length must be at least 1, got {length}.')
        if capacity is not None and int(capacity) < 1:
            raise ValueError(f'Replay capacity must be at least 1 or None, got {capacity}.')
        if int(chunksize) < 1:
            raise ValueError(f'Replay chunksize must be at least 1, got {chunksize}.')
        self.length = int(length)
        self.capacity = None if capacity is None else int(capacity)
        self.chunksize = int(chunksize)
        self.online = online
        if name is None:
            name = elements.Path(directory).name if directory else 'replay'
        self.name = name
        # Compared with None: empty selectors have length 0 and are falsy.
        self.selector = sampling.Uniform(seed) if selector is None else selector
        self.lock = threading.RLock()

        self.chunks = {}  # uuid -> Chunk
        self.refs = {}  # uuid -> reference count: items starting in it, links, the writer
        self.links = set()  # uuids of chunks holding a reference on their successor
        self.items = {}  # item id -> (chunk uuid, start index)
        self.fifo = collections.deque()  # item ids, oldest first
        self.nextid = 0
        self.current = {}  # worker -> uuid of the chunk being filled
        self.streams = {}  # worker -> deque of (uuid, index) not yet starting an item
        # Ends of loaded streams that no worker continues yet: uuid of a stream's last chunk ->
        # (its last length-1 positions, which start no item and each hold a chunk reference,
        # whether a worker may continue it). Held so that a save lists them and a worker's next
        # episode extends them into items.
        self.tails = {}
        self.added = collections.defaultdict(int)  # worker -> steps added
        self.queue = collections.deque()  # online item ids
        self.ram = 0  # bytes of all chunk arrays
        self.counters = {'inserts': 0, 'samples': 0, 'updates': 0}
        self.warned = False

        self.directory = directory and elements.Path(directory)
        self.saved = set()  # uuids on disk: written (and synced) or read from the directory
        self.writing = {}  # uuid -> future of a chunk write still in flight
        self.failed = []  # (file name, error) of writes that failed and were not yet reported
        self.pool = None
        if self.directory:
            self.directory.mkdir()
            self.pool = concurrent.futures.ThreadPoolExecutor(16, f'replay_{name}_saver')

    def __len__(self):
        return len(self.items)

    def __repr__(self):
        return f'Replay({self.name}, items={len(self)}, length={self.length})'

    def add(self, step, worker=0):
        """Append one step of a worker's stream; inserts an item once L steps are pending."""
        step = {k: np.asarray(v) for k, v in step.items() if not k.startswith('log/')}
        with self.lock:
            if worker not in self.current:
                starts = 'is_first' not in step or bool(step['is_first'])
                self._open(worker, starts)
            chunk = self.chunks[self.current[worker]]
            index = chunk.length
            step['stepid'] = chunklib.stepid(chunk.uuid, index)
            chunk.append(step)
            if index == 0:
                self.ram += chunk.nbytes
                if not self.warned:
                    self.warned = True
                    self._check_memory(chunk.nbytes // chunk.capacity)
            self.refs[chunk.uuid] += 1
            stream = self.streams[worker]
            stream.append((chunk.uuid, index))
            if chunk.length >= chunk.capacity:
                self._complete(worker)
            previous = self.added[worker]
            self.added[worker] += 1
            self.counters['inserts'] += 1
            if len(stream) >= self.length:
                itemid = self._insert(*stream.popleft())
                if self.online and previous % self.length == 0:
                    self.queue.append(itemid)

    def sample(self, batch, mode='train'):
        """Return a dict of arrays (batch, length, ...) of sampled items."""
        if mode not in MODES:
            raise ValueError(f'Replay sample mode must be one of {MODES}, got {mode!r}.')
        if int(batch) < 1:
            raise ValueError(f'Replay sample batch must be at least 1, got {batch}.')
        start = time.time()
        notified = start
        while not len(self.items):
            now = time.time()
            if now - notified >= self.wait_notify:
                elements.print(
                    f'Replay {self.name} is waiting for its first item '
                    f'({now - start:.0f}s, needs {self.length} steps of one worker).'
                )
                notified = now
            time.sleep(0.01)
        data = None
        for row in range(batch):
            segments = self._pick(mode)
            if data is None:
                arrays = segments[0][0]
                data = {
                    k: np.empty((batch, self.length, *v.shape[1:]), v.dtype)
                    for k, v in arrays.items()
                }
            pos = 0
            for arrays, lo, hi in segments:
                for key, value in data.items():
                    value[row, pos : pos + hi - lo] = arrays[key][lo:hi]
                pos += hi - lo
        if mode == 'train':
            with self.lock:
                self.counters['samples'] += batch
        if 'is_first' in data:
            data['is_first'][:, 0] = True
            if 'is_last' in data:
                # An episode cut off without is_last is closed where the next one starts.
                data['is_last'][:, :-1] |= data['is_first'][:, 1:]
        return data

    def update(self, data):
        """Write values back into stored steps by `stepid`; forwards `priority` to the selector."""
        data = dict(data)
        if 'stepid' not in data:
            raise KeyError(f'Replay update needs a `stepid` entry, got keys {sorted(data)}.')
        stepids = np.asarray(data.pop('stepid'))
        if stepids.ndim != 3 or stepids.shape[-1] != 20:
            raise ValueError(
                f'Replay update expects stepid of shape (B, T, 20), got {stepids.shape}.'
            )
        priority = data.pop('priority', None)
        data = {k: np.asarray(v) for k, v in data.items()}
        with self.lock:
            if priority is not None and hasattr(self.selector, 'prioritize'):
                self.selector.prioritize(stepids.reshape(-1, 20), np.asarray(priority).reshape(-1))
            for row in range(len(stepids)):
                uuid, index = chunklib.parse_stepid(stepids[row, 0])
                segments = self._segments(elements.UUID(uuid), index, stepids.shape[1])
                if segments is None:
                    continue  # evicted since it was sampled
                pos = 0
                for arrays, lo, hi in segments:
                    for key, value in data.items():
                        if key not in arrays:
                            raise KeyError(
                                f'Replay update key {key!r} is not stored; stored keys are '
                                f'{sorted(arrays)}.'
                            )
                        arrays[key][lo:hi] = value[row, pos : pos + hi - lo]
                    pos += hi - lo
            self.counters['updates'] += stepids.shape[0] * stepids.shape[1]

    def stats(self):
        """Return the gauges and the counters since the last call (which are then reset)."""
        with self.lock:
            counters, self.counters = self.counters, {k: 0 for k in self.counters}
            inserts = counters['inserts']
            return {
                'items': len(self.items),
                'chunks': len(self.chunks),
                'streams': len(self.streams),
                'ram_gb': self.ram / 2**30,
                **counters,
                'replay_ratio': self.length * counters['samples'] / inserts if inserts else np.nan,
            }

    def save(self, wait=True):
        """Complete the current chunks and write the unsaved ones; returns the checkpoint entry.

        With `wait`, returns once every chunk write, of this and of earlier saves, is on disk,
        and raises SaveError when one failed. The entry then lists the chunk files this replay
        holds, so that loading it restores exactly the steps a checkpoint counted. Without
        `wait`, the writes go on in the background, the entry is None, and a failure is raised
        by the next save.
        """
        if not self.directory:
            return None
        with self.lock:
            for worker in list(self.current):
                if self.chunks[self.current[worker]].length:
                    self._complete(worker)
            current = set(self.current.values())  # all empty after completing them
            todo = [
                c
                for c in self.chunks.values()
                if c.length
                and c.uuid not in self.saved
                and c.uuid not in self.writing
                and c.uuid not in current
            ]
            # A chunk counts as saved only once its file is on disk (see _write).
            for chunk in todo:
                self.writing[chunk.uuid] = self.pool.submit(self._write, chunk)
            if not wait:
                self._raise_failed()
                return None
            pending = list(self.writing.values())
        concurrent.futures.wait(pending)
        with self.lock:
            self._raise_failed()
            names = sorted(c.filename for c in self.chunks.values() if c.uuid in self.saved)
        # The renames of the chunk files reach the disk before a checkpoint marks them done.
        chunklib.sync_directory(self.directory)
        return {'chunks': names}

    def _write(self, chunk):
        """Write one chunk (in a saver thread) and record the outcome before the future ends."""
        try:
            chunk.save(self.directory)
        except Exception as e:
            with self.lock:
                self.writing.pop(chunk.uuid, None)
                # Left unsaved, so that the next save tries this chunk again.
                self.failed.append((chunk.filename, e))
            return
        with self.lock:
            self.writing.pop(chunk.uuid, None)
            self.saved.add(chunk.uuid)

    def _raise_failed(self):
        """Raise SaveError for the writes that failed since the last call (holds the lock)."""
        if not self.failed:
            return
        failed, self.failed = self.failed, []
        name, error = failed[0]
        more = f' and {len(failed) - 1} more' if len(failed) > 1 else ''
        raise SaveError(
            f'Replay {self.name} could not write the chunk {name}{more} to {self.directory}: '
            f'{error}. These steps are not on disk, so no checkpoint may count them.'
        ) from error

    def load(self, data=None, directory=None, amount=None):
        """Load the newest chunk files not yet held, up to `amount` items (default: free room).

        `data` is the entry `save` returned: when it lists chunk files, only those are loaded,
        so chunks written after that checkpoint (by a run that stopped before its next
        checkpoint completed) do not add steps the checkpoint never counted. Without a list
        (older checkpoints), the newest files of the directory are loaded. The last length-1
        steps of each loaded stream start no item; they stay held (and listed by the next save),
        and the next worker that starts an episode continues the stream, so that they do.
        """
        listed = set(data['chunks']) if isinstance(data, dict) and 'chunks' in data else None
        directory = elements.Path(directory) if directory else self.directory
        if not directory or not directory.exists():
            return
        if amount is None:
            amount = np.inf if self.capacity is None else self.capacity - len(self.items)
        with self.lock:
            known = set(self.chunks) | self.saved
        files, unlisted, present = {}, [], set()
        for path in sorted(directory.glob('*.npz'), key=lambda p: p.name, reverse=True):
            try:
                _, uuid, succ, length = chunklib.parse_filename(path)
            except ValueError as e:
                elements.print(f'Replay {self.name} skips {path}: {e}', color='red')
                continue
            present.add(uuid)
            if listed is not None and path.name not in listed:
                unlisted.append(path.name)
                continue
            if uuid not in known and uuid not in files:
                files[uuid] = (path, succ, length)
        if listed is not None:
            self._report_unlisted(directory, listed, files, unlisted)
        picked, total = [], 0
        for uuid, (path, succ, length) in files.items():  # newest first
            if total >= amount:
                break
            picked.append(path)
            total += self._startable(uuid, lambda u: files[u][1:] if u in files else None)
        if not picked:
            return
        with concurrent.futures.ThreadPoolExecutor(16, f'replay_{self.name}_loader') as pool:
            loaded = [c for c in pool.map(self._readchunk, picked) if c is not None]
        loaded = {c.uuid: c for c in loaded}
        steps = sum(c.length for c in loaded.values())
        before = len(self.items)
        with self.lock:
            for chunk in loaded.values():
                self.chunks[chunk.uuid] = chunk
                self.saved.add(chunk.uuid)
                self.ram += chunk.nbytes
                # Held until all items are inserted, so evictions during loading keep the
                # successors of evicted chunks alive.
                self.refs[chunk.uuid] = 1
            for chunk in list(self.chunks.values()):
                # Link every held chunk whose successor is now held as well (old or new).
                if chunk.uuid not in self.links and chunk.succ in self.chunks:
                    self.links.add(chunk.uuid)
                    self.refs[chunk.succ] += 1
            held = self.chunks
            info = lambda u: (held[u].succ, held[u].length) if u in held else None
            for chunk in sorted(loaded.values(), key=lambda c: (c.time, str(c.uuid))):
                for index in range(self._startable(chunk.uuid, info)):
                    self.refs[chunk.uuid] += 1
                    self._insert(chunk.uuid, index)
            if self.length > 1:
                self._settle_tails(loaded, present)
            for uuid in loaded:
                self._release(uuid)
            items = len(self.items) - before
            ends = [(len(p), ok) for p, ok in self.tails.values()]
        elements.print(
            f'Replay {self.name} loaded {steps} steps in {len(loaded)} chunks ({items} items) '
            f'from {directory}.' + self._ends_note(ends)
        )

    def _ends_note(self, ends):
        """What happens to the steps at the ends of loaded streams, which start no item yet."""
        if not ends:
            return ''
        steps = sum(n for n, _ in ends)
        stuck = [n for n, ok in ends if not ok]
        note = (
            f' The last {steps} steps of {len(ends)} streams start no item yet (an item needs '
            f'{self.length} steps); they are kept and start items once the next episodes '
            'continue these streams.'
        )
        if stuck:
            note += (
                f' {sum(stuck)} steps of {len(stuck)} of these streams cannot be continued '
                '(their successor file exists) and are kept until evicted.'
            )
        return note

    def _open(self, worker, starts):
        """Start a worker's stream; an episode start continues the oldest loaded stream end.

        The new chunk takes the uuid that the end's file names as its successor, so that the
        files on disk link up without being rewritten. A stream that starts mid-episode is not
        joined to another stream's end: nothing would mark the boundary between the two.
        """
        joinable = [u for u, (_, ok) in self.tails.items() if ok] if starts else []
        if not joinable:
            chunk = self._newchunk()
            self.current[worker] = chunk.uuid
            self.refs[chunk.uuid] += 1
            self.streams[worker] = collections.deque()
            return
        tail = min(joinable, key=lambda u: (self.chunks[u].time, str(u)))
        positions, _ = self.tails.pop(tail)
        chunk = self._newchunk(self.chunks[tail].succ)
        self.current[worker] = chunk.uuid
        self.refs[chunk.uuid] += 2  # the writer + the link from the stream's end
        self.links.add(tail)
        # The end's positions already hold their references; they start items as steps follow.
        self.streams[worker] = collections.deque(positions)

    def _settle_tails(self, loaded, present):
        """Hold the ends of the loaded streams; earlier ends whose successors arrived start items.

        `present` holds the uuids of the chunk files on disk, listed or not.
        """
        carried = set()  # positions of earlier ends that still start no item; refs held
        for tail in list(self.tails):
            if tail not in self.tails or self.chunks[tail].succ not in self.chunks:
                continue
            positions, _ = self.tails.pop(tail)
            for uuid, index in positions:
                if self._segments(uuid, index, self.length) is None:
                    carried.add((uuid, index))
                else:
                    self._insert(uuid, index)
        held = self.chunks
        prev = {c.succ: c.uuid for c in held.values() if c.succ in held}
        # A successor that has a file (unlisted or evicted) keeps its uuid: a new chunk under
        # that uuid would repeat its step ids.
        taken = present | self.saved
        for chunk in sorted(loaded.values(), key=lambda c: (c.time, str(c.uuid))):
            if chunk.uuid not in held or chunk.succ in held:
                continue
            positions, need, part = [], self.length - 1, chunk
            while part is not None and need > 0:
                take = min(need, part.length)
                positions[:0] = [(part.uuid, i) for i in range(part.length - take, part.length)]
                need -= take
                part = held.get(prev.get(part.uuid))
            for uuid, index in positions:
                if (uuid, index) in carried:
                    carried.discard((uuid, index))
                else:
                    self.refs[uuid] += 1
            if positions:
                ok = chunk.succ != chunklib.NOSUCC and chunk.succ not in taken
                self.tails[chunk.uuid] = (positions, ok)
        for uuid, _ in carried:
            self._release(uuid)

    def _drop_stale_tails(self, time):
        """Release the stream ends no newer than an evicted item: the replay has moved past."""
        for tail in list(self.tails):
            if self.chunks[tail].time <= time:
                positions, _ = self.tails.pop(tail)
                for uuid, _ in positions:
                    self._release(uuid)

    def _check_memory(self, stepbytes):
        """Warn once when a full replay would not fit into the available memory."""
        if self.capacity is None:
            return
        needed = (self.capacity + self.length) * stepbytes
        available = psutil.virtual_memory().available
        if needed > available:
            elements.print(
                f'Warning: replay {self.name} needs about {needed / 2**30:.1f} GiB when full '
                f'({self.capacity} items of {stepbytes} bytes per step) but only '
                f'{available / 2**30:.1f} GiB are available; lower replay.size or the stored '
                'keys (replay_context=0 stores no dyn/deter).',
                color='yellow',
            )

    def _startable(self, uuid, info):
        """Number of items that can start in a chunk, given the successor chain `info`."""
        succ, length = info(uuid)
        following, need = 0, self.length - 1
        while following < need and succ != chunklib.NOSUCC and info(succ) is not None:
            succ, succlen = info(succ)
            following += succlen
        return int(np.clip(length + 1 - self.length + following, 0, length))

    def _report_unlisted(self, directory, listed, files, unlisted):
        """Say which listed chunks are missing and how many newer ones are left out."""
        found = {path.name for path, _, _ in files.values()}
        missing = sorted(listed - found - {c.filename for c in self.chunks.values()})
        if missing:
            elements.print(
                f'Replay {self.name}: {len(missing)} chunk files of the checkpoint are missing '
                f'from {directory} (e.g. {missing[0]}); their steps are not loaded.',
                color='red',
            )
        newest = max(listed, default='')
        # Chunk names start with their creation time: newer unlisted ones were written after
        # the checkpoint, older ones were evicted before it.
        later = [name for name in unlisted if name > newest]
        if later:
            steps = sum(chunklib.parse_filename(name)[3] for name in later)
            # Earlier versions dropped the chunks of stream ends from the list as well.
            elements.print(
                f'Replay {self.name} leaves out {len(later)} chunk files ({steps} steps) newer '
                'than the checkpoint it resumes from lists: written after the checkpoint, or '
                'left out of its list by an earlier version.'
            )

    def _readchunk(self, path):
        try:
            return chunklib.Chunk.load(path)
        except Exception as e:
            self._move_corrupt(path, e)
            return None

    def _move_corrupt(self, path, error):
        """Move an unreadable chunk file into `corrupt/` next to it, so it is reported once."""
        target = path.parent / 'corrupt'
        try:
            if '://' in str(path):
                raise OSError('not moved from a remote file system')
            if self.directory is None or path.parent != self.directory:
                # A folder loaded from elsewhere (offline training) is only ever read.
                raise OSError('not moved out of a folder this replay only reads')
            target.mkdir()
            os.replace(str(path), str(target / path.name))
            where = f'moved to {target}'
        except OSError as e:
            where = f'left in place ({e})'
        elements.print(
            f'Replay {self.name} skips the unreadable chunk {path.name} '
            f'({type(error).__name__}: {error}); {where}.',
            color='red',
        )

    def _newchunk(self, uuid=None):
        chunk = chunklib.Chunk(self.chunksize, uuid)
        self.chunks[chunk.uuid] = chunk
        self.refs[chunk.uuid] = 0
        return chunk

    def _complete(self, worker):
        """Close a worker's current chunk and start a linked successor."""
        chunk = self.chunks[self.current[worker]]
        succ = self._newchunk()
        chunk.succ = succ.uuid
        self.refs[succ.uuid] += 2  # current chunk + link from its predecessor
        self.links.add(chunk.uuid)
        self.current[worker] = succ.uuid
        before = chunk.nbytes
        chunk.trim()
        self.ram += chunk.nbytes - before
        self._release(chunk.uuid)

    def _insert(self, uuid, index):
        """Register an item starting at (uuid, index); its +1 chunk reference is already held."""
        if self.capacity is not None:
            while len(self.items) >= self.capacity:
                self._evict()
        itemid = self.nextid
        self.nextid += 1
        segments = self._segments(uuid, index, self.length)
        stepids = np.concatenate([arrays['stepid'][lo:hi] for arrays, lo, hi in segments])
        self.items[itemid] = (uuid, index)
        self.fifo.append(itemid)
        self.selector[itemid] = stepids
        return itemid

    def _evict(self):
        itemid = self.fifo.popleft()
        uuid, _ = self.items.pop(itemid)
        del self.selector[itemid]
        if self.tails:
            self._drop_stale_tails(self.chunks[uuid].time)
        self._release(uuid)

    def _release(self, uuid):
        """Drop one reference; delete chunks without references and release their links."""
        while uuid in self.refs:
            self.refs[uuid] -= 1
            if self.refs[uuid] >= 1:
                return
            del self.refs[uuid]
            chunk = self.chunks.pop(uuid)
            self.ram -= chunk.nbytes
            if uuid not in self.links:
                return
            self.links.remove(uuid)
            uuid = chunk.succ

    def _segments(self, uuid, index, length):
        """(arrays, lo, hi) pieces covering `length` steps from (uuid, index), or None."""
        segments = []
        chunk = self.chunks.get(uuid)
        while length > 0:
            if chunk is None or index >= chunk.length:
                return None
            hi = min(chunk.length, index + length)
            segments.append((chunk.data, index, hi))
            length -= hi - index
            chunk, index = self.chunks.get(chunk.succ), 0
        return segments

    def _pick(self, mode):
        """Choose an item and resolve its pieces; retries items evicted in the meantime."""
        while True:
            with self.lock:
                if mode == 'train' and self.online and self.queue:
                    itemid = self.queue.popleft()
                else:
                    itemid = self.selector()
                if itemid in self.items:
                    segments = self._segments(*self.items[itemid], self.length)
                    if segments is not None:
                        return segments
