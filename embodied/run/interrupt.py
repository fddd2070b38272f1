"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and Slurm send).

The first signal only sets a flag: the run loop finishes the current update, saves a checkpoint
and exits with status 0. From then on both signals have their default action again, so a second
Ctrl-C ends the process at once, even while it waits in native code. Env worker processes
ignore both signals (`shield`): a Ctrl-C in a terminal reaches the whole process group, and the
workers must keep stepping until their parent has finished the last update and closes them.
"""

import signal
import sys
import threading
from collections.abc import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt:
    """Context manager that turns the first SIGINT or SIGTERM into a stop request.

    `requested` is true once a signal arrived and `signame` names it. `callback(signum)`, if
    given, runs in the main thread when the first signal arrives (e.g. to tell other processes
    to stop). Outside the main thread, where Python cannot install signal handlers, the manager
    does nothing and `requested` stays false unless `request()` is called.
    """

    def __init__(
        self,
        callback: Callable[[int], None] | None = None,
        signals: tuple = SIGNALS,
        announce: bool = True,
    ):
        self.callback = callback
        self.signals = tuple(signals)
        self.announce = announce
        self.signum = None
        self._previous = {}
        self._depth = 0  # nested `with` blocks of the same manager install the handlers once

    @property
    def requested(self) -> bool:
        """Whether a stop was requested."""
        return self.signum is not None

    @property
    def signame(self) -> str:
        """The name of the signal that requested the stop ('' when none did)."""
        return signal.Signals(self.signum).name if self.signum is not None else ''

    def __enter__(self) -> 'Interrupt':
        self._depth += 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def request(self, signum: int = signal.SIGINT) -> None:
        """Request a stop as if `signum` had arrived (the first request wins)."""
        if self.signum is not None:
            return
        self.signum = signum
        if self.announce:
            key = 'Ctrl-C' if signum == signal.SIGINT else f'{self.signame} or Ctrl-C'
            print(
                f'Received {self.signame}: stopping after the current update and saving a '
                f'checkpoint. Send {key} again to quit at once without saving.',
                flush=True,
            )
        if self.callback is not None:
            self.callback(signum)

    def _handle(self, signum, frame):
        # A second signal should end the process even if the main thread is stuck in native
        # code, where a Python handler would never run: restore the default actions.
        for each in self._previous:
            signal.signal(each, signal.SIG_DFL)
        sys.stdout.flush()
        self.request(signum)


def shield() -> None:
    """Ignore SIGINT and SIGTERM in this process (for workers that their parent stops)."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
