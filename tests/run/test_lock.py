"""The logdir lock: exclusive, released on exit, stale when its process is gone."""

import json
import os
import socket
import subprocess
import sys

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
    assert not os.path.exists(lock.path(tmp_path))
    assert lock.holder(tmp_path) is None


def test_second_acquire_names_the_holder(tmp_path):
    with lock.acquire(tmp_path):
        with pytest.raises(lock.LockError) as info:
            with lock.acquire(tmp_path):
                pass
        message = str(info.value)
        assert f'pid {os.getpid()} on host {socket.gethostname()}' in message
        assert '--logdir' in message
    # The failed attempt did not remove the holder's lock.
    with lock.acquire(tmp_path):
        pass


def test_released_when_the_body_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with lock.acquire(tmp_path):
            raise RuntimeError('boom')
    assert lock.holder(tmp_path) is None


def test_lock_of_a_dead_process_is_stale(tmp_path, capsys):
    proc = subprocess.run(
        [sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True
    )
    dead = int(proc.stdout)
    stale = {'host': socket.gethostname(), 'pid': dead, 'start': 1.0, 'started': 'earlier'}
    (tmp_path / 'lock').write_text(json.dumps(stale))
    assert lock.holder(tmp_path) is None
    with lock.acquire(tmp_path) as info:
        assert info['pid'] == os.getpid()
    assert f'Removed the stale lock of pid {dead}' in capsys.readouterr().out


def test_reused_pid_and_empty_file_are_stale(tmp_path):
    # Our own pid, but a start time of another process: the pid was reused.
    reused = {'host': socket.gethostname(), 'pid': os.getpid(), 'start': 1.0}
    (tmp_path / 'lock').write_text(json.dumps(reused))
    assert lock.holder(tmp_path) is None
    (tmp_path / 'lock').write_text('')  # the holder died right after creating it
    assert lock.holder(tmp_path) is None
    with lock.acquire(tmp_path):
        pass


def test_lock_of_another_host_counts_as_live(tmp_path):
    other = {'host': 'elsewhere', 'pid': 1, 'start': 1.0, 'started': 'then'}
    (tmp_path / 'lock').write_text(json.dumps(other))
    assert lock.holder(tmp_path) == other
    with pytest.raises(lock.LockError, match=f'If that process is gone, delete {tmp_path}'):
        with lock.acquire(tmp_path):
            pass


def test_process_folders_of_a_multihost_run_lock_separately(tmp_path):
    with lock.acquire(tmp_path), lock.acquire(tmp_path / 'process1'):
        assert lock.holder(tmp_path) and lock.holder(tmp_path / 'process1')


def test_object_store_logdirs_are_not_locked():
    with lock.acquire('gs://bucket/run') as info:
        assert info is None
    assert lock.holder('gs://bucket/run') is None
