"""Rate limiting between replay inserts and samples, and a blocking wait helper."""

import time
from collections.abc import Callable


class SamplesPerInsert:
    """Keeps the number of sampled items per inserted item near a target ratio.

    State: `size` counts inserts and `avail` counts sample permissions left. `avail` starts at
    -minsize (as in the reference), so the first sample comes
    roughly (minsize - tolerance) / samples_per_insert inserts after the replay holds `minsize`
    items. A non-positive `samples_per_insert` disables the limit in both directions.
    """

    def __init__(self, samples_per_insert: float, tolerance: float, minsize: int):
        if minsize < 0:
            raise ValueError(f'minsize={minsize} must be >= 0 (number of inserts before sampling)')
        self.samples_per_insert = samples_per_insert
        self.tolerance = tolerance
        self.minsize = minsize
        self.size = 0
        self.avail = -minsize

    def want_insert(self) -> bool:
        """Whether one more insert keeps the ratio within tolerance."""
        if self.size < self.minsize or self.samples_per_insert <= 0:
            return True
        return self.avail < self.tolerance * self.samples_per_insert

    def want_sample(self) -> bool:
        """Whether one more sample keeps the ratio within tolerance."""
        if self.size < self.minsize:
            return False
        if self.samples_per_insert <= 0:
            return True
        return self.avail > -self.tolerance

    def insert(self) -> None:
        """Record one insert."""
        self.size += 1
        if self.size >= self.minsize:
            self.avail += self.samples_per_insert

    def sample(self) -> None:
        """Record one consumed sample permission."""
        self.avail -= 1

    def save(self) -> dict[str, float]:
        """Return the checkpointable state."""
        return {'size': self.size, 'avail': self.avail}

    def load(self, data: dict[str, float]) -> None:
        """Restore the state written by `save`."""
        self.size = data['size']
        self.avail = data['avail']


def wait(
    predicate: Callable[[], bool], message: str, sleep: float = 0.01, notify: float = 60
) -> float:
    """Block until `predicate()` is true and return the seconds spent waiting.

    Prints `message` with the time waited so far every `notify` seconds, so a stalled producer
    or consumer is visible in the logs.
    """
    if predicate():
        return 0.0
    start = last = time.monotonic()
    while not predicate():
        now = time.monotonic()
        if now - last >= notify:
            print(f'{message} (waiting for {now - start:.0f}s)', flush=True)
            last = now
        time.sleep(sleep)
    return time.monotonic() - start
