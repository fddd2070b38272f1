"""Replay buffer: items, capacity, sampling, online queue, write-back, persistence, threads."""

import itertools
import os
import threading
import time
import tracemalloc

import elements
import numpy as np
import psutil
import pytest

import embodied
from embodied.core import chunks as chunklib
from embodied.core import sampling
from embodied.core.replay import Replay

# numpy-only and version-sensitive: also runs under the reference pin in CI.
pytestmark = pytest.mark.pinned

WORKER = 100000  # the data encodes worker * WORKER + step index


def make_step(worker, index, image=(4, 4, 3)):
    """A step whose `x` encodes its worker and its index in that worker's stream."""
    return {
        'x': np.int64(worker * WORKER + index),
        'image': np.full(image, index % 256, np.uint8),
        'is_first': index == 0,
        'is_last': False,
        'log/debug': np.float32(1.0),
    }


def fill(replay, steps, workers=1, offset=0, **kwargs):
    """Add `steps` steps per worker, interleaved between workers."""
    for index in range(offset, offset + steps):
        for worker in range(workers):
            replay.add(make_step(worker, index, **kwargs), worker)


class Cycle:
    """Test selector that returns every item once per round, oldest id first."""

    def __init__(self):
        self.keys = set()
        self.pending = []

    def __len__(self):
        return len(self.keys)

    def __call__(self):
        if not self.pending:
            self.pending = sorted(self.keys, reverse=True)
        return self.pending.pop()

    def __setitem__(self, key, stepids):
        self.keys.add(key)

    def __delitem__(self, key):
        self.keys.remove(key)
        if key in self.pending:
            self.pending.remove(key)


def all_items(replay, **kwargs):
    """Every item of a replay built with the Cycle selector, as a batch."""
    replay.selector.pending = []
    return replay.sample(len(replay), **kwargs)


def assert_contiguous(x, length):
    """Each row holds consecutive steps of a single worker."""
    assert x.shape[1] == length
    assert np.all(np.diff(x, axis=1) == 1), x
    assert np.all(x // WORKER == x[:, :1] // WORKER)


def assert_contiguous_episodes(batch, length):
    """Rows hold consecutive steps of one worker, except where a new episode begins."""
    x = batch['x']
    assert x.shape[1] == length
    steps = np.diff(x, axis=1) == 1
    assert np.all(steps | batch['is_first'][:, 1:]), x


def test_exported_names():
    assert embodied.replay.Replay is Replay
    assert embodied.sampling.Uniform is sampling.Uniform


@pytest.mark.parametrize(
    'length,workers,capacity,chunksize',
    [
        (1, 1, 1, 1),
        (3, 1, 1, 2),
        (5, 2, 1, 3),
        (4, 1, 7, 1),
        (10, 3, 13, 4),
        (6, 2, 50, 128),
        (8, 2, None, 3),
        (2, 4, 9, 5),
    ],
)
def test_capacity_and_contiguous_items(length, workers, capacity, chunksize):
    replay = Replay(length, capacity, chunksize=chunksize, selector=Cycle())
    steps = 30
    for n in range(1, steps + 1):
        fill(replay, 1, workers, offset=n - 1)
        expected = workers * max(0, n - length + 1)
        assert len(replay) == (expected if capacity is None else min(capacity, expected))
    # Items are the newest ones, contiguous, from one worker, and chunk boundaries are spanned.
    x = all_items(replay)['x']
    assert_contiguous(x, length)
    inserted = [w * WORKER + i for i in range(steps - length + 1) for w in range(workers)]
    assert sorted(x[:, 0].tolist()) == sorted(inserted[-len(replay) :])
    # Evicted chunks are deleted: what is held is bounded by the live items.
    stats = replay.stats()
    held = len(replay) + workers * (length + 2 * chunksize)
    assert stats['chunks'] * chunksize <= held + workers * chunksize


def test_step_ids_and_log_keys():
    replay = Replay(3, chunksize=2, selector=Cycle())
    fill(replay, 5)
    data = all_items(replay)
    assert 'log/debug' not in data
    stepid = data['stepid']
    assert stepid.shape == (3, 3, 20) and stepid.dtype == np.uint8
    for row in range(3):
        for t in range(3):
            uuid, index = chunklib.parse_stepid(stepid[row, t])
            chunk = replay.chunks[elements.UUID(uuid)]
            assert index == (data['x'][row, t] % 2)  # chunks of 2 steps
            assert chunk.data['x'][index] == data['x'][row, t]
            assert stepid[row, t, 16:].tolist() == list(index.to_bytes(4, 'big'))


def test_episode_annotations():
    replay = Replay(4, selector=Cycle())
    for index in range(6):
        step = make_step(0, index)
        step['is_first'] = index in (0, 3)  # the first episode ends without is_last
        replay.add(step)
    data = all_items(replay)
    # Rows start at steps 0, 1 and 2.
    assert data['is_first'][:, 0].all()
    assert data['is_first'].tolist() == [
        [True, False, False, True],
        [True, False, True, False],
        [True, True, False, False],
    ]
    assert data['is_last'].tolist() == [
        [False, False, True, False],
        [False, True, False, False],
        [True, False, False, False],
    ]
    chunk = replay.chunks[replay.items[0][0]]
    assert not chunk.data['is_last'][: chunk.length].any()  # storage untouched


def test_uniform_covers_every_item():
    replay = Replay(5, capacity=40, chunksize=3, seed=0)
    fill(replay, 30, workers=2)
    x = replay.sample(1200)['x']
    assert_contiguous(x, 5)
    expected = {w * WORKER + i for w in range(2) for i in range(6, 26)}
    assert set(x[:, 0].tolist()) == expected


def test_selector_passed_directly_is_used():
    replay = Replay(3, selector=sampling.Fifo())  # empty, hence falsy: must still be used
    fill(replay, 10)
    assert replay.selector.__class__ is sampling.Fifo
    assert replay.sample(4)['x'][:, 0].tolist() == [0, 0, 0, 0]


def test_online_queue_yields_fresh_non_overlapping_items():
    replay = Replay(4, online=True, selector=sampling.Fifo())
    fill(replay, 13)
    # Items with previously added step counts 4, 8, 12 start at steps 1, 5, 9.
    assert replay.sample(2, mode='eval')['x'][:, 0].tolist() == [0, 0]  # eval skips the queue
    assert replay.sample(2)['x'][:, 0].tolist() == [1, 5]
    fill(replay, 8, offset=13)  # adds the items starting at 13 and 17
    x = replay.sample(4)['x'][:, 0].tolist()
    assert x == [9, 13, 17, 0]  # then the queue is empty and the selector answers


def test_online_items_evicted_before_sampling_are_skipped():
    replay = Replay(2, capacity=3, online=True, selector=sampling.Fifo())
    fill(replay, 12)
    # Queued starts were 1, 3, 5, 7, 9; only items starting at 8, 9, 10 survive.
    assert replay.sample(2)['x'][:, 0].tolist() == [9, 8]


def test_retry_when_selected_item_was_evicted():
    class Stale(sampling.Uniform):
        """Returns an item id that no longer exists on its first call."""

        def __init__(self):
            super().__init__(0)
            self.calls = 0

        def __call__(self):
            self.calls += 1
            return -1 if self.calls == 1 else super().__call__()

    replay = Replay(3, selector=Stale())
    fill(replay, 5)
    assert_contiguous(replay.sample(1)['x'], 3)
    assert replay.selector.calls == 2


def test_sample_waits_for_data_and_prints(capsys, monkeypatch):
    monkeypatch.setattr(Replay, 'wait_notify', 0.05)
    replay = Replay(3)
    thread = threading.Timer(0.3, lambda: fill(replay, 3))
    thread.start()
    start = time.time()
    data = replay.sample(2)
    thread.join()
    assert time.time() - start >= 0.25
    assert data['x'].tolist() == [[0, 1, 2]] * 2
    assert 'waiting' in capsys.readouterr().out


def test_update_writes_back_values():
    replay = Replay(4, chunksize=3, selector=Cycle())
    fill(replay, 20, workers=2)
    data = replay.sample(6)
    # Write back the last 3 steps of each row (like outputs after a context step).
    update = {'stepid': data['stepid'][:, 1:], 'x': -data['x'][:, 1:]}
    replay.update(update)
    written = set((-update['x']).ravel().tolist())
    x = all_items(replay)['x']
    for value in x.ravel().tolist():
        assert (value < 0) == (-value in written)
    assert replay.stats()['updates'] == 6 * 3


def test_update_routes_priorities_and_skips_evicted():
    class Recorder(sampling.Uniform):
        """Uniform selector that records its priorities."""

        def __init__(self):
            super().__init__(0)
            self.calls = []

        def prioritize(self, stepids, priorities):
            self.calls.append((stepids, priorities))

    replay = Replay(3, capacity=4, chunksize=2, selector=Recorder())
    fill(replay, 6)
    data = replay.sample(2)
    priority = np.arange(6, dtype=np.float32).reshape(2, 3)
    replay.update({'stepid': data['stepid'], 'priority': priority})
    ((stepids, priorities),) = replay.selector.calls
    assert stepids.shape == (6, 20) and priorities.tolist() == list(range(6))
    np.testing.assert_array_equal(stepids, data['stepid'].reshape(6, 20))
    old = replay.sample(1)['stepid']
    fill(replay, 20, offset=6)  # evicts everything sampled so far
    replay.update({'stepid': old, 'x': np.full((1, 3), -5)})
    values = [c.data['x'][: c.length] for c in replay.chunks.values() if c.length]
    assert values and all((v >= 0).all() for v in values)


def test_update_with_unknown_key_raises():
    replay = Replay(2)
    fill(replay, 3)
    data = replay.sample(1)
    with pytest.raises(KeyError, match='not stored'):
        replay.update({'stepid': data['stepid'], 'nonexistent': np.zeros((1, 2))})


@pytest.mark.parametrize(
    'fractions',
    [
        {'uniform': 0.5, 'priority': 0.3, 'recency': 0.2},
        {'uniform': 0.0, 'priority': 1.0, 'recency': 0.0},
    ],
)
def test_mixture_end_to_end(fractions):
    capacity = 64
    selector = sampling.Mixture(
        {
            'uniform': sampling.Uniform(0),
            'priority': sampling.Prioritized(0.8, 'inf', True, 0.5, seed=0),
            'recency': sampling.Recency(1 / np.arange(1, capacity + 1) ** 1.0, seed=0),
        },
        fractions,
        seed=0,
    )
    replay = Replay(5, capacity, chunksize=4, selector=selector)
    fill(replay, 40, workers=2)
    for _ in range(5):
        data = replay.sample(8)
        assert_contiguous(data['x'], 5)
        priority = np.ones(data['x'].shape, np.float32)
        replay.update({'stepid': data['stepid'], 'priority': priority})
        fill(replay, 3, workers=2, offset=40 + 3 * _)
    assert len(replay) == capacity == len(selector)


def test_prioritized_replay_prefers_unsampled_items():
    selector = sampling.Prioritized(0.8, float('inf'), zero_on_sample=True, maxfrac=0.5)
    replay = Replay(3, chunksize=4, selector=selector)
    fill(replay, 12)  # 10 overlapping items over 12 steps
    seen = set()
    while len(seen) < 12:
        # Every sample contains a step that was never sampled (its priority is still inf).
        x = replay.sample(1)['x'][0].tolist()
        assert set(x) - seen
        seen.update(x)
    # Then every priority is zero and sampling is uniform over all items.
    assert set(replay.sample(300)['x'][:, 0].tolist()) == set(range(10))


def test_recency_replay_prefers_new_items():
    uprobs = 1 / np.arange(1, 201) ** 2.0
    replay = Replay(4, capacity=200, selector=sampling.Recency(uprobs, seed=0))
    fill(replay, 203)
    starts = replay.sample(400)['x'][:, 0]
    assert np.mean(starts >= 180) > 0.8


def test_stats_counters():
    replay = Replay(5, chunksize=4)
    stats = replay.stats()
    assert stats['inserts'] == 0 and np.isnan(stats['replay_ratio'])
    fill(replay, 10, workers=2)
    replay.sample(3)
    replay.sample(4, mode='report')
    stats = replay.stats()
    assert stats['items'] == 12 and stats['streams'] == 2
    assert stats['inserts'] == 20 and stats['samples'] == 3
    assert stats['replay_ratio'] == pytest.approx(5 * 3 / 20)
    stats = replay.stats()
    assert (stats['inserts'], stats['samples'], stats['updates']) == (0, 0, 0)
    assert stats['items'] == 12


def test_ram_matches_array_bytes():
    chunksize, image = 16, (32, 32, 3)
    replay = Replay(8, capacity=100, chunksize=chunksize)
    fill(replay, 64, workers=2, image=image)
    # x int64, image, is_first, is_last, stepid.
    stepbytes = 8 + int(np.prod(image)) + 1 + 1 + 20
    # Empty current chunks hold no arrays; every other chunk is allocated in full.
    allocated = sum(1 for c in replay.chunks.values() if c.length)
    assert allocated == 8
    assert replay.stats()['ram_gb'] * 2**30 == allocated * chunksize * stepbytes


def test_python_overhead_per_item_is_small():
    image = (16, 16, 3)
    stepbytes = 8 + int(np.prod(image)) + 1 + 1 + 20
    replay = Replay(10, capacity=4000, chunksize=100)
    fill(replay, 20, image=image)  # warm up caches and the first allocations
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fill(replay, 2000, offset=20, image=image)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    overhead = (used - replay.ram) / 2000
    assert replay.ram == 21 * 100 * stepbytes
    assert overhead < 400, overhead  # bytes per item beyond the arrays themselves


def test_warns_when_full_replay_exceeds_memory(capsys, monkeypatch):
    available = 10 * 1024
    memory = psutil.virtual_memory()._replace(available=available)
    monkeypatch.setattr(psutil, 'virtual_memory', lambda: memory)
    stepbytes = 8 + 4 * 4 * 3 + 1 + 1 + 20
    fits = Replay(2, capacity=available // stepbytes - 2, chunksize=4)
    fill(fits, 5)
    assert 'Warning' not in capsys.readouterr().out
    toobig = Replay(2, capacity=available // stepbytes, chunksize=4)
    fill(toobig, 5)
    out = capsys.readouterr().out
    assert out.count('Warning') == 1 and 'replay.size' in out


def test_sampling_is_thread_safe():
    replay = Replay(6, capacity=50, chunksize=5)
    errors = []
    stop = threading.Event()

    def adder(worker):
        try:
            fill_worker(replay, worker)
        except Exception as e:  # surfaced below
            errors.append(e)

    def fill_worker(replay, worker):
        for index in range(1500):
            replay.add(make_step(worker, index), worker)

    def sampler():
        try:
            while not stop.is_set():
                data = replay.sample(4)
                assert_contiguous(data['x'], 6)
                replay.update({'stepid': data['stepid'], 'x': data['x']})
        except Exception as e:
            errors.append(e)

    fill(replay, 6)
    threads = [threading.Thread(target=adder, args=(w,)) for w in (1, 2)]
    threads += [threading.Thread(target=sampler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads[:2]:
        thread.join()
    stop.set()
    for thread in threads[2:]:
        thread.join()
    assert not errors, errors
    assert len(replay) == 50
    assert_contiguous(replay.sample(50)['x'], 6)


@pytest.fixture
def saved(tmp_path):
    """A replay with several workers and chunks shorter than the items, saved to disk."""
    directory = tmp_path / 'replay'
    replay = Replay(7, capacity=200, directory=directory, chunksize=3, selector=Cycle())
    fill(replay, 25, workers=3)
    entry = replay.save()
    # The checkpoint entry lists exactly the chunk files on disk.
    assert entry == {'chunks': sorted(os.listdir(directory))}
    return replay, directory


def test_save_writes_complete_named_files(saved):
    replay, directory = saved
    names = sorted(os.listdir(directory))
    assert names and all(n.endswith('.npz') for n in names)  # no temporary files left
    total = 0
    for name in names:
        time_, uuid, succ, length = chunklib.parse_filename(name)
        assert len(time_) == len('20240101T000000F000000')
        chunk = chunklib.Chunk.load(directory / name)
        assert chunk.uuid == uuid and chunk.succ == succ and chunk.length == length
        assert set(chunk.data) == {'x', 'image', 'is_first', 'is_last', 'stepid'}
        total += length
    assert total == 3 * 25
    # Saving again writes only what is new.
    fill(replay, 2, workers=3, offset=25)
    replay.save()
    assert len(os.listdir(directory)) == len(names) + 3


def test_waiting_save_also_waits_for_earlier_writes(tmp_path, monkeypatch):
    # A process (the parallel replay role) exits right after a waiting save; chunk writes an
    # earlier background save started must be on disk by then.
    release = threading.Event()
    original = chunklib.Chunk.save

    def slow_save(chunk, directory):
        release.wait(timeout=30)
        return original(chunk, directory)

    monkeypatch.setattr(chunklib.Chunk, 'save', slow_save)
    directory = tmp_path / 'replay'
    replay = Replay(7, capacity=200, directory=directory, chunksize=3, selector=Cycle())
    fill(replay, 10, workers=2)
    assert replay.save(wait=False) is None
    assert not list(directory.glob('*.npz'))  # still in flight
    expected = [c for c in replay.chunks.values() if c.length]
    threading.Timer(0.2, release.set).start()
    replay.save()  # nothing new to write, but the earlier writes are awaited
    assert len(list(directory.glob('*.npz'))) == len(expected)
    assert not replay.writing


def test_save_and_load_restore_items(saved):
    replay, directory = saved
    before = all_items(replay)
    loaded = Replay(7, capacity=200, directory=directory, chunksize=3, selector=Cycle())
    loaded.load()
    assert len(loaded) == len(replay) == 3 * (25 - 7 + 1)
    after = all_items(loaded)
    order = lambda d: np.argsort(d['x'][:, 0])
    for key in before:
        np.testing.assert_array_equal(before[key][order(before)], after[key][order(after)])
    loaded.load()  # loading twice adds nothing
    assert len(loaded) == len(replay)
    # New steps continue into fresh chunks, and saved chunks are not written again.
    fill(loaded, 1, workers=1, offset=25)
    assert len(loaded) == len(replay)
    assert loaded.stats()['inserts'] == 1


def test_load_respects_capacity_and_keeps_newest(saved):
    _, directory = saved
    loaded = Replay(7, capacity=10, directory=directory, chunksize=3, selector=Cycle())
    loaded.load()
    assert len(loaded) == 10
    x = all_items(loaded)['x']
    assert_contiguous(x, 7)
    assert set((x[:, -1] % WORKER).tolist()) <= set(range(20, 25))
    assert max(x[:, -1] % WORKER) == 24
    loaded.load()
    assert len(loaded) == 10


def test_load_amount(saved):
    _, directory = saved
    loaded = Replay(7, capacity=200, directory=directory, chunksize=3, selector=Cycle())
    loaded.load(amount=5)
    assert 5 <= len(loaded) < 3 * 19


def test_partial_loads_link_chunks_and_free_them(saved):
    _, directory = saved
    files = {chunklib.parse_filename(n)[1] for n in os.listdir(directory)}
    loaded = Replay(7, capacity=60, directory=directory, chunksize=3, selector=Cycle())
    loaded.load(amount=5)  # the newest chunks only
    first = len(loaded)
    loaded.load()  # then older chunks, whose successors are already held
    assert first < len(loaded) <= 60
    assert_contiguous(all_items(loaded)['x'], 7)
    # New data evicts all loaded items, and every loaded chunk is released with them: the end
    # of a stream that worker 9 continues as well as the ends no worker continues.
    for index in range(80):
        loaded.add(make_step(9, index), worker=9)
        assert_contiguous_episodes(loaded.sample(2), 7)
    assert not files & set(loaded.chunks)
    assert not loaded.tails
    assert len(loaded.chunks) <= (60 + 7) // 3 + 2


def test_loading_successors_later_keeps_chains_alive(saved, tmp_path):
    _, directory = saved
    newer = tmp_path / 'newer'
    newer.mkdir()
    names = sorted(os.listdir(directory))
    for name in names[len(names) // 2 :]:
        os.rename(directory / name, newer / name)
    loaded = Replay(7, capacity=60, directory=directory, chunksize=3, selector=Cycle())
    loaded.load()  # older chunks whose successors are missing
    loaded.load(directory=newer)  # now the successors arrive
    # Items that start at the ends of the older chunks start once their successors arrive.
    assert len(loaded) == 3 * (25 - 7 + 1)
    # Evict items one by one; every remaining item must still resolve to all of its steps.
    for index in range(60 + 7):
        loaded.add(make_step(9, index), worker=9)
        for itemid, (uuid, start) in loaded.items.items():
            assert loaded._segments(uuid, start, 7) is not None, itemid


def test_load_skips_corrupt_file(saved, capsys):
    replay, directory = saved
    names = sorted(os.listdir(directory))
    # Corrupt the oldest chunk of some worker: only the items that start in it are lost.
    victim = names[0]
    with open(directory / victim, 'wb') as f:
        f.write(b'not a zip file')
    loaded = Replay(7, capacity=200, directory=directory, chunksize=3, selector=Cycle())
    loaded.load()
    assert 'unreadable' in capsys.readouterr().out
    assert 0 < len(loaded) < len(replay)
    assert_contiguous(all_items(loaded)['x'], 7)


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    chunk = chunklib.Chunk(4)
    chunk.append({'x': np.zeros(3)})

    def broken(file, **arrays):
        file.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(np, 'savez_compressed', broken)
    with pytest.raises(OSError, match='disk full'):
        chunk.save(tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('length,chunksize,capacity', itertools.product([1, 4], [1, 3], [2, 50]))
def test_save_load_small_configs(tmp_path, length, chunksize, capacity):
    replay = Replay(length, capacity, directory=tmp_path, chunksize=chunksize, selector=Cycle())
    fill(replay, 9, workers=2)
    replay.save()
    loaded = Replay(length, capacity, directory=tmp_path, chunksize=chunksize, selector=Cycle())
    loaded.load()
    assert len(loaded) == len(replay)
    a, b = all_items(replay)['x'], all_items(loaded)['x']
    assert_contiguous(b, length)
    if capacity > len(replay):
        assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))
    else:
        # Whole chunks are loaded newest first, so the newest items of one worker may win.
        assert (b[:, -1] % WORKER == 8).any()


def test_failed_chunk_write_raises_and_is_retried(tmp_path, monkeypatch):
    original = chunklib.Chunk.save
    broken = {'on': True}

    def flaky(chunk, directory):
        if broken['on']:
            raise OSError(28, 'No space left on device')
        return original(chunk, directory)

    monkeypatch.setattr(chunklib.Chunk, 'save', flaky)
    replay = Replay(2, capacity=100, directory=tmp_path, chunksize=4, selector=Cycle())
    fill(replay, 6, workers=2)
    with pytest.raises(embodied.replay.SaveError, match=r'Replay \S+ could not write the chunk'):
        replay.save()
    assert not replay.saved  # nothing counts as saved that is not on disk
    # A background save reports its failure at the next save.
    fill(replay, 1, workers=2, offset=6)
    assert replay.save(wait=False) is None
    time.sleep(0.2)
    with pytest.raises(embodied.replay.SaveError, match='No space left on device'):
        replay.save(wait=False)
    broken['on'] = False
    entry = replay.save()
    assert sum(chunklib.parse_filename(n)[3] for n in entry['chunks']) == 2 * 7
    assert sorted(os.listdir(tmp_path)) == entry['chunks']


def test_load_with_an_entry_loads_only_the_listed_chunks(tmp_path, capsys):
    replay = Replay(2, capacity=100, directory=tmp_path, chunksize=4, selector=Cycle())
    fill(replay, 5, workers=2)
    entry = replay.save()
    # Steps saved after the checkpoint by a run that then died before its next checkpoint.
    fill(replay, 3, workers=2, offset=5)
    replay.save()
    loaded = Replay(2, capacity=100, directory=tmp_path, chunksize=4, selector=Cycle())
    loaded.load(entry)
    assert sum(c.length for c in loaded.chunks.values()) == 2 * 5
    assert len(loaded) == 2 * (5 - 2 + 1)
    out = capsys.readouterr().out
    assert 'loaded 10 steps' in out and 'leaves out 2 chunk files (6 steps) newer' in out
    # Without an entry (checkpoints of earlier versions), every file is loaded.
    everything = Replay(2, capacity=100, directory=tmp_path, chunksize=4, selector=Cycle())
    everything.load()
    assert sum(c.length for c in everything.chunks.values()) == 2 * 8


def test_damaged_chunk_moves_to_corrupt(saved, capsys):
    _, directory = saved
    victim = sorted(os.listdir(directory))[0]
    (directory / victim).write_bytes(b'not a zip file')
    loaded = Replay(7, capacity=200, directory=directory, chunksize=3, selector=Cycle())
    loaded.load()
    out = capsys.readouterr().out
    assert f'skips the unreadable chunk {victim}' in out and 'Traceback' not in out
    assert (directory / 'corrupt' / victim).exists() and not (directory / victim).exists()
    again = Replay(7, capacity=200, directory=directory, chunksize=3, selector=Cycle())
    again.load()
    assert 'skips the unreadable chunk' not in capsys.readouterr().out


def test_name_comes_from_the_folder(tmp_path):
    assert Replay(2, directory=tmp_path / 'eval_replay').name == 'eval_replay'
    assert Replay(2).name == 'replay'
    assert Replay(2, name='train').name == 'train'


def test_damaged_chunk_of_a_folder_only_read_stays_in_place(saved, capsys):
    _, directory = saved
    victim = sorted(os.listdir(directory))[0]
    (directory / victim).write_bytes(b'not a zip file')
    loaded = Replay(7, capacity=200, chunksize=3, selector=Cycle())  # no folder of its own
    loaded.load(directory=directory)
    assert 'not moved out of a folder this replay only reads' in capsys.readouterr().out
    assert (directory / victim).exists() and not (directory / 'corrupt').exists()
    assert len(loaded) > 0


def episode(replay, steps, workers, offset):
    """Add a new episode of `steps` steps per worker, numbered on from `offset`."""
    for index in range(offset, offset + steps):
        for worker in range(workers):
            replay.add({**make_step(worker, index), 'is_first': index == offset}, worker)


def listed_steps(entry):
    return sum(chunklib.parse_filename(name)[3] for name in entry['chunks'])


def held_steps(replay):
    return sum(chunk.length for chunk in replay.chunks.values())


def resumed(directory, entry):
    replay = Replay(5, capacity=500, directory=directory, chunksize=8, selector=Cycle())
    replay.load(entry)
    return replay


def test_a_short_stretch_after_a_resume_stays_in_the_checkpoint(tmp_path, capsys):
    first = Replay(5, capacity=500, directory=tmp_path, chunksize=8, selector=Cycle())
    fill(first, 12, workers=2)
    entry = first.save()
    # A resumed run adds fewer steps per worker than an item holds, then saves.
    second = resumed(tmp_path, entry)
    assert 'The last 8 steps of 2 streams start no item yet' in capsys.readouterr().out
    episode(second, 3, workers=2, offset=12)
    entry = second.save()
    assert listed_steps(entry) == 2 * 15
    third = resumed(tmp_path, entry)
    assert held_steps(third) == 2 * 15
    # The short stretch continued the loaded streams: its steps start and end items.
    assert len(third) == 2 * (15 - 5 + 1)
    batch = all_items(third)
    assert_contiguous_episodes(batch, 5)
    steps = batch['x'] % WORKER
    assert ((steps[:, 0] < 12) & (steps[:, -1] >= 12)).any()
    assert listed_steps(third.save()) == 2 * 15


def test_a_stream_starting_mid_episode_leaves_loaded_ends_alone(tmp_path):
    first = Replay(5, capacity=500, directory=tmp_path, chunksize=8, selector=Cycle())
    fill(first, 12, workers=2)
    second = resumed(tmp_path, first.save())
    ends = {second.chunks[tail].succ for tail in second.tails}
    fill(second, 3, workers=1, offset=50)  # no is_first: nothing marks a boundary
    assert second.current[0] not in ends and len(second.tails) == 2
    assert len(second) == 2 * (12 - 5 + 1)
    entry = second.save()
    assert listed_steps(entry) == 2 * 12 + 3
    assert held_steps(resumed(tmp_path, entry)) == 2 * 12 + 3


def test_an_end_whose_successor_file_exists_is_not_continued(tmp_path, capsys):
    replay = Replay(3, capacity=100, directory=tmp_path, chunksize=4, selector=Cycle())
    fill(replay, 6, workers=2)
    entry = replay.save()
    fill(replay, 3, workers=2, offset=6)  # written after the checkpoint
    replay.save()
    loaded = Replay(3, capacity=100, directory=tmp_path, chunksize=4, selector=Cycle())
    loaded.load(entry)
    assert '4 steps of 2 of these streams cannot be continued' in capsys.readouterr().out
    successors = {loaded.chunks[tail].succ for tail in loaded.tails}
    episode(loaded, 1, workers=1, offset=6)
    # A new chunk under an existing file's uuid would repeat that file's step ids.
    assert loaded.current[0] not in successors and len(loaded.tails) == 2
    assert listed_steps(loaded.save()) == 2 * 6 + 1
