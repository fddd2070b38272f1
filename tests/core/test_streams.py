"""Behaviour of the replay-to-agent streams: chunking, prefetching, zipping, state."""

import threading
import time

import numpy as np
import pytest

from embodied.core import streams

# numpy-only and version-sensitive: also runs under the reference pin in CI.
pytestmark = pytest.mark.pinned


class Counting:
    """A saveable source that yields {'step': (B, T)} arrays counting up from its position."""

    def __init__(self, batch=2, length=7):
        self.batch = batch
        self.length = length
        self.position = 0
        self.calls = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.calls += 1
        start = self.position * self.length
        steps = np.arange(start, start + self.length, dtype=np.int64)
        self.position += 1
        return {
            'step': np.tile(steps[None], (self.batch, 1)),
            'is_first': np.zeros((self.batch, self.length), bool),
        }

    def save(self):
        return {'position': self.position}

    def load(self, state):
        self.position = state['position']


def test_stateless_calls_function_with_args():
    calls = []
    st = streams.Stateless(lambda a, b: calls.append((a, b)) or len(calls), 1, b'x')
    assert [next(st) for _ in range(3)] == [1, 2, 3]
    assert calls == [(1, b'x')] * 3
    assert st.save() is None
    st.load(None)
    assert iter(st) is st


def test_stateless_accepts_iterator():
    st = streams.Stateless(iter([5, 6]))
    assert next(st) == 5 and next(st) == 6


def test_consec_chunks_overlap_by_prefix_and_carry_index():
    # length 3, consec 3, prefix 2 -> long samples of exactly 11 steps.
    source = Counting(batch=2, length=11)
    st = iter(streams.Consec(source, length=3, consec=3, prefix=2, contiguous=True))
    chunks = [next(st) for _ in range(4)]
    assert source.calls == 2  # three chunks per long sample
    np.testing.assert_array_equal(chunks[0]['step'][0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(chunks[1]['step'][0], [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(chunks[2]['step'][1], [6, 7, 8, 9, 10])
    np.testing.assert_array_equal(chunks[3]['step'][0], [11, 12, 13, 14, 15])
    for i, chunk in enumerate(chunks):
        assert chunk['consec'].dtype == np.int32
        assert chunk['consec'].shape == (2, 5)
        assert (chunk['consec'] == i % 3).all()
        assert all(v.flags['C_CONTIGUOUS'] for v in chunk.values())
        assert chunk['is_first'].shape == (2, 5)


def test_consec_strict_length_mismatch_raises():
    st = streams.Consec(Counting(length=12), length=3, consec=3, prefix=2, strict=True)
    with pytest.raises(ValueError, match='exactly .* 11 steps .* yielded 12'):
        next(st)
    loose = streams.Consec(Counting(length=12), length=3, consec=3, prefix=2, strict=False)
    assert next(loose)['step'].shape == (2, 5)
    short = streams.Consec(Counting(length=10), length=3, consec=3, prefix=2, strict=False)
    with pytest.raises(ValueError, match='at least'):
        next(short)


def test_consec_save_load_restarts_at_fresh_sample():
    source = Counting(length=4)
    st = streams.Consec(source, length=2, consec=2, prefix=0)
    next(st)
    state = st.save()
    assert state == {'source': {'position': 1}, 'index': 1}
    restored = streams.Consec(Counting(length=4), length=2, consec=2, prefix=0)
    restored.load(state)
    chunk = next(restored)
    # Continues with the next long sample (position 1 -> steps 4..7), starting at chunk 0.
    np.testing.assert_array_equal(chunk['step'][0], [4, 5])
    assert (chunk['consec'] == 0).all()


def test_prefetch_applies_transform_and_fetches_ahead():
    source = Counting(length=3)
    st = streams.Prefetch(source, lambda x: {**x, 'double': 2 * x['step']}, amount=2)
    first = next(st)
    np.testing.assert_array_equal(first['double'][0], [0, 2, 4])
    deadline = time.time() + 5
    while source.calls < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert source.calls == 3  # one consumed plus two ahead, and no more
    time.sleep(0.05)
    assert source.calls == 3
    np.testing.assert_array_equal(next(st)['step'][0], [3, 4, 5])
    st.close()
    assert not st.worker.is_alive()


def test_prefetch_reraises_errors_in_consumer():
    def failing():
        raise KeyError('replay is empty')

    st = streams.Prefetch(streams.Stateless(failing))
    with pytest.raises(KeyError, match='replay is empty'):
        next(st)
    with pytest.raises(KeyError):
        next(st)


def test_prefetch_transform_error_and_end_of_source():
    st = streams.Prefetch(iter([1, 2]), transform=lambda x: 10 // (x - 2))
    assert next(st) == -10
    with pytest.raises(ZeroDivisionError):
        next(st)
    finite = streams.Prefetch(iter([1]))
    assert list(finite) == [1]


def test_prefetch_save_load_redraws_unconsumed_items():
    source = Counting(length=2)
    st = streams.Prefetch(source, amount=3)
    assert st.save() == {'position': 0}
    next(st)
    next(st)
    state = st.save()
    assert state == {'position': 2}  # prefetched items beyond the consumer are not counted
    # Restoring into a fresh stream continues with item 2.
    fresh = streams.Prefetch(Counting(length=2), amount=3)
    fresh.load(state)
    np.testing.assert_array_equal(next(fresh)['step'][0], [4, 5])
    # Loading into a running stream drops what it had prefetched.
    st.load({'position': 0})
    np.testing.assert_array_equal(next(st)['step'][0], [0, 1])
    np.testing.assert_array_equal(next(st)['step'][0], [2, 3])
    st.close()
    fresh.close()


def test_prefetch_with_consec_checkpoint_roundtrip():
    source = Counting(length=4)
    st = streams.Prefetch(streams.Consec(source, length=2, consec=2), amount=2)
    for _ in range(3):
        next(st)
    state = st.save()
    restored = streams.Prefetch(streams.Consec(Counting(length=4), length=2, consec=2))
    restored.load(state)
    chunk = next(restored)
    assert (chunk['consec'] == 0).all()
    np.testing.assert_array_equal(chunk['step'][0], [8, 9])
    st.close()
    restored.close()


def test_prefetch_runs_in_background_thread():
    threads = []
    st = streams.Prefetch(streams.Stateless(lambda: threads.append(threading.current_thread())))
    next(st)
    assert threads[0] is not threading.main_thread()
    st.close()


def test_zip_concatenates_along_batch_and_saves_each_source():
    a, b = Counting(batch=2, length=3), Counting(batch=3, length=3)
    st = streams.Zip([a, b])
    item = next(st)
    assert item['step'].shape == (5, 3)
    np.testing.assert_array_equal(item['step'][:, 0], [0, 0, 0, 0, 0])
    assert st.save() == [{'position': 1}, {'position': 1}]
    st.load([{'position': 4}, {'position': 0}])
    item = next(st)
    np.testing.assert_array_equal(item['step'][:, 0], [12, 12, 0, 0, 0])
    with pytest.raises(ValueError, match='2 sources'):
        st.load([None])


def test_zip_nested_dicts():
    parts = [{'a': {'b': np.ones((1, 2))}}], [{'a': {'b': np.zeros((2, 2))}}]
    st = streams.Zip([iter(part) for part in parts])
    np.testing.assert_array_equal(next(st)['a']['b'][:, 0], [1, 0, 0])


def test_map_applies_function_and_forwards_state():
    source = Counting(length=2)
    st = streams.Map(source, lambda x: x['step'].sum())
    assert next(st) == 2
    assert next(st) == 2 * (2 + 3)
    assert st.save() == {'position': 2}
    st.load({'position': 0})
    assert next(st) == 2
