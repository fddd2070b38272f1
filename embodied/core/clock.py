"""Wall-clock timers that decide when to log, report and save.

One convention for every clock in this project: a period of 0 or a negative period
means "never". A clock returns `first` on its first call and afterwards True whenever at least
`every` seconds have passed since it last returned True (or since the first call).

`Ratio` (train updates per env step) is `elements.when.Ratio`, re-exported here unchanged.
"""

import time

from elements.when import Ratio  # noqa: F401


class LocalClock:
    """Fires at most once per `every` seconds of wall time in this process."""

    def __init__(self, every: float, first: bool = False):
        self.every = float(every)
        self.first = bool(first)
        self._prev = None

    def __call__(self, step: int | None = None) -> bool:
        """Return whether the period has elapsed; `step` is accepted and ignored."""
        if self.every <= 0:
            return False
        now = time.monotonic()
        if self._prev is None:
            self._prev = now
            return self.first
        if now - self._prev >= self.every:
            self._prev = now
            return True
        return False
