"""The signal helper: the first SIGINT or SIGTERM requests a stop, a second one ends the process."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

from embodied.run import interrupt


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
    from embodied.run import interrupt
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
