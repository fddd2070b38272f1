"""An exclusive lock on a logdir, so that two runs never write the same checkpoints and replay.

The lock is an advisory `flock` on the file `<logdir>/lock`, held for as long as the run keeps
that file open. The operating system releases it when the holder ends in any way (exit, crash,
SIGKILL, an OOM kill), so there is no stale lock to detect and no race between a reader and a
writer of the file: the kernel decides who holds it. The file itself only tells the refused
run who the holder is (host, pid, start time); it is never deleted, because a run that opened
the old file before its removal would lock a file that no longer guards the logdir. Each
process of a multi-host run locks its own part of the logdir (`<logdir>/process<i>`), so those
share one logdir unhindered. Processes forked by the holder share its lock until they end.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket

import psutil

from ..core.base import SetupError

FILENAME = 'lock'


class LockError(SetupError):
    """The logdir is held by another live run; the message names it."""


class UnusableLogdir(SetupError):
    """The logdir cannot be created or written; the message says why and what to do."""


def path(logdir) -> str:
    """The lock file of a logdir."""
    return os.path.join(str(logdir), FILENAME)


def holder(logdir) -> dict | None:
    """Host, pid and start time of the run holding `logdir`, or None if nobody holds it.

    Holding includes this very process: the lock is per open file, not per process.
    """
    filename = path(logdir)
    if '://' in str(logdir) or not os.path.exists(filename):
        return None
    try:
        fd = os.open(filename, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            return None
        return _read(fd)
    finally:
        os.close(fd)  # Also releases the shared lock taken to test it.


@contextlib.contextmanager
def acquire(logdir):
    """Hold the lock of `logdir` for the body; raises LockError when another run holds it.

    Raises UnusableLogdir when the logdir cannot be created or written. A logdir on an object
    store (`gs://...`) is not locked: it offers no file locks.
    """
    if '://' in str(logdir):
        yield None
        return
    filename = path(logdir)
    fd = _open(logdir, filename)
    try:
        if not _try_lock(fd, fcntl.LOCK_EX):
            raise LockError(_message(logdir, _read(fd)))
        info = _own_info()
        _write(fd, info)
        yield info
    finally:
        # Closing the file releases the lock; forked children that share it keep it alive.
        os.close(fd)


def _open(logdir, filename) -> int:
    """Create the logdir and open its lock file, or say in one line why that is impossible."""
    try:
        os.makedirs(str(logdir), exist_ok=True)
        return os.open(filename, os.O_RDWR | os.O_CREAT, 0o644)
    except (FileExistsError, NotADirectoryError):
        reason = 'a file of that name exists' if os.path.isfile(str(logdir)) else None
        reason = reason or 'a part of the path is a file, not a folder'
        raise UnusableLogdir(_unusable(logdir, reason)) from None
    except PermissionError:
        raise UnusableLogdir(_unusable(logdir, 'no permission to write there')) from None
    except OSError as e:
        if e.errno == errno.EROFS:
            raise UnusableLogdir(_unusable(logdir, 'the file system is read-only')) from None
        raise UnusableLogdir(_unusable(logdir, e.strerror or str(e))) from None


def _unusable(logdir, reason: str) -> str:
    return f'Cannot use the logdir {logdir}: {reason}. Pass a folder you can write with --logdir.'


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _write(fd: int, info: dict) -> None:
    """Replace the file's content with the holder's record (only the holder ever writes it)."""
    data = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    with contextlib.suppress(OSError):  # A disk without fsync still keeps the lock correct.
        os.fsync(fd)


def _read(fd: int) -> dict:
    """The holder recorded in the lock file; {} while the holder has not written it yet."""
    try:
        size = os.fstat(fd).st_size
        info = json.loads(os.pread(fd, size, 0).decode() or '{}')
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def _own_info() -> dict:
    process = psutil.Process()
    start = process.create_time()
    return {
        'host': socket.gethostname(),
        'pid': process.pid,
        'start': start,
        'started': datetime.datetime.fromtimestamp(start).isoformat(timespec='seconds'),
    }


def _message(logdir, info: dict) -> str:
    if info:
        who = f'pid {info.get("pid")} on host {info.get("host")}, started {info.get("started")}'
    else:
        who = 'a run starting at this moment'
    return (
        f'The logdir {logdir} is in use by another run ({who}); two runs on one logdir would '
        "overwrite each other's checkpoints and replay. Wait for it to finish or stop it, or "
        'pass another --logdir.'
    )
