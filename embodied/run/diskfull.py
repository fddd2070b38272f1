"""Writes that fail for lack of disk space end the run with one line that says so.

A full disk is not a bug of the run: freeing space and running the same command again resumes
it from its last checkpoint. The writers of a run raise `DiskFull`, a SetupError, which the
command line prints as one line and exits with status 2.
"""

import contextlib
import errno
from collections.abc import Iterator

from ..core.base import SetupError

# The write errors that the user fixes on the machine, not in the config, and how to say them.
REASONS = {
    errno.ENOSPC: 'the disk is full',
    errno.EDQUOT: 'the disk quota is exceeded',
    errno.EROFS: 'the file system is read-only',
}


class DiskFull(SetupError):
    """Writing a file of the run failed because the disk is full, over quota or read-only."""

    def __init__(self, path, error: OSError):
        self.path = str(path)
        self.error = error
        fix = 'Make it writable' if error.errno == errno.EROFS else 'Free space'
        super().__init__(
            f'{REASONS[error.errno]}: could not write {path} ({error.strerror}). '
            f'{fix} and run the same command again to resume.'
        )


def is_full(error: BaseException) -> bool:
    """Whether `error` is a write error that DiskFull reports."""
    return isinstance(error, OSError) and error.errno in REASONS


@contextlib.contextmanager
def writing(path) -> Iterator[None]:
    """Raise DiskFull naming `path` when a write in the block fails for lack of space."""
    try:
        yield
    except OSError as e:
        if not is_full(e):
            raise
        raise DiskFull(path, e) from e
