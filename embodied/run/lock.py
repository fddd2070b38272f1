"""An exclusive lock on a logdir, so that two runs never write the same checkpoints and replay.

The lock is the file `<logdir>/lock`, created exclusively and holding the host, pid and start
time of the process that holds it. It is removed when that process leaves `acquire`. A lock
whose process is gone (killed with SIGKILL, a lost machine) is stale: on the same host that is
detected from the pid and its start time and the lock is taken over; a lock of another host
cannot be checked from here and has to be removed by hand. Each process of a multi-host run
locks its own part of the logdir (`<logdir>/process<i>`), so those share one logdir unhindered.
"""

import contextlib
import datetime
import json
import os
import socket

import psutil

from ..core.base import SetupError

FILENAME = 'lock'


class LockError(SetupError):
    """The logdir is held by another live run; the message names it."""


def path(logdir) -> str:
    """The lock file of a logdir."""
    return os.path.join(str(logdir), FILENAME)


def holder(logdir) -> dict | None:
    """Host, pid and start time of the live run holding `logdir`, or None if nobody holds it.

    A lock of another host counts as live (it cannot be checked from here); a lock of this host
    whose process has ended, or whose pid now belongs to a later process, does not.
    """
    if '://' in str(logdir):
        return None
    info = _read(path(logdir))
    if info is None or _stale(info):
        return None
    return info


@contextlib.contextmanager
def acquire(logdir):
    """Hold the lock of `logdir` for the body; raises LockError when another run holds it.

    A logdir on an object store (`gs://...`) is not locked: it offers no exclusive create.
    """
    if '://' in str(logdir):
        yield None
        return
    filename = path(logdir)
    os.makedirs(str(logdir), exist_ok=True)
    info = _own_info()
    for _ in range(3):
        try:
            fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            current = _read(filename)
            if current is not None and not _stale(current):
                raise LockError(_message(logdir, current)) from None
            _take_over(filename, current)
            continue
        with os.fdopen(fd, 'w') as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        break
    else:
        raise LockError(
            f'Could not lock the logdir {logdir}: its lock file {filename} keeps reappearing; '
            'another run is starting on the same logdir at this moment.'
        )
    try:
        yield info
    finally:
        # Only our own lock is removed, never one that another run took over meanwhile, and
        # not by a forked child that unwinds this frame as well.
        if os.getpid() == info['pid'] and _read(filename) == info:
            with contextlib.suppress(FileNotFoundError):
                os.remove(filename)


def _own_info():
    process = psutil.Process()
    start = process.create_time()
    return {
        'host': socket.gethostname(),
        'pid': process.pid,
        'start': start,
        'started': datetime.datetime.fromtimestamp(start).isoformat(timespec='seconds'),
    }


def _read(filename):
    """The holder recorded in a lock file; {} for an unreadable one, None when there is none."""
    try:
        with open(filename) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        # Empty or cut off: its writer died between creating and filling it.
        return {}
    return info if isinstance(info, dict) else {}


def _stale(info):
    """Whether the recorded holder is known to be gone."""
    if not info or 'pid' not in info:
        return True
    if info.get('host') != socket.gethostname():
        return False
    try:
        process = psutil.Process(int(info['pid']))
        # A reused pid belongs to a process that started later than the holder.
        return abs(process.create_time() - float(info.get('start', 0))) > 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except psutil.AccessDenied:
        return False


def _take_over(filename, stale):
    """Remove a stale lock file, saying whose it was."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(filename)
    if stale:
        print(
            f'Removed the stale lock of pid {stale.get("pid")} on {stale.get("host")} '
            f'(started {stale.get("started")}), which is no longer running.'
        )


def _message(logdir, info):
    where = f'pid {info.get("pid")} on host {info.get("host")}'
    advice = (
        'Wait for it to finish or stop it'
        if info.get('host') == socket.gethostname()
        else f'If that process is gone, delete {path(logdir)}'
    )
    return (
        f'The logdir {logdir} is in use by another run ({where}, started '
        f"{info.get('started')}); two runs on one logdir would overwrite each other's "
        f'checkpoints and replay. {advice}, or pass another --logdir.'
    )
