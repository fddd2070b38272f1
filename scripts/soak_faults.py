"""`python -m dreamerv3.main` with one fault injected halfway through a file write, for soak.py.

    python scripts/soak_faults.py <action> <target> <arm> <flags of dreamerv3.main...>

`action` is `kill` (the process writes half of the data, then SIGKILLs itself) or `enospc` (the
write stores half of the data and then fails with ENOSPC, as a disk that fills up does; every
later write of the target fails too). `target` names the file:

- `agent`: a checkpoint's agent.pkl;
- `done`: a checkpoint's done marker (its temporary file, renamed once complete);
- `chunk`: a replay chunk (its `*.npz.tmp` file, renamed once complete);
- `metrics`: metrics.jsonl.

The fault is armed once the `arm`-th checkpoint save of the run begins (1: the first save,
the initial one of a new logdir included) and hits the next write of the target. Before it
acts, it prints `soak_faults: <action> halfway through writing <path>` on stdout.
"""

import builtins
import errno
import os
import signal
import sys
import threading
import time

ACTIONS = ('kill', 'enospc')
TARGETS = ('agent', 'done', 'chunk', 'metrics')


class Fault:
    """Decides whether a write is hit and acts on it: half of the data, then the action."""

    def __init__(self, action: str, arm: int):
        self.action = action
        self.arm = arm
        self.saves = 0
        self.fired = False
        self.lock = threading.Lock()

    def armed(self) -> bool:
        """Whether writes of the target fail now."""
        return self.saves >= self.arm

    def hit(self, path: str, write, data) -> int:
        """Write half of `data` with `write(part)`, then kill the process or raise ENOSPC.

        Returns the short count of the first hit of an ENOSPC fault, as os.write does when
        the disk fills up during the write; the caller's next write then raises.
        """
        with self.lock:
            first = not self.fired
            self.fired = True
            if first:
                print(f'soak_faults: {self.action} halfway through writing {path}', flush=True)
                written = write(data[: len(data) // 2])
            if self.action == 'kill':
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(60)  # SIGKILL is delivered before this returns
            if first and isinstance(written, int) and written:
                return written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


class FaultyFile:
    """A file object whose writes go through the fault."""

    def __init__(self, file, path: str, fault: Fault):
        self._file = file
        self._path = path
        self._fault = fault

    def write(self, data):
        """Write half of `data`, then kill the process or raise ENOSPC."""

        def partial(part):
            self._file.write(part)
            self._file.flush()
            os.fsync(self._file.fileno())
            return None

        return self._fault.hit(self._path, partial, data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def faulty_open(fault: Fault, matches):
    """`open` for one module: writes to files that `matches(name)` hit the armed fault."""

    def hooked(file, mode='r', *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)
        name = os.path.basename(str(file))
        if 'r' not in mode and fault.armed() and matches(name):
            return FaultyFile(handle, str(file), fault)
        return handle

    return hooked


class FaultyOs:
    """The `os` module for one module, with `write` to a file named `filename` hitting the fault."""

    def __init__(self, fault: Fault, filename: str):
        self._fault = fault
        self._filename = filename

    def write(self, fd: int, data) -> int:
        """os.write, hit by the armed fault when `fd` is the file named `filename`."""
        if self._fault.armed():
            path = os.readlink(f'/proc/self/fd/{fd}')
            if os.path.basename(path) == self._filename:
                return self._fault.hit(path, lambda part: os.write(fd, part), data)
        return os.write(fd, data)

    def __getattr__(self, name):
        return getattr(os, name)


def install(action: str, target: str, arm: int) -> None:
    """Patch the writers of `target` so that the fault hits from the `arm`-th save on."""
    from embodied.core import chunks
    from embodied.run import checkpoints, outputs

    if action not in ACTIONS or target not in TARGETS:
        raise SystemExit(f'soak_faults: action one of {ACTIONS}, target one of {TARGETS}.')
    fault = Fault(action, arm)
    original_save = checkpoints.Checkpoint.save

    def counting_save(self):
        fault.saves += 1
        return original_save(self)

    checkpoints.Checkpoint.save = counting_save
    # A module-level `open` shadows the builtin for that module's code only.
    if target == 'agent':
        checkpoints.open = faulty_open(fault, lambda name: name.startswith('agent'))
    elif target == 'done':
        checkpoints.open = faulty_open(fault, lambda name: name.startswith('done'))
    elif target == 'chunk':
        chunks.open = faulty_open(fault, lambda name: name.endswith('.npz' + chunks.TEMPORARY))
    else:
        outputs.os = FaultyOs(fault, 'metrics.jsonl')


if __name__ == '__main__':
    install(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    from dreamerv3 import main

    main.main(sys.argv[4:])
