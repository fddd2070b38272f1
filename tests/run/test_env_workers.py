"""Envs in their own processes (`--run.debug False`) from the command line."""

import os
import pathlib
import subprocess
import time

import psutil
import pytest
from helpers import command, output

HERE = pathlib.Path(__file__).resolve().parent


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_an_env_that_starts_processes_trains_in_worker_processes(tmp_path):
    pids = tmp_path / 'pids'
    pids.mkdir()
    env = dict(os.environ, SPAWNING_ENV_PIDS=str(pids))
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(HERE), env.get('PYTHONPATH')]))
    flags = ('--task', 'custom_spawning_env:SpawningEnv', '--run.debug', 'False')
    flags += ('--run.envs', '2', '--run.steps', '200', '--random_agent', 'True')
    proc = subprocess.Popen(
        command(tmp_path / 'logdir', *flags),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=300)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert result.returncode == 0, output(result)
    # The main process builds env 0 once for the spaces; each of the 2 workers builds its own.
    workers = {int(path.stem) for path in pids.glob('*.txt')} - {proc.pid}
    assert len(workers) == 2, sorted(pids.iterdir())
    children = [int(pid) for path in pids.glob('*.txt') for pid in path.read_text().split()]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)]
