"""Iterator building blocks between replay and the agent: sampling, chunking, prefetching.

Every stream is an iterator with `save() -> state` and `load(state)`, so a training loop can
checkpoint its position. Sources that are plain iterators (no save/load) count as stateless.
"""

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import elements
import numpy as np


def _save(source):
    """State of a source, or None when it keeps none."""
    return source.save() if hasattr(source, 'save') else None


def _load(source, state):
    """Restore a source's state when it supports that."""
    if hasattr(source, 'load'):
        source.load(state)


class Stream:
    """Base class: an iterator whose position can be saved and restored."""

    def __iter__(self) -> 'Stream':
        return self

    def __next__(self) -> Any:
        raise NotImplementedError('__next__() -> item')

    def save(self) -> Any:
        """Return a picklable description of the current position."""
        raise NotImplementedError('save() -> state')

    def load(self, state: Any) -> None:
        """Continue from a state returned by save()."""
        raise NotImplementedError('load(state) -> None')


class Stateless(Stream):
    """Calls `fn(*args)` for every item; has no position (e.g. random replay sampling)."""

    def __init__(self, fn: Callable | Iterable, *args: Any):
        if not callable(fn) and hasattr(fn, '__next__'):
            fn = fn.__next__
        if not callable(fn):
            raise TypeError(f'Stateless needs a callable or an iterator, got {type(fn).__name__}.')
        self.fn = fn
        self.args = args

    def __next__(self) -> Any:
        return self.fn(*self.args)

    def save(self) -> None:
        """Nothing to save: there is no position."""
        return None

    def load(self, state: Any) -> None:
        """Nothing to restore."""


class Consec(Stream):
    """Cuts each long sample of the source into `consec` consecutive, overlapping chunks.

    The source yields dicts of arrays shaped (B, T_long, ...). With length=3, consec=3 and
    prefix=2, chunk i covers steps [3i, 3i + 5):

        source:   0 1 2 3 4 5 6 7 8 9 10
        chunk 0:  p p # # #
        chunk 1:        p p # # #
        chunk 2:              p p # # #

    Every chunk gets an int32 key `consec` = i of shape (B, length + prefix).
    """

    def __init__(
        self,
        source: Iterable,
        length: int,
        consec: int,
        prefix: int = 0,
        strict: bool = True,
        contiguous: bool = False,
    ):
        if length < 1 or consec < 1 or prefix < 0:
            raise ValueError(
                f'Consec needs length >= 1, consec >= 1, prefix >= 0; got length={length}, '
                f'consec={consec}, prefix={prefix}.'
            )
        self.source = source
        self.length = length
        self.consec = consec
        self.prefix = prefix
        self.strict = strict
        self.contiguous = contiguous
        self.iterator = None
        self.current = None
        self.index = 0

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = iter(self.source)
        if self.current is None or self.index >= self.consec:
            self.current = self._draw()
            self.index = 0
        start = self.index * self.length
        stop = start + self.length + self.prefix
        chunk = {k: v[:, start:stop] for k, v in self.current.items()}
        batch = next(iter(chunk.values())).shape[0]
        chunk['consec'] = np.full((batch, stop - start), self.index, np.int32)
        if self.contiguous:
            # Slices are views into the long sample; copying once here makes later
            # serialisation and device transfers cheaper.
            chunk = {k: np.ascontiguousarray(v) for k, v in chunk.items()}
        self.index += 1
        return chunk

    def _draw(self):
        data = next(self.iterator)
        if not data:
            raise ValueError('Consec received an empty batch from its source.')
        need = self.consec * self.length + self.prefix
        have = next(iter(data.values())).shape[1]
        if have < need or (self.strict and have != need):
            relation = 'exactly' if self.strict else 'at least'
            raise ValueError(
                f'Consec needs samples of {relation} consec*length+prefix = {self.consec}*'
                f'{self.length}+{self.prefix} = {need} steps but the source yielded {have}; '
                f'make the replay length match.'
            )
        return data

    def save(self) -> Any:
        """State of the position (see Stream.save)."""
        return {'source': _save(self.source), 'index': self.index}

    def load(self, state: Any) -> None:
        """Continue from a saved position (see Stream.load)."""
        _load(self.source, state['source'])
        # The partly used long sample is not part of the state, so continue with a fresh one:
        # chunk 0 must always begin a new sample because consumers reset their carry there.
        self.current = None
        self.index = 0


class Prefetch(Stream):
    """Fetches and transforms up to `amount` items ahead of the consumer in a thread.

    Exceptions raised by the source or the transform are re-raised in the consumer. `save()`
    returns the source state right after the last consumed item was drawn, so items that were
    prefetched but not consumed are drawn again after `load()`.
    """

    _END = object()

    def __init__(
        self, source: Iterable | Callable, transform: Callable | None = None, amount: int = 1
    ):
        if amount < 1:
            raise ValueError(f'Prefetch amount must be >= 1, got {amount}.')
        self.source = iter(source) if hasattr(source, '__iter__') else source()
        self.transform = transform or (lambda x: x)
        self.amount = amount
        self.state = _save(self.source)
        self.queue = queue.Queue()
        self.requests = threading.Semaphore(amount)
        # Held while the worker draws one item, so load() can pause production between items.
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.worker = None
        self.failed = None

    def __next__(self) -> Any:
        if self.failed is not None:
            raise self.failed
        self._start()
        while True:
            try:
                result = self.queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.worker.is_alive():
                    raise RuntimeError('Prefetch worker thread stopped without a result.')
        if result is self._END:
            self.failed = StopIteration()
            raise StopIteration
        if isinstance(result, BaseException):
            self.failed = result
            raise result
        self.requests.release()
        item, self.state = result
        return item

    def save(self) -> Any:
        """State of the position (see Stream.save)."""
        return self.state

    def load(self, state: Any) -> None:
        """Continue from a saved position (see Stream.load)."""
        if self.stopping.is_set():
            raise RuntimeError('Prefetch.load() after close(); build a new Prefetch stream.')
        if self.worker is not None and not self.worker.is_alive():
            # The worker ended on an error or the end of the source; start over after loading.
            self.worker = None
            self.queue = queue.Queue()
            self.requests = threading.Semaphore(self.amount)
        with self.lock:
            # Drop items drawn from the old position and hand their slots back to the worker.
            while True:
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    break
                self.requests.release()
            _load(self.source, state)
            self.state = state
            self.failed = None

    def close(self) -> None:
        """Stop the worker thread; further items raise StopIteration."""
        self.stopping.set()
        self.requests.release()
        if self.worker is not None and self.worker is not threading.current_thread():
            self.worker.join(timeout=10)
        self.failed = StopIteration()

    def _start(self):
        if self.worker is None:
            self.worker = threading.Thread(target=self._work, daemon=True, name='Prefetch')
            self.worker.start()

    def _work(self):
        while not self.stopping.is_set():
            if not self.requests.acquire(timeout=0.5):
                continue
            if self.stopping.is_set():
                return
            with self.lock:
                try:
                    item = self.transform(next(self.source))
                    state = _save(self.source)
                except StopIteration:
                    self.queue.put(self._END)
                    return
                except BaseException as error:
                    self.queue.put(error)
                    return
                self.queue.put((item, state))


class Zip(Stream):
    """Draws one item from each source and concatenates them along axis 0."""

    def __init__(self, sources: Sequence[Iterable]):
        if len(sources) < 1:
            raise ValueError('Zip needs at least one source.')
        self.sources = list(sources)
        self.iterators = None

    def __next__(self) -> Any:
        if self.iterators is None:
            self.iterators = [iter(source) for source in self.sources]
        parts = [next(it) for it in self.iterators]
        return elements.tree.map(lambda *xs: np.concatenate(xs, 0), *parts)

    def save(self) -> Any:
        """State of the position (see Stream.save)."""
        return [_save(it) for it in (self.iterators or self.sources)]

    def load(self, state: Any) -> None:
        """Continue from a saved position (see Stream.load)."""
        if len(state) != len(self.sources):
            raise ValueError(
                f'Zip state has {len(state)} entries but there are {len(self.sources)} '
                'sources; the stream was built differently than the saved one.'
            )
        if self.iterators is None:
            self.iterators = [iter(source) for source in self.sources]
        for it, sub in zip(self.iterators, state):
            _load(it, sub)


class Map(Stream):
    """Applies `fn` to every item of the source."""

    def __init__(self, source: Iterable, fn: Callable):
        self.source = source
        self.fn = fn
        self.iterator = None

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = iter(self.source)
        return self.fn(next(self.iterator))

    def save(self) -> Any:
        """State of the position (see Stream.save)."""
        return _save(self.iterator or self.source)

    def load(self, state: Any) -> None:
        """Continue from a saved position (see Stream.load)."""
        if self.iterator is None:
            self.iterator = iter(self.source)
        _load(self.iterator, state)
