"""Progress: one short line per log in a log file, a tqdm bar on a terminal, from the CLI too."""

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import termios

from helpers import cli, command, metrics, output

from embodied.run import progress

LINE = re.compile(
    # Not anchored at the line start: the logger's file outputs print from their own threads.
    r'Env steps [\d,]+ / 1,200 \(\d+\.\d%\) \| [\d.]+ env steps/s \| [\d.]+ updates/s'
    r' \| ETA \d+:\d\d:\d\d( \| score [\d.]+)?$',
    re.M,
)
FLAGS = ('--random_agent', 'True', '--run.steps', '1200', '--run.log_every', '1')


def test_line_has_every_field(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress.time, 'monotonic', lambda: now[0])
    out = io.StringIO()
    bar = progress.Progress(1000, 100, interactive=False, out=out)
    bar.update(100, updates=0)
    now[0] += 10
    bar.update(600, updates=50, score=12.5)
    bar.log()
    assert out.getvalue() == (
        'Env steps 600 / 1,000 (60.0%) | 50.0 env steps/s | 5.00 updates/s | ETA 0:00:08 | '
        'score 12.50\n'
    )
    bar.close()


def test_updates_are_the_unit_of_offline_training(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, 'monotonic', lambda: now[0])
    bar = progress.Progress(100, 0, unit='updates', interactive=False, out=io.StringIO())
    now[0] += 4
    bar.update(20, updates=20)
    assert bar.line() == 'Updates 20 / 100 (20.0%) | 5.0 updates/s | ETA 0:00:16'


def test_no_limit_shows_no_percentage_and_no_time_left(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, 'monotonic', lambda: now[0])
    bar = progress.Progress(int(1e10), 0, interactive=False, out=io.StringIO())
    bar.update(0, updates=0)
    now[0] += 2
    bar.update(100, updates=4)
    assert bar.line() == 'Env steps 100 (no step limit) | 50.0 env steps/s | 2.00 updates/s'
    terminal = progress.Progress(int(1e10), 0, interactive=True, out=io.StringIO())
    assert terminal.bar.total is None
    terminal.close()


def test_log_file_gets_short_lines_and_the_block_on_request(tmp_path):
    result = cli(tmp_path / 'plain', *FLAGS)
    assert result.returncode == 0, output(result)
    # One line per log write (the records with fps/policy), the last one with a score.
    lines = [m.group(0) for m in LINE.finditer(result.stdout)]
    logs = [r for r in metrics(tmp_path / 'plain') if 'fps/policy' in r]
    assert lines and len(lines) == len(logs), output(result)
    assert 'score' in lines[-1]
    assert '[Agent Step' not in result.stdout
    result = cli(
        tmp_path / 'block', *FLAGS, '--logger.terminal', 'metrics', '--logger.filter', 'fps/'
    )
    assert result.returncode == 0, output(result)
    assert LINE.search(result.stdout), output(result)
    assert "Metrics filtered by: 'fps/'" in result.stdout
    assert 'fps/policy' in result.stdout and 'episode/score' not in result.stdout


def test_terminal_gets_a_bar(tmp_path):
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 120, 0, 0))
    proc = subprocess.Popen(
        command(tmp_path, *FLAGS), stdin=child, stdout=child, stderr=child, close_fds=True
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:  # EIO once the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(parent)
    assert proc.wait(timeout=300) == 0
    text = b''.join(chunks).decode(errors='replace')
    # tqdm redraws one line: the bar reaches the total, with the rate (scaled to k/s on a fast
    # machine), ETA and the postfix.
    assert re.search(
        r'100%\|[^\n]*\| 1\.20?k/1\.20?k \[[\d:]+<[\d:]+, +[\d.]+[kM]? env steps/s', text
    ), text[-3000:]
    assert re.search(r'updates/s, score [\d.]+\]', text), text[-3000:]
    assert not LINE.search(text.replace('\r', '\n'))
    assert 'Finished training at step' in text
