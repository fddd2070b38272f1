"""Worker processes end with the process that started them, however it ends.

A worker of a run (a `parallel` role, an environment process) is useless once its parent is
gone, and left running it keeps using the machine and the logdir. When the parent ends by an
exception or a signal it can stop its workers itself; when it is killed with SIGKILL (an OOM
kill, a preemption) it cannot. So each worker watches its parent: once the parent has gone (the
worker is handed to another process), it kills its own children and exits. The check is a pid
comparison every `POLL` seconds, which works on every platform, unlike Linux's parent-death
signal, which also fires when the starting thread (not process) of the parent ends.
"""

import contextlib
import os
import sys
import threading

import psutil

# Seconds between checks of the parent; a killed parent's workers are gone within about this.
POLL = 1.0


def end_with_parent(poll: float = POLL) -> None:
    """Start a daemon thread that ends this process once its parent process has ended."""
    parent = os.getppid()
    thread = threading.Thread(target=_watch, args=(parent, poll), daemon=True, name='lifetime')
    thread.start()


def _watch(parent: int, poll: float) -> None:
    stop = threading.Event()
    while not stop.wait(poll):
        if os.getppid() != parent:
            _end(parent)


def _end(parent: int) -> None:
    end_now(f'Process {os.getpid()} exits: its parent {parent} has ended.', 1)


def end_now(message: str, code: int) -> None:
    """Print `message`, kill this process's children and exit with `code` at once."""
    # print() may be re-entered when a signal handler calls this.
    with contextlib.suppress(Exception):
        print(message, flush=True)
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    sys.stderr.flush()
    os._exit(code)
