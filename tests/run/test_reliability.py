"""The command line survives a second run on its logdir, failed writes, a full disk and damaged
checkpoints. Each test runs the real `python -m dreamerv3.main` (random agent, debug preset)."""

import contextlib
import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import time

import pytest
from helpers import cli, command, output

from embodied.core import chunks as chunklib
from embodied.run import checkpoints

FAULTY = pathlib.Path(__file__).parent / 'faultymain.py'
FAST = ('--random_agent', 'True', '--run.log_every', '0', '--run.report_every', '0')


def run(logdir, *flags, fault=None):
    """Run the command line (optionally with a fault injected) to completion."""
    cmd = command(logdir, *FAST, *flags)
    if fault:
        cmd = [sys.executable, str(FAULTY), *map(str, fault), *cmd[3:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def newest(logdir):
    return checkpoints.complete(logdir / 'ckpt')[0]


def step_of(folder):
    return int(pickle.loads((folder / 'step.pkl').read_bytes()))


def replay_steps(folder):
    """Steps in the chunk files the checkpoint lists."""
    entry = pickle.loads((folder / 'replay.pkl').read_bytes())
    return sum(chunklib.parse_filename(name)[3] for name in entry['chunks'])


def assert_clean_failure(result):
    assert result.returncode == 2, output(result)
    assert 'Traceback' not in result.stderr + result.stdout, output(result)


def wait_for(predicate, timeout=120):
    end = time.time() + timeout
    while True:
        try:
            if predicate():
                return
        except (OSError, IndexError):
            pass  # a checkpoint that the running process pruned meanwhile
        assert time.time() < end, 'timed out'
        time.sleep(0.1)


def test_second_run_on_a_locked_logdir_exits_2_and_a_killed_holder_frees_it(tmp_path):
    first = subprocess.Popen(
        command(tmp_path, *FAST, '--run.steps', '1e7', '--run.save_every', '1'),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (tmp_path / 'lock').exists() and (tmp_path / 'ckpt' / 'latest').exists())
        config = (tmp_path / 'config.yaml').read_text()
        second = run(tmp_path, '--run.steps', '100', '--batch_size', '4')
        assert_clean_failure(second)
        assert f'is in use by another run (pid {first.pid} on host' in second.stderr
        assert (tmp_path / 'config.yaml').read_text() == config  # left untouched
        wait_for(lambda: step_of(newest(tmp_path)) > 0)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    saved = newest(tmp_path)
    third = run(tmp_path, '--run.steps', str(step_of(saved) + 200))
    assert third.returncode == 0, output(third)
    # The resume holds exactly the steps its checkpoint counted, not the chunks written later.
    assert f'Replay replay loaded {step_of(saved)} steps' in third.stdout, output(third)
    assert 'stale' not in third.stdout.lower()


def test_failing_chunk_write_fails_the_save_and_keeps_the_previous_checkpoint(tmp_path):
    # Saves: 1 is the initial one, 2 the first periodic one with data, 3 fails.
    result = run(tmp_path, '--run.steps', '1e7', '--run.save_every', '1', fault=('chunk', 3))
    assert_clean_failure(result)
    assert 'could not write the chunk' in result.stderr
    assert 'Input/output error' in result.stderr or 'EIO' in result.stderr
    kept = newest(tmp_path)
    assert f"'{kept}' is intact" in result.stderr
    assert (tmp_path / 'ckpt' / 'latest').read_text() == kept.name
    assert len(checkpoints.complete(tmp_path / 'ckpt')) == 2
    assert step_of(kept) > 0 and replay_steps(kept) == step_of(kept)
    # No half-written checkpoint is left behind.
    assert all((p / 'done').exists() for p in (tmp_path / 'ckpt').glob('2*'))
    resumed = run(tmp_path, '--run.steps', str(step_of(kept) + 100))
    assert resumed.returncode == 0, output(resumed)
    assert f'Loading checkpoint: {kept}' in resumed.stdout
    assert f'Replay replay loaded {step_of(kept)} steps' in resumed.stdout


def test_truncated_agent_pkl_resumes_from_the_one_before(tmp_path):
    result = run(tmp_path, '--run.steps', '2000', '--run.save_every', '1')
    assert result.returncode == 0, output(result)
    older, latest = checkpoints.complete(tmp_path / 'ckpt')[1::-1]
    agent = latest / 'agent.pkl'
    agent.write_bytes(agent.read_bytes()[:-1])
    resumed = run(tmp_path, '--run.steps', '2400')
    assert resumed.returncode == 0, output(resumed)
    assert f'Skipping the checkpoint {latest}: agent.pkl has' in resumed.stdout
    assert f'Resuming from the older checkpoint {older}' in resumed.stdout
    assert f'Training from step {step_of(older)} to 2400.' in resumed.stdout
    assert (tmp_path / 'ckpt' / 'corrupt' / latest.name).exists()


def test_no_checkpoint_verifying_exits_2_with_the_fix(tmp_path):
    result = run(tmp_path, '--run.steps', '200')
    assert result.returncode == 0, output(result)
    for folder in checkpoints.complete(tmp_path / 'ckpt'):
        (folder / 'agent.pkl').write_bytes(b'')
    again = run(tmp_path, '--run.steps', '400')
    assert_clean_failure(again)
    assert 'No checkpoint can be loaded' in again.stderr
    assert 'agent.pkl has 0 bytes' in again.stderr
    assert f'mv {tmp_path / "ckpt"}' in again.stderr


@contextlib.contextmanager
def small_disk(path):
    """A 2 MiB tmpfs at `path`, or None where this process cannot mount one."""
    path.mkdir()
    mounted = False
    if sys.platform.startswith('linux') and os.geteuid() == 0:
        mounted = (
            subprocess.run(
                ['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(path)], capture_output=True
            ).returncode
            == 0
        )
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(['umount', '-l', str(path)], check=False)


def fill(disk, spare):
    """Fill a file system, leaving `spare` bytes free; returns the filler file."""
    filler = disk / 'filler'
    with open(filler, 'wb') as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b'\0' * 65536)
                f.flush()
    os.truncate(filler, max(0, os.path.getsize(filler) - spare))
    return filler


def test_disk_full_save_fails_loudly_and_keeps_the_previous_checkpoint(tmp_path):
    with small_disk(tmp_path / 'disk') as disk:
        logdir = (disk or tmp_path) / 'run'
        flags = ('--run.save_every', '0')
        first = run(logdir, '--run.steps', '400', *flags)
        assert first.returncode == 0, output(first)
        kept = newest(logdir)
        if disk:
            # Room for the lock file and the rewritten config.yaml, not for a checkpoint.
            filler = fill(disk, spare=3 * 4096)
            full = run(logdir, '--run.steps', '800', *flags)
        else:
            # 1 is the first save of this run, the final one: it fails.
            full = run(logdir, '--run.steps', '800', *flags, fault=('enospc', 1))
        assert_clean_failure(full)
        assert 'No space left on device' in full.stderr or 'ENOSPC' in full.stderr, output(full)
        assert f"'{kept}' is intact" in full.stderr
        assert newest(logdir) == kept
        assert (logdir / 'ckpt' / 'latest').read_text() == kept.name
        checkpoints.read(kept, ['step', 'agent', 'replay'])  # verifies
        if disk:
            filler.unlink()
        resumed = run(logdir, '--run.steps', '800', *flags)
        assert resumed.returncode == 0, output(resumed)
        assert f'Loading checkpoint: {kept}' in resumed.stdout
        assert f'Training from step {step_of(kept)} to 800.' in resumed.stdout


@pytest.mark.parametrize(
    'flags, message',
    [
        (('--jax.platform', 'gpu'), "JAX platform 'gpu' is not available on this machine"),
        (('--script', 'eval_only'), 'The eval_only script needs a checkpoint'),
        (
            ('--script', 'eval_only', '--run.from_checkpoint', '/nonexistent/run'),
            "No complete checkpoint found at '/nonexistent/run'",
        ),
        (('--task', 'dummy_cont'), "Unknown task 'dummy_cont'. The dummy suite has: dummy_disc."),
        (('--run.keep_checkpoints', '0'), '--run.keep_checkpoints must be at least 1, got 0'),
    ],
)
def test_errors_found_after_parsing_leave_no_logdir(tmp_path, flags, message):
    if flags[1] == 'gpu':
        import importlib.util

        if importlib.util.find_spec('jax_cuda12_plugin') or importlib.util.find_spec(
            'jax_cuda13_plugin'
        ):
            pytest.skip('this machine has the CUDA build of JAX')
    logdir = tmp_path / 'run'
    result = cli(logdir, *flags, timeout=120)
    assert_clean_failure(result)
    assert message in result.stderr, output(result)
    assert not logdir.exists()


def test_config_lists_kept_checkpoints_and_profiler_off(tmp_path):
    result = run(tmp_path, '--run.steps', '100', '--run.keep_checkpoints', '1')
    assert result.returncode == 0, output(result)
    assert len(checkpoints.complete(tmp_path / 'ckpt')) == 1
    marker = json.loads((newest(tmp_path) / 'done').read_text())
    assert sorted(marker['files']) == ['agent.pkl', 'replay.pkl', 'step.pkl']
    assert 'profiler: false' in (tmp_path / 'config.yaml').read_text().lower()
