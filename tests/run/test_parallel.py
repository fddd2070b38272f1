"""The `parallel` script from the command line: it stops by itself, resumes, and fails fast."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import elements
import numpy as np
import portal
import psutil
import pytest
from helpers import checkpoint, command, keys, metrics

# Every test here runs the command line with its processes for a while.
pytestmark = pytest.mark.slow

FLAGS = (
    '--script',
    'parallel',
    '--random_agent',
    'True',
    '--run.envs',
    '2',
    '--run.eval_envs',
    '1',
    '--run.log_every',
    '1',
)


class Run:
    """A command line run that records its output lines and every descendant process."""

    def __init__(self, logdir, *flags):
        self.start = time.monotonic()
        self.proc = subprocess.Popen(
            command(logdir, *flags), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines = []
        self.pids = {}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def wait(self, timeout):
        """Wait for the exit; returns the exit code."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise TimeoutError(f'No exit within {timeout}s:\n{self.text[-4000:]}') from None
        self.reader.join(timeout=10)
        self.watcher.join(timeout=10)
        return self.proc.returncode

    def find(self, pattern, timeout):
        """Wait for an output line matching `pattern`; returns the match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f'No line matches {pattern!r}:\n{self.text[-4000:]}')

    def alive(self, grace=15):
        """Recorded descendants still running after `grace` seconds, described for the error.

        The grace lets helpers that exit by themselves once the run is gone, such as
        multiprocessing's resource tracker, finish on a loaded machine.
        """
        deadline = time.monotonic() + grace
        while self._alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self._alive()

    def _alive(self):
        result = []
        for pid, cmdline in self.pids.items():
            try:
                proc = psutil.Process(pid)
                status = proc.status()
                if status != psutil.STATUS_ZOMBIE:
                    result.append(f'{pid} (parent {proc.ppid()}, {status}): {cmdline}')
            except psutil.NoSuchProcess:
                pass
        return result

    @property
    def text(self):
        return ''.join(self.lines)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def _watch(self):
        parent = psutil.Process(self.proc.pid)
        while self.proc.poll() is None:
            try:
                children = parent.children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            for child in children:
                try:
                    if child.pid not in self.pids:
                        self.pids[child.pid] = ' '.join(child.cmdline())[-200:]
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.1)


def test_stops_at_the_step_limit_and_resumes(tmp_path):
    # One test, so that parallel workers do not each repeat the first run.
    run = Run(tmp_path, *FLAGS, '--run.steps', '250')
    assert run.wait(timeout=180) == 0, run.text[-4000:]
    # Main process: logger, replay, 3 envs and the actor's batcher at least.
    assert len(run.pids) >= 6
    assert run.alive() == []
    assert 'Reached' in run.text and 'Parallel run finished.' in run.text
    step = checkpoint(tmp_path / 'ckpt' / 'logger', 'step')
    assert step >= 250

    names = keys(tmp_path)
    for name in (
        'episode/score',
        'episode/length',
        'fps/policy',
        'fps/env',
        'fps/train',
        'replay/items',
        'replay_eval/items',
        'limiter/insert_wait_frac',
        'parallel/ep_starts',
    ):
        assert name in names, sorted(names)
    lengths = [r['episode/length'] for r in metrics(tmp_path) if 'episode/length' in r]
    assert set(lengths) == {100}  # env steps of a dummy episode: transitions - 1
    assert (tmp_path / 'ckpt' / 'agent' / 'latest').exists()
    size = checkpoint(tmp_path / 'ckpt' / 'replay', 'limiter')['size']
    assert size > 0
    assert list((tmp_path / 'replay').glob('*.npz'))
    assert list((tmp_path / 'replay_eval').glob('*.npz'))

    # The same command with more steps continues the step counter, replay and limiter.
    before = len(metrics(tmp_path))
    items_before = [r['replay/items'] for r in metrics(tmp_path) if 'replay/items' in r][-1]
    run = Run(tmp_path, *FLAGS, '--run.steps', str(step + 50))
    assert run.wait(timeout=180) == 0, run.text[-4000:]
    assert run.alive() == []
    assert checkpoint(tmp_path / 'ckpt' / 'logger', 'step') >= step + 50
    assert checkpoint(tmp_path / 'ckpt' / 'replay', 'limiter')['size'] >= size + 50
    records = metrics(tmp_path)[before:]
    assert records and min(r['step'] for r in records) >= step
    items = [r['replay/items'] for r in records if 'replay/items' in r]
    assert items[0] >= items_before > 0


def test_every_role_ends_when_the_parent_is_killed(tmp_path):
    run = Run(tmp_path, *FLAGS, '--run.steps', '1e6')
    run.find(r'Agent Step [1-9]', timeout=120)
    run.proc.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    # The roles, the envs and the actor's batcher notice within a second or two.
    assert len(run.pids) >= 6
    assert run.alive(grace=10) == []


def test_env_killed_while_the_agent_compiles_stops_the_run_cleanly(tmp_path):
    # The real agent, so that the agent thread is inside XLA when the env dies.
    flags = [flag for flag in FLAGS if flag not in ('--random_agent', 'True')]
    run = Run(tmp_path, *flags, '--run.steps', '1e6')
    pid = int(run.find(r'Env 0 \(train\) started in process (\d+)', timeout=120).group(1))
    run.find('Initializing parameters', timeout=120)  # printed right before XLA compiles
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    assert run.wait(timeout=60) == 1, run.text[-4000:]
    assert time.monotonic() - killed < 30
    assert "Stopping all roles because 'env0' exited with code -9" in run.text
    assert "'env0' crashed with exit code -9" in run.text
    assert 'FATAL' not in run.text and 'terminate called' not in run.text
    assert 'Traceback' not in run.text
    assert run.alive() == []


def latest(directory):
    """The name of the newest complete checkpoint in `directory`."""
    name = (directory / 'latest').read_text().strip()
    assert (directory / name / 'done').exists()
    return name


def test_sigterm_saves_every_role_and_exits_zero(tmp_path):
    run = Run(tmp_path, *FLAGS, '--run.steps', '1e6')
    run.find(r'Saved checkpoint: .*ckpt.agent', timeout=120)
    run.find(r'Agent Step [1-9]', timeout=120)
    before = {name: latest(tmp_path / 'ckpt' / name) for name in ('agent', 'replay', 'logger')}
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(timeout=120) == 0, run.text[-4000:]
    assert run.text.count('Received SIGTERM') == 1
    assert 'Traceback' not in run.text and 'Parallel run finished.' in run.text
    assert len(re.findall(r'Env \d stops because the run has ended', run.text)) == 3
    for name, first in before.items():
        # Checkpoint folders are named by their time, so a newer one sorts later.
        assert latest(tmp_path / 'ckpt' / name) > first, name
    assert checkpoint(tmp_path / 'ckpt' / 'logger', 'step') > 0
    assert checkpoint(tmp_path / 'ckpt' / 'replay', 'limiter')['size'] > 0
    assert run.alive() == []


def test_second_ctrl_c_kills_every_role_at_once(tmp_path):
    run = Run(tmp_path, *FLAGS, '--run.steps', '1e6')
    run.find(r'Agent Step [1-9]', timeout=120)
    run.proc.send_signal(signal.SIGINT)
    run.find('Received SIGINT: stopping after the current update', timeout=30)
    run.proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    assert run.wait(timeout=60) == -signal.SIGINT, run.text[-4000:]
    assert time.monotonic() - start < 30
    assert 'killing every role without saving' in run.text
    assert run.alive() == []


def test_taken_actor_port_stops_the_run(tmp_path):
    with socket.socket() as taken:
        taken.bind(('0.0.0.0', 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = Run(tmp_path, *FLAGS, '--run.steps', '1e6', '--run.actor_addr', f'localhost:{port}')
        code = run.wait(timeout=180)
    assert code != 0
    assert 'The actor batcher process exited with code 1' in run.text, run.text[-4000:]
    assert 'Address already in use' in run.text
    assert run.alive() == []


def test_roles_started_separately_find_each_other_and_stop(tmp_path):
    addresses = []
    for key in ('actor_addr', 'replay_addr', 'logger_addr'):
        addresses += [f'--run.{key}', f'localhost:{portal.free_port()}']
    flags = (*FLAGS, '--run.steps', '100', *addresses)
    runs = [
        Run(tmp_path, *flags, '--run.remote_replay', 'True', '--run.remote_envs', 'True'),
        Run(tmp_path, *flags, '--script', 'parallel_replay'),
        Run(tmp_path, *flags, '--script', 'parallel_envs'),
    ]
    codes = [run.wait(timeout=180) for run in runs]
    assert codes == [0, 0, 0], '\n=====\n'.join(run.text[-3000:] for run in runs)
    assert 'Replay saved and stops' in runs[1].text
    assert runs[2].text.count('stops because the run has ended') == 3
    assert len(runs[2].pids) >= 3
    assert checkpoint(tmp_path / 'ckpt' / 'logger', 'step') >= 100
    assert all(run.alive() == [] for run in runs)


def test_a_checkpoint_of_other_shapes_stops_before_compiling(tmp_path):
    from embodied.run import checkpoints

    agent = {'params': {'dyn/w': np.zeros(1, np.float32)}, 'counters': {'updates': 1}}
    folder = tmp_path / 'ckpt' / 'agent' / '20260101T000000F000000'
    checkpoints.write(elements.Path(folder), {'agent': lambda: agent})
    flags = [flag for flag in FLAGS if flag not in ('--random_agent', 'True')]
    run = Run(tmp_path, *flags, '--run.steps', '1e6')
    assert run.wait(timeout=120) == 2, run.text[-4000:]
    assert 'dreamerv3: error:' in run.text and 'Traceback' not in run.text
    assert 'Compil' not in run.text
    assert run.alive() == []
