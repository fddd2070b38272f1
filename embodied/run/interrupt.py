"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and Slurm send).

The first signal only sets a flag: the run loop finishes the current update, saves a checkpoint
and exits with status 0. From then on both signals have their default action again, so a second
Ctrl-C ends the process at once, even while it waits in native code. Env worker processes
ignore both signals (`shield`): a Ctrl-C in a terminal reaches the whole process group, and the
workers must keep stepping until their parent has finished the last update and closes them.

While a run starts (`Startup`, from the command line's first step until the loop begins), there
is nothing new to save: a signal then ends the process within a second with status 0, even
while the main thread waits inside XLA compiling, where a Python handler would only run once
the compilation returns.
"""

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

from . import lifetime

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
        if _starting.is_set():
            _end_now(signum)
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


# Set while the run starts; `started()` clears it once the loop begins.
_starting = threading.Event()
_ending = threading.Lock()


class Startup:
    """Context manager for a run's start: SIGINT or SIGTERM end the process at once, exit 0.

    The signal's byte arrives on a wakeup socket that a watcher thread reads, so the process
    ends within a second even while the main thread is inside native code. Child processes
    (environment workers) are killed first. Outside the main thread it does nothing.
    """

    def __init__(self, signals: tuple = SIGNALS):
        self.signals = tuple(signals)
        self._previous = {}
        self._wakeup = None
        self._sockets = ()

    def __enter__(self) -> 'Startup':
        if threading.current_thread() is not threading.main_thread():
            return self
        read, write = socket.socketpair()
        write.setblocking(False)
        self._sockets = (read, write)
        self._wakeup = signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, _ignore_while_starting)
        _starting.set()
        threading.Thread(target=self._watch, args=(read,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if not self._sockets:
            return
        _starting.clear()
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) is _ignore_while_starting:
                signal.signal(signum, handler)
        signal.set_wakeup_fd(self._wakeup)
        for sock in self._sockets:
            sock.close()  # Ends the watcher.

    def _watch(self, read: socket.socket) -> None:
        while True:
            try:
                data = read.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in self.signals and _starting.is_set():
                    _end_now(signum)


def starting() -> bool:
    """Whether the run is still starting (inside `Startup`, before its loop began)."""
    return _starting.is_set()


def started() -> None:
    """The run loop begins: from now on a signal stops it after the current update, saving."""
    _starting.clear()


def _ignore_while_starting(signum, frame):
    # Runs once the main thread is back in Python code (the watcher acts sooner when it is
    # not). Once the run has started, a signal that reaches no handler of the run takes its
    # default action.
    if _starting.is_set():
        _end_now(signum)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _end_now(signum: int) -> None:
    # The watcher and a handler may both get here; the first one ends the process.
    if not _ending.acquire(blocking=False):
        threading.Event().wait()  # The other caller exits the process meanwhile.
    name = signal.Signals(signum).name
    lifetime.end_now(f'Received {name} while starting: nothing to save yet, stopped.', 0)
