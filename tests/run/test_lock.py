"""The logdir lock: exclusive, held by one run at a time, released by the system when it ends."""

import errno
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from embodied.run import lock


def test_acquire_writes_the_holder_and_releases_it(tmp_path):
    assert lock.holder(tmp_path) is None
    with lock.acquire(tmp_path) as info:
        held = lock.holder(tmp_path)
        assert held == info
        assert held['pid'] == os.getpid() and held['host'] == socket.gethostname()
        assert held['start'] == psutil.Process().create_time() and held['started']
    assert lock.holder(tmp_path) is None


def test_second_acquire_names_the_holder(tmp_path):
    with lock.acquire(tmp_path):
        with pytest.raises(lock.LockError) as info:
            with lock.acquire(tmp_path):
                pass
        message = str(info.value)
        assert f'pid {os.getpid()} on host {socket.gethostname()}' in message
        assert '--logdir' in message
        # The failed attempt did not release the holder's lock.
        assert lock.holder(tmp_path)['pid'] == os.getpid()
    with lock.acquire(tmp_path):
        pass


def test_released_when_the_body_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with lock.acquire(tmp_path):
            raise RuntimeError('boom')
    assert lock.holder(tmp_path) is None


def test_a_killed_holder_releases_the_lock(tmp_path):
    code = (
        'import sys, time; from embodied.run import lock\n'
        'with lock.acquire(sys.argv[1]):\n'
        '    print("held", flush=True); time.sleep(60)\n'
    )
    proc = subprocess.Popen(
        [sys.executable, '-c', code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == 'held'
    assert lock.holder(tmp_path)['pid'] == proc.pid
    with pytest.raises(lock.LockError, match=f'pid {proc.pid}'):
        with lock.acquire(tmp_path):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The record of the dead holder is still in the file, and means nothing.
    assert json.loads((tmp_path / 'lock').read_text())['pid'] == proc.pid
    assert lock.holder(tmp_path) is None
    with lock.acquire(tmp_path) as info:
        assert info['pid'] == os.getpid()


def test_lock_files_of_earlier_versions_do_not_block(tmp_path):
    other = {'host': 'elsewhere', 'pid': 1, 'start': 1.0, 'started': 'then'}
    (tmp_path / 'lock').write_text(json.dumps(other))
    assert lock.holder(tmp_path) is None
    with lock.acquire(tmp_path):
        pass
    (tmp_path / 'lock').write_text('')
    with lock.acquire(tmp_path):
        pass


def _contend(logdir, barrier, holders, overlaps, rounds, stale):
    for _ in range(rounds):
        barrier.wait()
        try:
            with lock.acquire(logdir):
                with holders.get_lock():
                    holders.value += 1
                    if holders.value > 1:
                        overlaps.value += 1
                time.sleep(0.02)
                with holders.get_lock():
                    holders.value -= 1
        except lock.LockError:
            pass
        barrier.wait()
        if stale and barrier.wait() == 0:
            # The normal state after a SIGKILL: a lock file naming a dead process.
            dead = {'host': socket.gethostname(), 'pid': 2**22 + 1, 'start': 1.0}
            (logdir / 'lock').write_text(json.dumps(dead))
        barrier.wait()


@pytest.mark.parametrize('stale', [False, True])
def test_two_runs_released_together_never_both_hold_it(tmp_path, stale):
    ctx = multiprocessing.get_context('fork')
    rounds = 40
    barrier = ctx.Barrier(2)
    holders, overlaps = ctx.Value('i', 0), ctx.Value('i', 0)
    args = (tmp_path, barrier, holders, overlaps, rounds, stale)
    procs = [ctx.Process(target=_contend, args=args) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert overlaps.value == 0


def test_process_folders_of_a_multihost_run_lock_separately(tmp_path):
    with lock.acquire(tmp_path), lock.acquire(tmp_path / 'process1'):
        assert lock.holder(tmp_path) and lock.holder(tmp_path / 'process1')


def test_object_store_logdirs_are_not_locked():
    with lock.acquire('gs://bucket/run') as info:
        assert info is None
    assert lock.holder('gs://bucket/run') is None


def test_a_file_or_a_path_under_a_file_is_one_clear_error(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(lock.UnusableLogdir, match='a file of that name exists'):
        with lock.acquire(tmp_path / 'file'):
            pass
    with pytest.raises(lock.UnusableLogdir, match='a part of the path is a file'):
        with lock.acquire(tmp_path / 'file' / 'run'):
            pass
    assert (tmp_path / 'file').read_text() == 'x'


@pytest.mark.parametrize(
    'error, reason',
    [
        (PermissionError(errno.EACCES, 'Permission denied'), 'no permission'),
        (OSError(errno.EROFS, 'Read-only file system'), 'read-only'),
    ],
)
def test_an_unwritable_logdir_is_one_clear_error(tmp_path, monkeypatch, error, reason):
    # Injected, because tests may run as root, who may write anywhere.
    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(lock.os, 'open', refuse)
    with pytest.raises(lock.UnusableLogdir, match=f'{reason}.*--logdir'):
        with lock.acquire(tmp_path / 'run'):
            pass
