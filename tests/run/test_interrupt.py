"""The signal helper, and runs stopped by SIGTERM or SIGINT (Ctrl-C) with a final checkpoint."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import helpers
from helpers import checkpoint, command

from embodied.run import interrupt, train


def test_first_signal_requests_a_stop_and_handlers_are_restored(capsys):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    seen = []
    with interrupt.Interrupt(callback=seen.append) as stop:
        assert not stop.requested and stop.signame == ''
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signame == 'SIGTERM'
        # From now on the default actions apply, so a second signal ends the process.
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert seen == [signal.SIGTERM]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    out = capsys.readouterr().out
    assert out.count('\n') == 1 and 'Received SIGTERM: stopping after the current update' in out


def test_nested_blocks_install_and_restore_once():
    before = signal.getsignal(signal.SIGINT)
    with interrupt.Interrupt(announce=False) as stop:
        with stop:
            pass
        os.kill(os.getpid(), signal.SIGINT)  # still handled after the inner block
        assert stop.requested
    assert signal.getsignal(signal.SIGINT) == before


def test_outside_the_main_thread_it_installs_nothing():
    result = {}

    def body():
        with interrupt.Interrupt() as stop:
            result['handler'] = signal.getsignal(signal.SIGTERM)
            result['requested'] = stop.requested

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert result == {'handler': signal.getsignal(signal.SIGTERM), 'requested': False}


SCRIPT = textwrap.dedent(
    """
    import os, signal, time
    from embodied.run import interrupt, train
    with interrupt.Interrupt() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        print('first handled', flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print('still running', flush=True)
    """
)


def test_second_signal_ends_the_process_at_once():
    result = subprocess.run(
        [sys.executable, '-c', SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == -signal.SIGINT, result.stderr
    assert 'first handled' in result.stdout and 'still running' not in result.stdout
    assert 'Traceback' not in result.stderr


def test_shield_ignores_both_signals():
    code = (
        'import os, signal; from embodied.run import interrupt; interrupt.shield(); '
        'os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGTERM); print("alive")'
    )
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == 'alive', result.stderr


class Run:
    """A training command in the background whose output is collected by a thread."""

    def __init__(self, logdir, *flags):
        self.logdir = logdir
        cmd = command(logdir, '--run.steps', '1e6', '--run.save_every', '0', *flags)
        # Its own process group, so that a signal can reach all its processes like a Ctrl-C.
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout))
        self.reader.start()

    def wait_for(self, key, timeout=300):
        """Wait until metrics.jsonl holds a record with `key`."""
        deadline = time.monotonic() + timeout
        path = self.logdir / 'metrics.jsonl'
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, ''.join(self.lines)[-3000:]
            if path.exists():
                if any(key in json.loads(line) for line in path.read_text().splitlines()):
                    return
            time.sleep(0.5)
        self.proc.kill()
        raise AssertionError(f'no {key} in {path} after {timeout} s')

    def stop(self, signum, group=False):
        """Send `signum` (to every process with `group`); returns the status and the output."""
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)
        code = self.proc.wait(timeout=300)
        self.reader.join()
        return code, ''.join(self.lines)


def replay_steps(directory, entry):
    """Steps in the chunk files a checkpoint's replay entry lists (names end in -<length>)."""
    assert entry['chunks'], entry
    for name in entry['chunks']:
        assert (directory / name).exists(), name
    return sum(int(re.search(r'-(\d+)\.npz$', name).group(1)) for name in entry['chunks'])


def check_stopped(logdir, code, out, signame, replay_name, replay_dir):
    assert code == 0, out[-3000:]
    assert 'Traceback' not in out
    match = re.search(rf'Stopped by {signame} at step (\d+) and saved a checkpoint in ', out)
    assert match, out[-3000:]
    step = int(match.group(1))
    # The final checkpoint is the only save after the first (save_every 0): it holds the last
    # step, and the last metrics record is written at that step too.
    assert checkpoint(logdir / 'ckpt', 'step') == step > 0
    last = json.loads((logdir / 'metrics.jsonl').read_text().splitlines()[-1])
    assert last['step'] == step
    assert replay_steps(logdir / replay_dir, checkpoint(logdir / 'ckpt', replay_name)) == step
    return step


def test_sigterm_during_training_saves_the_last_trained_step(tmp_path, make_debug_agent, capsys):
    # In this process with the shared agent: the signal arrives while it trains. The command
    # line's exit status on a signal is checked with the random agent below and in parallel.
    flags = ('--run.steps', '1e6', '--run.save_every', '0', '--run.log_every', '1')
    config = helpers.config(*flags, logdir=tmp_path)
    done = threading.Event()

    def signal_once_trained():
        path = tmp_path / 'metrics.jsonl'
        while not done.wait(0.2):
            if path.exists() and 'train/loss/dyn' in path.read_text():
                os.kill(os.getpid(), signal.SIGTERM)
                return

    sender = threading.Thread(target=signal_once_trained, daemon=True)
    sender.start()
    try:
        train.train(config, make_debug_agent)
    finally:
        done.set()
        sender.join()
    check_stopped(tmp_path, 0, capsys.readouterr().out, 'SIGTERM', 'replay', 'replay')
    assert int(checkpoint(tmp_path / 'ckpt', 'agent')['counters']['updates']) > 0


def test_ctrl_c_in_train_eval_saves_both_replays(tmp_path):
    # Envs in worker processes, which a terminal's Ctrl-C reaches too: they keep stepping.
    flags = ('--script', 'train_eval', '--random_agent', 'True', '--run.debug', 'False')
    run = Run(tmp_path, *flags, '--run.log_every', '1', '--run.envs', '2', '--run.eval_envs', '1')
    run.wait_for('eval_episode/score')
    code, out = run.stop(signal.SIGINT, group=True)
    check_stopped(tmp_path, code, out, 'SIGINT', 'replay_train', 'replay')
    assert checkpoint(tmp_path / 'ckpt', 'replay_eval')['chunks']


STARTUP = textwrap.dedent(
    """
    import signal, time
    from embodied.run import interrupt
    with interrupt.Startup():
        # A handler that never acts stands for a main thread stuck in native code, where
        # Python handlers wait: only the watcher thread can end the process.
        signal.signal(signal.SIGTERM, lambda *args: None)
        print('ready', flush=True)
        time.sleep(60)
    """
)


def test_a_signal_while_starting_ends_the_process_at_once():
    proc = subprocess.Popen(
        [sys.executable, '-c', STARTUP], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == 'ready'
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - start < 5
    assert 'Received SIGTERM while starting: nothing to save yet, stopped.' in out
    assert 'Traceback' not in err


def test_sigterm_while_the_agent_compiles_stops_within_seconds(tmp_path):
    run = Run(tmp_path)
    deadline = time.monotonic() + 120
    while not any('Initializing parameters' in line for line in run.lines):
        assert time.monotonic() < deadline and run.proc.poll() is None, ''.join(run.lines)
        time.sleep(0.1)
    time.sleep(1)  # Inside the compilation of the train step.
    start = time.monotonic()
    code, out = run.stop(signal.SIGTERM)
    assert code == 0, out[-3000:]
    assert time.monotonic() - start < 5
    assert 'Received SIGTERM while starting: nothing to save yet, stopped.' in out
    assert 'Traceback' not in out and 'Compiled the train step' not in out
