"""Transparent huge pages for large host buffers, through glibc's malloc tunable.

XLA:CPU allocates the temporaries of a program with malloc on every call: hundreds of MB for a
train step. glibc serves sizes like that with a fresh mmap and unmaps them on free, so the
kernel faults the buffer in again, 4 KiB at a time, on every call. With the tunable
`glibc.malloc.hugetlb=1`, malloc marks those mappings for transparent huge pages (where the
kernel's mode is `madvise`), which takes 512 times fewer faults and fewer TLB misses. glibc
reads tunables once, when a process starts, so turning this on means starting again.
"""

import os
import platform
import re
import sys
from collections.abc import Mapping

TUNABLE_NAME = 'glibc.malloc.hugetlb'
TUNABLE = f'{TUNABLE_NAME}=1'
THP_MODE_FILE = '/sys/kernel/mm/transparent_hugepage/enabled'
# The first glibc release that has the tunable; older ones ignore it.
MIN_GLIBC = (2, 35)


def thp_mode(path: str = THP_MODE_FILE) -> str:
    """The kernel's transparent huge page mode: 'always', 'madvise', 'never', or '' if unknown."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ''
    match = re.search(r'\[(\w+)\]', text)
    return match.group(1) if match else ''


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the C library when it is glibc, else None."""
    name, version = platform.libc_ver()
    parts = version.split('.')[:2]
    if name != 'glibc' or not all(p.isdigit() for p in parts) or len(parts) < 2:
        return None
    return int(parts[0]), int(parts[1])


def would_help(env: Mapping[str, str], mode: str, glibc: tuple[int, int] | None) -> bool:
    """Whether a restart with the tunable changes anything: madvise mode, new glibc, not set."""
    if mode != 'madvise' or glibc is None or glibc < MIN_GLIBC:
        return False
    return TUNABLE_NAME not in env.get('GLIBC_TUNABLES', '')


def applies(env: Mapping[str, str] = os.environ) -> bool:
    """Whether a restart with the tunable would change anything on this machine, for `env`."""
    return would_help(env, thp_mode(), glibc_version())


def with_tunable(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` whose GLIBC_TUNABLES also holds the huge page tunable."""
    current = env.get('GLIBC_TUNABLES', '')
    return {**env, 'GLIBC_TUNABLES': f'{current}:{TUNABLE}' if current else TUNABLE}


def relaunch() -> None:
    """Replace this process by the same command with the tunable set, where that would help.

    Call it first thing in a command-line entry point, before threads or buffers exist: the
    process image is replaced, so nothing done before it survives.
    """
    argv = getattr(sys, 'orig_argv', None)
    if not argv or not applies():
        return
    print(
        f'Restarting with GLIBC_TUNABLES={TUNABLE}, so large host buffers use transparent huge '
        'pages (--jax.hugepages False runs without).',
        flush=True,
    )
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], with_tunable(os.environ))
