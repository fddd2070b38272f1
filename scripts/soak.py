"""Kill a training run with SIGKILL at random moments and resume it, many times, on one logdir.

    python scripts/soak.py --cycles 20 [--logdir DIR] [--corrupt_every 5] [-- extra flags]

Every cycle starts `python -m dreamerv3.main` (debug preset on the CPU, random agent, a save
every second) on the same logdir, kills its process group after a random time and checks what
is on disk:

- the newest complete checkpoint verifies and its step is at least the step of the last save
  the killed run reported as finished (nothing is lost beyond the last save);
- the replay chunks that checkpoint lists exist and hold exactly as many steps as its step
  counter; the next resume reports loading exactly that many steps.

Every `corrupt_every` cycles the newest checkpoint's agent.pkl is truncated after the kill; the
next resume must skip it and load the one before. A final run then finishes cleanly. Prints one
line per cycle, a summary line and a JSON summary. Not part of the test suite (minutes).
"""

import argparse
import json
import os
import pathlib
import pickle
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

from embodied.core import chunks as chunklib
from embodied.run import checkpoints

BASE = (
    '--configs',
    'debug',
    '--jax.platform',
    'cpu',
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
    '1e5',
)


def parse():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cycles', type=int, default=20)
    parser.add_argument('--logdir', default='')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--min_seconds', type=float, default=3.0, help='earliest kill')
    parser.add_argument('--max_seconds', type=float, default=12.0, help='latest kill')
    parser.add_argument('--corrupt_every', type=int, default=5, help='0: never')
    parser.add_argument('flags', nargs='*', help='more flags for dreamerv3.main (after --)')
    return parser.parse_args()


def command(logdir, steps, flags):
    return [sys.executable, '-m', 'dreamerv3.main', *BASE, '--logdir', str(logdir)] + [
        '--run.steps',
        str(steps),
        *flags,
    ]


def step_of(folder):
    return int(pickle.loads((folder / 'step.pkl').read_bytes()))


def listed_steps(folder, replay_dir):
    """Steps in the chunk files a checkpoint lists; raises if one of them is missing."""
    entry = pickle.loads((folder / 'replay.pkl').read_bytes())
    missing = [n for n in entry['chunks'] if not (replay_dir / n).exists()]
    if missing:
        raise AssertionError(f'{folder} lists {len(missing)} missing chunks, e.g. {missing[0]}')
    return sum(chunklib.parse_filename(n)[3] for n in entry['chunks'])


def newest_verifying(ckpt):
    """(folder, step) of the newest checkpoint that verifies, or (None, 0)."""
    for folder in checkpoints.complete(ckpt):
        try:
            checkpoints.read(folder, ['step', 'agent', 'replay'])
        except checkpoints.Corrupt:
            continue
        return folder, step_of(folder)
    return None, 0


def last_saved(text):
    """The folder of the last save the run reported as finished, or None."""
    folder = None
    for match in re.finditer(r'Saving checkpoint: (\S+)\n(?:.*\n)*?Saved checkpoint\.', text):
        folder = match.group(1)
    return folder


def last_logged_step(logdir, offset):
    """The largest step in the metrics lines appended since `offset` (bytes)."""
    path = logdir / 'metrics.jsonl'
    if not path.exists():
        return None
    with open(path, 'rb') as f:
        f.seek(offset)
        lines = f.read().decode(errors='replace').splitlines()
    steps = []
    for line in lines:
        try:
            steps.append(int(json.loads(line)['step']))
        except (ValueError, KeyError, TypeError):
            pass  # the line the kill cut off
    return max(steps, default=None)


def check_resume(text, expect, expect_step, expect_skip):
    """(checked, problem) about the checkpoint and replay a resumed run says it loaded."""
    loaded = re.search(r'Loading checkpoint: (\S+)', text)
    if expect is None or not loaded:
        return False, None  # nothing to resume yet, or killed before loading
    if loaded.group(1) != str(expect):
        return True, f'loaded {loaded.group(1)}, expected {expect}'
    if expect_skip and 'Skipping the checkpoint' not in text:
        return True, 'the truncated checkpoint was not reported as skipped'
    if 'Loaded checkpoint.' not in text:
        return True, None  # killed while loading: the replay count is not printed yet
    rows = re.search(r'Replay replay loaded (\d+) steps', text)
    if not rows or int(rows.group(1)) != expect_step:
        found = rows.group(1) if rows else 'no'
        return True, f'the replay loaded {found} steps, the checkpoint counts {expect_step}'
    return True, None


def state(ckpt):
    """(newest verifying folder, its step, whether a newer damaged one must be skipped)."""
    folder, step = newest_verifying(ckpt)
    complete = checkpoints.complete(ckpt)
    return folder, step, bool(complete) and (folder is None or complete[0].name != folder.name)


def main():
    args = parse()
    rng = random.Random(args.seed)
    logdir = pathlib.Path(args.logdir or tempfile.mkdtemp(prefix='soak-'))
    ckpt, replay_dir, metrics = logdir / 'ckpt', logdir / 'replay', logdir / 'metrics.jsonl'
    logdir.parent.mkdir(parents=True, exist_ok=True)
    survived, lost, recovered, injected, problems = 0, [], 0, 0, []
    expect, step, expect_skip = state(ckpt)
    start = time.time()
    for cycle in range(args.cycles):
        before = len(problems)
        offset = metrics.stat().st_size if metrics.exists() else 0
        out = logdir.parent / f'{logdir.name}-cycle{cycle:02d}.log'
        with open(out, 'w') as f:
            proc = subprocess.Popen(
                command(logdir, int(1e9), args.flags),
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            delay = rng.uniform(args.min_seconds, args.max_seconds)
            try:
                proc.wait(delay)
                problems.append(f'cycle {cycle}: the run exited with {proc.returncode}')
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        text = out.read_text(errors='replace')
        checked, issue = check_resume(text, expect, step, expect_skip)
        if issue:
            problems.append(f'cycle {cycle}: {issue}')
        elif checked and expect_skip:
            recovered += 1
        expect, step, expect_skip = state(ckpt)
        saved = last_saved(text)
        if saved and (expect is None or step < step_of(pathlib.Path(saved))):
            problems.append(f'cycle {cycle}: the reported save {saved} is lost')
        since = '-'
        if expect is not None:
            try:
                rows = listed_steps(expect, replay_dir)
                if rows != step:
                    problems.append(f'cycle {cycle}: {rows} replay steps, checkpoint step {step}')
            except AssertionError as e:
                problems.append(f'cycle {cycle}: {e}')
            reached = last_logged_step(logdir, offset)
            if reached is not None:
                since = max(0, reached - step)
                lost.append(since)
        note = ''
        corrupt = args.corrupt_every and (cycle + 1) % args.corrupt_every == 0
        if corrupt and expect is not None and len(checkpoints.complete(ckpt)) > 1:
            agent = expect / 'agent.pkl'
            agent.write_bytes(agent.read_bytes()[:-1])
            injected += 1
            note = f', truncated {agent.relative_to(logdir)}'
            expect, step, expect_skip = state(ckpt)
        survived += len(problems) == before
        print(
            f'cycle {cycle + 1}/{args.cycles}: killed after {delay:.1f}s, resumable at step '
            f'{step}, {since} logged steps past it{note}',
            flush=True,
        )
    final = subprocess.run(
        command(logdir, step + 200, args.flags), capture_output=True, text=True, timeout=600
    )
    checked, issue = check_resume(final.stdout, expect, step, expect_skip)
    if final.returncode != 0 or issue:
        problems.append(f'final run: exit {final.returncode}, {issue or final.stderr[-500:]}')
    elif checked and expect_skip:
        recovered += 1
    summary = {
        'cycles': args.cycles,
        'cycles_survived': survived,
        'steps_lost_max': max(lost, default=0),
        'corruptions_injected': injected,
        'corruptions_recovered': recovered,
        'final_step': step_of(checkpoints.complete(ckpt)[0]),
        'problems': problems,
        'seconds': round(time.time() - start),
        'logdir': str(logdir),
    }
    print(
        f'Soak: {survived}/{args.cycles} kill -9 cycles survived, at most '
        f'{summary["steps_lost_max"]} logged steps lost, {recovered}/{injected} truncated '
        f'checkpoints recovered, {len(problems)} problems, {summary["seconds"]}s.'
    )
    print(json.dumps(summary, indent=1))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
