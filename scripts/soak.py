"""Inject one fault per cycle into training runs, many times, and check every run and resume.

    python scripts/soak.py --cycles 30 [--logdir DIR] [--order random] [--kinds kill,lock]
                           [-- extra flags for dreamerv3.main]

Most cycles start `python -m dreamerv3.main` (debug preset on the CPU, random agent, a save and
a metrics line every second) on one logdir and inject one fault, chosen per cycle in turn
(`--order roundrobin`) or in a seeded random order that holds every kind once per round:

- `kill`: SIGKILL to the process group after a random 3 to 12 s (startup, loading, training
  or a save);
- `kill_write`: the run starts under scripts/soak_faults.py, which SIGKILLs the process halfway
  through a write of agent.pkl, a `done` marker, a replay chunk or metrics.jsonl (in turn);
- `sigterm`: SIGTERM once training runs; the run exits 0 within 10 s, prints `Stopped by
  SIGTERM at step N and saved a checkpoint` and the newest checkpoint's step is N;
- `diskfull`: soak_faults.py makes a write of metrics.jsonl, agent.pkl or a replay chunk (in
  turn) store half its bytes and fail with ENOSPC; the run exits 2 with one line on stderr,
  `dreamerv3: error: ...`, no traceback, and metrics.jsonl holds only whole lines;
- `corrupt`: before the run, the newest checkpoint's agent.pkl is truncated or gets a flipped
  byte, or its `done` is emptied (in turn), and the last line of metrics.jsonl is cut in half;
  the run reports skipping that checkpoint, loads the one before, and drops the torn line;
- `lock`: a second run on the logdir while one trains exits 2 naming the holder's pid; the
  first keeps saving and config.yaml is untouched; then the first is killed.

Every run on that logdir is checked as a resume of what the previous cycle left: it loads the
newest checkpoint that verifies, reports each newer damaged or cut off one and moves it to
ckpt/corrupt, removes and reports the temporary files of interrupted writes, drops a torn last
metrics line with a note (and no complete one), and its replay loads exactly as many steps as
the checkpoint counts. After each run: no save it reported finished is lost, the chunks the
newest verifying checkpoint lists exist and hold its step count, and every complete line of
metrics.jsonl parses. Steps lost are the logged steps past the checkpoint a resume would load.

Two kinds run on logdirs of their own:

- `startup`: a real agent (`--random_agent False`) gets SIGTERM within a second of the line
  'Initializing parameters' and exits 0 within 5 s saying it had nothing to save, leaving no
  descendant process;
- `parallel`: `--script parallel` gets SIGKILL on its parent process once 'Agent Step' shows;
  every descendant process seen before must be gone 10 s later (survivors count as orphans
  left, and are killed).

A final run finishes the main logdir cleanly. Prints one line per cycle, a summary line and a
JSON summary; exits 1 on any problem. Not part of the test suite (10 to 20 minutes for 30).
"""

import argparse
import contextlib
import json
import os
import pathlib
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from embodied.core import chunks as chunklib
from embodied.run import checkpoints

KINDS = ('kill', 'sigterm', 'kill_write', 'corrupt', 'lock', 'diskfull', 'startup', 'parallel')
FAULTS = pathlib.Path(__file__).resolve().parent / 'soak_faults.py'
KILL_TARGETS = ('agent', 'done', 'chunk', 'metrics')
FULL_TARGETS = ('metrics', 'agent', 'chunk')
DAMAGES = ('truncate', 'flip', 'empty_done')
# The limits the runs must meet.
SIGTERM_EXIT_S = 10
STARTUP_EXIT_S = 5
ORPHAN_GRACE_S = 10
# How long a run may take to reach a line the soak waits for, on a loaded machine.
REACH_S = 300

COMMON = ('--configs', 'debug', '--jax.platform', 'cpu')
BASE = (
    *COMMON,
    '--random_agent',
    'True',
    '--run.save_every',
    '1',
    '--run.log_every',
    '1',
    '--run.report_every',
    '0',
    # The random agent still samples batches: this paces the run to a few hundred steps/s.
    '--run.train_ratio',
    '64',
    # Room for every step of the soak, so the replay equals the step counter.
    '--replay.size',
    '3e5',
)
PARALLEL = (
    *COMMON,
    '--script',
    'parallel',
    '--run.envs',
    '2',
    '--run.eval_envs',
    '1',
    '--random_agent',
    'True',
    '--run.log_every',
    '1',
)
# Runs print their lines as they happen, so that the soak sees them while waiting.
ENV = {**os.environ, 'PYTHONUNBUFFERED': '1'}
ANSI = re.compile(r'\x1b\[[0-9;]*m')


def parse() -> argparse.Namespace:
    """The soak's options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cycles', type=int, default=30)
    parser.add_argument('--logdir', default='', help='main logdir (default: a new temp folder)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--order', choices=('roundrobin', 'random'), default='roundrobin')
    parser.add_argument('--kinds', default=','.join(KINDS), help='comma-separated subset')
    parser.add_argument('--min_seconds', type=float, default=3.0, help='earliest kill')
    parser.add_argument('--max_seconds', type=float, default=12.0, help='latest kill')
    parser.add_argument('flags', nargs='*', help='more flags for dreamerv3.main (after --)')
    args = parser.parse_args()
    args.kinds = [k for k in args.kinds.split(',') if k]
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown or not args.kinds:
        parser.error(f'--kinds takes names of {", ".join(KINDS)}; got {unknown or "none"}.')
    return args


def schedule(kinds: list, cycles: int, order: str, rng: random.Random) -> list:
    """The kind of every cycle: rounds of all kinds, each round shuffled with `random`."""
    result = []
    while len(result) < cycles:
        round_ = list(kinds)
        if order == 'random':
            rng.shuffle(round_)
        result += round_
    return result[:cycles]


def command(logdir, steps, flags, fault=None) -> list:
    """The command of a main-logdir run; `fault` = (action, target, arm) runs soak_faults.py."""
    args = [*BASE, '--logdir', str(logdir), '--run.steps', str(steps), *flags]
    if fault:
        return [sys.executable, str(FAULTS), *map(str, fault), *args]
    return [sys.executable, '-m', 'dreamerv3.main', *args]


class Run:
    """A started command with stdout and stderr in files, and optionally its descendants seen."""

    def __init__(self, cmd: list, out: pathlib.Path, watch: bool = False):
        self.out, self.err = out, out.with_suffix('.err')
        with open(self.out, 'w') as stdout, open(self.err, 'w') as stderr:
            self.proc = subprocess.Popen(
                cmd, stdout=stdout, stderr=stderr, start_new_session=True, env=ENV
            )
        self.pid = self.proc.pid
        self.seen = {}  # pid: create_time, so that a reused pid is not mistaken for one
        if watch:
            threading.Thread(target=self._watch, daemon=True).start()

    @property
    def text(self) -> str:
        """Its stdout so far, without colour codes."""
        return ANSI.sub('', self.out.read_text(errors='replace'))

    @property
    def stderr(self) -> str:
        """Its stderr so far, without colour codes."""
        return ANSI.sub('', self.err.read_text(errors='replace'))

    def find(self, pattern: str, timeout: float, after: int = 0):
        """The first match of `pattern` (multiline) past offset `after`; None on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.text[after:], re.M)
            if match or self.proc.poll() is not None or time.monotonic() > deadline:
                # One more look: the line may have come with the exit.
                return match or re.search(pattern, self.text[after:], re.M)
            time.sleep(0.1)

    def wait(self, timeout: float):
        """The exit status, or None if it still runs after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_group(self) -> None:
        """SIGKILL the run's process group (it leads its own session) and reap the run."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()

    def alive(self) -> list:
        """Descendants seen earlier that still run (zombies excluded)."""
        result = []
        for pid, created in list(self.seen.items()):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    result.append(proc)
        return result

    def _watch(self):
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(self.pid)
            while self.proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    for child in parent.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            self.seen.setdefault(child.pid, child.create_time())
                time.sleep(0.1)


def tail(run: Run) -> str:
    """The end of a run's stderr, or of its stdout when stderr is empty, for a problem line."""
    return (run.stderr.strip() or run.text.strip())[-300:]


def step_of(folder) -> int:
    """The step counter a checkpoint folder holds."""
    return int(pickle.loads((pathlib.Path(folder) / 'step.pkl').read_bytes()))


def verifies(folder) -> bool:
    """Whether a checkpoint folder verifies as a resume would check it."""
    try:
        checkpoints.read(folder, ['step', 'agent', 'replay'])
    except checkpoints.Corrupt:
        return False
    return True


def listed_steps(folder, replay_dir) -> int:
    """Steps in the chunk files a checkpoint lists; raises if one of them is missing."""
    entry = pickle.loads((pathlib.Path(folder) / 'replay.pkl').read_bytes())
    missing = [n for n in entry['chunks'] if not (replay_dir / n).exists()]
    if missing:
        raise AssertionError(f'{folder} lists {len(missing)} missing chunks, e.g. {missing[0]}')
    return sum(chunklib.parse_filename(n)[3] for n in entry['chunks'])


def complete_end(data: bytes) -> int:
    """Where the torn tail of a JSONL file begins: after its last line that ends and parses."""
    end = data.rfind(b'\n') + 1
    if not end:
        return 0
    start = data.rfind(b'\n', 0, end - 1) + 1
    try:
        json.loads(data[start:end])
    except ValueError:
        return start
    return end


class Snapshot:
    """What the main logdir holds before a run: what its resume must load, report and clean."""

    def __init__(self, logdir: pathlib.Path):
        ckpt, replay = logdir / 'ckpt', logdir / 'replay'
        self.expect, self.step, self.damaged = None, 0, []
        for folder in checkpoints.complete(ckpt):
            if verifies(folder):
                self.expect, self.step = pathlib.Path(str(folder)), step_of(folder)
                break
            self.damaged.append(folder.name)
        newest = self.expect.name if self.expect else ''
        self.cutoff = [p.name for p in checkpoints.unfinished(ckpt) if p.name > newest]
        self.temporary = {
            'replay': sum(
                bool(chunklib.TEMPORARY_CHUNK.match(p.name)) for p in replay.glob('*.tmp')
            ),
            'ckpt': (ckpt / 'latest.tmp').is_file()
            + sum((pathlib.Path(str(p)) / 'done.tmp').is_file() for p in checkpoints.folders(ckpt)),
        }
        metrics = logdir / 'metrics.jsonl'
        data = metrics.read_bytes() if metrics.exists() else b''
        self.offset = complete_end(data)
        self.torn = self.offset != len(data)


def check_start(text: str, snap: Snapshot, logdir: pathlib.Path) -> tuple:
    """(loaded and checked, problems) of a run's start against the snapshot of its logdir."""
    problems = []
    if re.search(r'^Writing metrics to .*metrics\.jsonl$', text, re.M):
        dropped = re.search(r'^Dropped the incomplete last line of .*metrics\.jsonl', text, re.M)
        if snap.torn and not dropped:
            problems.append('the torn last line of metrics.jsonl was not dropped with a note')
        if dropped and not snap.torn:
            problems.append('a complete last line of metrics.jsonl was dropped')
    if re.search(r'^(Found existing|Did not find any) checkpoint\.$', text, re.M):
        removed = {}
        for count, folder in re.findall(
            r'^Removed (\d+) temporary files? of an interrupted write in (.+)\.$', text, re.M
        ):
            removed[pathlib.Path(folder).name] = int(count)
        for name, count in snap.temporary.items():
            if removed.get(name, 0) != count:
                problems.append(
                    f'{count} temporary files of interrupted writes in {name}/, the start '
                    f'reported removing {removed.get(name, 0)}'
                )
    loaded = re.search(r'^Loading checkpoint: (\S+)$', text, re.M)
    if not loaded:
        if snap.expect is not None and 'Did not find any checkpoint.' in text:
            problems.append(f'found no checkpoint, {snap.expect.name} verifies')
        return False, problems
    if snap.expect is None or pathlib.Path(loaded.group(1)).name != snap.expect.name:
        want = snap.expect.name if snap.expect else 'none'
        return True, problems + [f'loaded {loaded.group(1)}, expected {want}']
    skipped = {
        pathlib.Path(p).name for p in re.findall(r'^Skipping the checkpoint (\S+):', text, re.M)
    }
    corrupt = logdir / 'ckpt' / 'corrupt'
    for name in snap.damaged + snap.cutoff:
        if name not in skipped:
            problems.append(f'the newer damaged or cut off checkpoint {name} was not reported')
        if (logdir / 'ckpt' / name).exists() or not list(corrupt.glob(f'{name}*')):
            problems.append(f'the skipped checkpoint {name} was not moved to ckpt/corrupt')
    if 'Loaded checkpoint.' in text:
        rows = re.search(r'^Replay replay loaded (\d+) steps', text, re.M)
        if not rows or int(rows.group(1)) != snap.step:
            found = rows.group(1) if rows else 'no'
            problems.append(f'the replay loaded {found} steps, the checkpoint counts {snap.step}')
    return True, problems


def last_saved(text: str):
    """The folder of the last save the run reported as finished, or None."""
    found = re.findall(r'^Saved checkpoint: (\S+)$', text, re.M)
    return pathlib.Path(found[-1]) if found else None


def metrics_problems(path: pathlib.Path, clean: bool) -> list:
    """Lines of metrics.jsonl that do not parse; with `clean`, also a torn tail."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b'\n')
    for index, line in enumerate(lines[:-1]):
        try:
            int(json.loads(line)['step'])
        except (ValueError, KeyError, TypeError):
            return [f'line {index + 1} of metrics.jsonl does not parse: {line[:80]!r}']
    if clean and lines[-1]:
        return [f'metrics.jsonl ends in a torn line: {lines[-1][:80]!r}']
    return []


def logged_since(path: pathlib.Path, offset: int):
    """The largest step in the metrics lines from byte `offset` on, or None."""
    if not path.exists():
        return None
    with open(path, 'rb') as f:
        f.seek(offset)
        lines = f.read().split(b'\n')
    steps = []
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            steps.append(int(json.loads(line)['step']))
    return max(steps, default=None)


class Soak:
    """The state of a soak across its cycles and the figures of its summary."""

    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.logdir = pathlib.Path(args.logdir or tempfile.mkdtemp(prefix='soak-')).resolve()
        self.logdir.parent.mkdir(parents=True, exist_ok=True)
        self.own = {
            kind: self.logdir.parent / f'{self.logdir.name}-{kind}'
            for kind in ('startup', 'parallel')
        }
        self.faults = {kind: 0 for kind in args.kinds}
        self.turns = {kind: 0 for kind in args.kinds}  # rotates the targets of each kind
        self.problems, self.lost, self.orphans = [], [], 0
        self.recovered = 0
        self.inside_save = 0  # random kills that left a cut off save or temporary files
        self.before = None  # the snapshot of the main logdir before the current cycle's run
        self.exit_seconds = {'sigterm': 0.0, 'startup': 0.0}
        self.on_main_logdir = {
            'kill': self.kill,
            'kill_write': self.kill_write,
            'sigterm': self.sigterm,
            'diskfull': self.diskfull,
            'corrupt': self.corrupt,
            'lock': self.lock,
        }

    def log(self, cycle, suffix: str = '') -> pathlib.Path:
        """The output file of a cycle's run (`cycle` a number, or a name such as 'final')."""
        label = f'cycle{cycle + 1:02d}' if isinstance(cycle, int) else cycle
        return self.logdir.parent / f'{self.logdir.name}-{label}{suffix}.log'

    def turn(self, kind: str, options: tuple) -> str:
        """The next of `options` for `kind`, in turn."""
        option = options[self.turns[kind] % len(options)]
        self.turns[kind] += 1
        return option

    # Kinds on the main logdir: each returns (run whose start is checked, note, problems,
    # whether the run ended cleanly, so that metrics.jsonl must not end torn).

    def kill(self, cycle: int) -> tuple:
        """SIGKILL the run's process group after a random time."""
        run = Run(command(self.logdir, int(1e9), self.args.flags), self.log(cycle))
        delay = self.rng.uniform(self.args.min_seconds, self.args.max_seconds)
        if run.wait(delay) is not None:
            problem = f'the run exited with {run.proc.returncode} before the kill: {tail(run)}'
            return run, '', [problem], False
        run.kill_group()
        self.faults['kill'] += 1
        left = Snapshot(self.logdir)
        # A folder cut off or a temporary file that the run's start did not find.
        inside = bool(set(left.cutoff) - set(self.before.cutoff)) or any(
            left.temporary[name] > count for name, count in self.before.temporary.items()
        )
        self.inside_save += inside
        return run, f'SIGKILL after {delay:.1f}s' + (' inside a save' if inside else ''), [], False

    def kill_write(self, cycle: int) -> tuple:
        """Let the run SIGKILL itself halfway through a write of the next target."""
        target, arm = self.turn('kill_write', KILL_TARGETS), self.rng.randint(1, 4)
        fault = ('kill', target, arm)
        run = Run(command(self.logdir, int(1e9), self.args.flags, fault), self.log(cycle))
        code = run.wait(REACH_S)
        fired = re.search(r'^soak_faults: kill halfway through writing (\S+)$', run.text, re.M)
        if code is None:
            run.kill_group()
        if not fired or code != -signal.SIGKILL:
            problem = f'the kill inside a {target} write did not happen (exit {code})'
            return run, '', [problem], False
        self.faults['kill_write'] += 1
        where = pathlib.Path(fired.group(1)).relative_to(self.logdir)
        return run, f'SIGKILL halfway through writing {where} (save {arm})', [], False

    def sigterm(self, cycle: int) -> tuple:
        """SIGTERM the training run; it saves its last step and exits 0 in time."""
        run = Run(command(self.logdir, int(1e9), self.args.flags), self.log(cycle))
        if not run.find(r'^Training from step', REACH_S):
            run.kill_group()
            return run, '', [f'the run never started training: {tail(run)}'], False
        time.sleep(self.rng.uniform(1, 5))
        if run.proc.poll() is not None:
            problem = f'the run exited with {run.proc.returncode} before SIGTERM: {tail(run)}'
            return run, '', [problem], False
        run.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        self.faults['sigterm'] += 1
        code = run.wait(60)
        took = time.monotonic() - sent
        self.exit_seconds['sigterm'] = max(self.exit_seconds['sigterm'], took)
        problems = []
        if code is None:
            run.kill_group()
            return run, '', ['no exit within 60 s of SIGTERM'], False
        if took > SIGTERM_EXIT_S:
            problems.append(f'exited {took:.1f}s after SIGTERM (limit {SIGTERM_EXIT_S}s)')
        if code != 0:
            problems.append(f'exit {code} after SIGTERM: {tail(run)}')
        stopped = re.search(
            r'^Stopped by SIGTERM at step (\d+) and saved a checkpoint', run.text, re.M
        )
        snap = Snapshot(self.logdir)
        if not stopped:
            problems.append('no line "Stopped by SIGTERM at step N and saved a checkpoint"')
        elif snap.expect is None or snap.step != int(stopped.group(1)):
            problems.append(
                f'stopped at step {stopped.group(1)}, the newest checkpoint has {snap.step}'
            )
        note = f'SIGTERM, exit {code} after {took:.1f}s'
        return run, note + (f' at step {stopped.group(1)}' if stopped else ''), problems, True

    def diskfull(self, cycle: int) -> tuple:
        """Fail a write of the next target with ENOSPC; the run ends with one error line."""
        target, arm = self.turn('diskfull', FULL_TARGETS), self.rng.randint(1, 4)
        fault = ('enospc', target, arm)
        run = Run(command(self.logdir, int(1e9), self.args.flags, fault), self.log(cycle))
        code = run.wait(REACH_S)
        if code is None:
            run.kill_group()
        fired = re.search(r'^soak_faults: enospc halfway through writing (\S+)$', run.text, re.M)
        if not fired:
            return run, '', [f'no ENOSPC was injected into a {target} write (exit {code})'], False
        self.faults['diskfull'] += 1
        problems = []
        lines = run.stderr.strip().splitlines()
        if code is None:
            problems.append(f'no exit within {REACH_S}s of a full disk')
        elif code != 2:
            problems.append(f'exit {code} on a full disk, not 2')
        if len(lines) != 1 or not lines[0].startswith('dreamerv3: error: '):
            problems.append(f'stderr is not one "dreamerv3: error:" line: {lines[:3]}')
        if 'Traceback' in run.text + run.stderr:
            problems.append('a traceback was printed')
        where = pathlib.Path(fired.group(1)).relative_to(self.logdir)
        note = f'ENOSPC halfway through writing {where} (save {arm}), exit {code}'
        return run, note, problems, True

    def corrupt(self, cycle: int) -> tuple:
        """Resume the logdir that main_cycle damaged, and SIGKILL it once it trains."""
        # main_cycle damaged the logdir before its snapshot; the resume must get past loading.
        run = Run(command(self.logdir, int(1e9), self.args.flags), self.log(cycle))
        if not run.find(r'^Training from step', REACH_S):
            run.kill_group()
            return run, '', [f'the resume never trained: {tail(run)}'], False
        delay = self.rng.uniform(0.5, 4)
        time.sleep(delay)
        run.kill_group()
        return run, f'SIGKILL {delay:.1f}s into training', [], False

    def damage(self, how: str) -> str:
        """Damage the newest checkpoint (if an older one verifies) and the last metrics line."""
        ckpt = self.logdir / 'ckpt'
        good = [pathlib.Path(str(p)) for p in checkpoints.complete(ckpt) if verifies(p)]
        notes = []
        if len(good) >= 2:
            folder = good[0]
            agent = folder / 'agent.pkl'
            data = agent.read_bytes()
            if how == 'truncate':
                agent.write_bytes(data[: len(data) // 2])
                notes.append(f'truncated {folder.name}/agent.pkl')
            elif how == 'flip':
                middle = len(data) // 2
                agent.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
                notes.append(f'flipped a byte of {folder.name}/agent.pkl')
            else:
                (folder / 'done').write_bytes(b'')
                notes.append(f'emptied {folder.name}/done')
        metrics = self.logdir / 'metrics.jsonl'
        data = metrics.read_bytes() if metrics.exists() else b''
        if data.endswith(b'\n') and complete_end(data) == len(data):
            start = data.rfind(b'\n', 0, len(data) - 1) + 1
            with open(metrics, 'rb+') as f:
                f.truncate(start + (len(data) - start) // 2)
            notes.append('cut the last metrics line in half')
        if notes:
            self.faults['corrupt'] += 1
        return ', '.join(notes) or 'nothing to damage yet'

    def lock(self, cycle: int) -> tuple:
        """Start a second run while one trains; it is refused and the first goes on."""
        first = Run(command(self.logdir, int(1e9), self.args.flags), self.log(cycle))
        started = first.find(r'^Training from step', REACH_S)
        if not started or not first.find(r'^Saved checkpoint', REACH_S, started.end()):
            first.kill_group()
            return first, '', ['the first run never trained and saved'], False
        config = (self.logdir / 'config.yaml').read_bytes()
        second = Run(command(self.logdir, int(1e9), self.args.flags), self.log(cycle, '-second'))
        code = second.wait(REACH_S)
        if code is None:
            second.kill_group()
        self.faults['lock'] += 1
        problems = []
        lines = second.stderr.strip().splitlines()
        holder = f'(pid {first.pid} on host'
        if code != 2:
            problems.append(f'the second run exited with {code}, not 2')
        named = len(lines) == 1 and lines[0].startswith('dreamerv3: error: ')
        if not named or holder not in lines[0]:
            problems.append(f'the second run did not name the holder in one line: {lines[:3]}')
        if 'Traceback' in second.text + second.stderr:
            problems.append('the second run printed a traceback')
        mark = len(first.text)
        if first.proc.poll() is not None:
            problems.append(f'the first run exited with {first.proc.returncode}')
        elif not first.find(r'^Saved checkpoint', 30, mark):
            problems.append('the first run saved no checkpoint after the second run ended')
        if (self.logdir / 'config.yaml').read_bytes() != config:
            problems.append('the second run changed config.yaml')
        time.sleep(self.rng.uniform(0, 2))
        first.kill_group()
        return first, f'second run exit {code}, the holder went on; then SIGKILL', problems, False

    def main_cycle(self, kind: str, cycle: int) -> tuple:
        """Run one fault on the main logdir and check the run, its start and what it left."""
        damaged = self.damage(self.turn('corrupt', DAMAGES)) if kind == 'corrupt' else ''
        snap = self.before = Snapshot(self.logdir)
        run, note, problems, clean = self.on_main_logdir[kind](cycle)
        note = ', '.join(part for part in (damaged, note) if part)
        checked, found = check_start(run.text, snap, self.logdir)
        problems += found
        if kind == 'corrupt' and checked and not found and snap.damaged:
            self.recovered += 1
        after = Snapshot(self.logdir)
        saved = last_saved(run.text)
        if saved is not None:
            if not saved.exists():
                problems.append(f'the reported save {saved.name} is gone')
            elif after.expect is None or after.step < step_of(saved):
                problems.append(f'the reported save {saved.name} is lost')
        lost = '-'
        if after.expect is not None:
            try:
                rows = listed_steps(after.expect, self.logdir / 'replay')
                if rows != after.step:
                    problems.append(f'{rows} replay steps listed, checkpoint step {after.step}')
            except AssertionError as e:
                problems.append(str(e))
            reached = logged_since(self.logdir / 'metrics.jsonl', snap.offset)
            if reached is not None:
                lost = max(0, reached - after.step)
                self.lost.append(lost)
        problems += metrics_problems(self.logdir / 'metrics.jsonl', clean)
        return f'{note}; resumable at step {after.step}, {lost} logged steps past it', problems

    def startup(self, cycle: int) -> tuple:
        """SIGTERM a real agent while it starts; it exits 0 at once."""
        logdir = self.own['startup']
        shutil.rmtree(logdir, ignore_errors=True)
        cmd = [sys.executable, '-m', 'dreamerv3.main', *COMMON, '--random_agent', 'False']
        cmd += ['--logdir', str(logdir), '--run.steps', str(int(1e9)), *self.args.flags]
        run = Run(cmd, self.log(cycle), watch=True)
        if not run.find(r'Initializing parameters', REACH_S):
            run.kill_group()
            return '', [f'no line "Initializing parameters": {tail(run)}']
        # Within a second of that line the main thread is usually inside XLA, initializing.
        delay = self.rng.uniform(0, 1)
        time.sleep(delay)
        run.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        self.faults['startup'] += 1
        code = run.wait(60)
        took = time.monotonic() - sent
        self.exit_seconds['startup'] = max(self.exit_seconds['startup'], took)
        problems = []
        if code is None:
            run.kill_group()
            problems.append('no exit within 60 s of SIGTERM while starting')
        elif took > STARTUP_EXIT_S:
            problems.append(f'exited {took:.1f}s after SIGTERM (limit {STARTUP_EXIT_S}s)')
        if code not in (None, 0):
            problems.append(f'exit {code} after SIGTERM while starting')
        line = 'Received SIGTERM while starting: nothing to save yet, stopped.'
        if line not in run.text:
            problems.append(f'no line "{line}"')
        if 'Traceback' in run.text + run.stderr:
            problems.append('a traceback was printed')
        problems += self.reap(run)
        note = f'SIGTERM {delay:.1f}s after "Initializing parameters", exit {code} in {took:.1f}s'
        return note, problems

    def parallel(self, cycle: int) -> tuple:
        """SIGKILL the parent of a `parallel` run; none of its descendants may stay."""
        cmd = [sys.executable, '-m', 'dreamerv3.main', *PARALLEL]
        cmd += ['--logdir', str(self.own['parallel']), '--run.steps', str(int(1e9))]
        run = Run(cmd + list(self.args.flags), self.log(cycle), watch=True)
        if not run.find(r'Agent Step [1-9]', REACH_S):
            problems = [f'no "Agent Step" line: {(run.text + run.stderr).strip()[-300:]}']
            run.kill_group()
            return '', problems + self.reap(run)
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait()
        self.faults['parallel'] += 1
        problems = []
        if len(run.seen) < 6:
            problems.append(f'only {len(run.seen)} descendant processes seen (roles and envs)')
        problems += self.reap(run)
        return f'SIGKILL on the parent, {len(run.seen)} descendants seen', problems

    def reap(self, run: Run) -> list:
        """Count the descendants alive ORPHAN_GRACE_S after the run ended, and kill them."""
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while run.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = run.alive()
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.orphans += len(left)
        if not left:
            return []
        names = ', '.join(f'{p.pid}' for p in left[:5])
        return [f'{len(left)} descendants alive {ORPHAN_GRACE_S}s after the end: {names}']

    def cycle(self, kind: str, cycle: int) -> tuple:
        """Inject a fault of `kind`; (what happened, problems)."""
        if kind == 'startup':
            return self.startup(cycle)
        if kind == 'parallel':
            return self.parallel(cycle)
        return self.main_cycle(kind, cycle)

    def final(self) -> list:
        """Finish the main logdir cleanly, 200 steps past its newest verifying checkpoint."""
        snap = Snapshot(self.logdir)
        run = Run(command(self.logdir, snap.step + 200, self.args.flags), self.log('final'))
        code = run.wait(600)
        if code is None:
            run.kill_group()
        _, problems = check_start(run.text, snap, self.logdir)
        if code != 0:
            problems.append(f'exit {code}: {tail(run)}')
        problems += metrics_problems(self.logdir / 'metrics.jsonl', clean=True)
        return problems


def main() -> int:
    """Run the cycles and the final run, print the summary; 1 on any problem."""
    args = parse()
    soak = Soak(args)
    kinds = schedule(args.kinds, args.cycles, args.order, soak.rng)
    start = time.time()
    passed = 0
    for index, kind in enumerate(kinds):
        detail, problems = soak.cycle(kind, index)
        soak.problems += [f'cycle {index + 1} ({kind}): {p}' for p in problems]
        passed += not problems
        status = f' PROBLEMS: {"; ".join(problems)}' if problems else ''
        print(f'cycle {index + 1}/{args.cycles} {kind}: {detail}{status}', flush=True)
    soak.problems += [f'final run: {p}' for p in soak.final()]
    final = checkpoints.complete(soak.logdir / 'ckpt')
    summary = {
        'cycles': args.cycles,
        'cycles_without_problems': passed,
        'order': args.order,
        'faults_injected': soak.faults,
        'problems': soak.problems,
        'steps_lost_max': max(soak.lost, default=0),
        'orphans_left': soak.orphans,
        'corruptions_recovered': soak.recovered,
        'random_kills_inside_a_save': soak.inside_save,
        'sigterm_exit_seconds_max': round(soak.exit_seconds['sigterm'], 1),
        'startup_sigterm_exit_seconds_max': round(soak.exit_seconds['startup'], 1),
        'final_step': step_of(final[0]) if final else None,
        'seconds': round(time.time() - start),
        'logdir': str(soak.logdir),
    }
    faults = ', '.join(f'{kind} {count}' for kind, count in soak.faults.items())
    print(
        f'Soak: {args.cycles} cycles ({passed} without problems), faults injected: {faults}; '
        f'{len(soak.problems)} problems, at most {summary["steps_lost_max"]} logged steps lost, '
        f'{soak.orphans} orphans left, {summary["seconds"]}s.'
    )
    print(json.dumps(summary, indent=1))
    return 1 if soak.problems else 0


if __name__ == '__main__':
    sys.exit(main())
