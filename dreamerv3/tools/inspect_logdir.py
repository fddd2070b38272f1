"""What a logdir holds: config changes, checkpoints, progress, replay, scores, losses, lock.

usage: python -m dreamerv3.tools.inspect_logdir LOGDIR [--json]
"""

import argparse
import json
import pathlib
import re
import socket

import elements

from embodied.run import checkpoints as ckptlib
from embodied.run import lock

from .. import config as configlib
from . import curves as curveslib

# Replay chunk files end in -<number of steps>.npz.
CHUNK_LENGTH = re.compile(r'-(\d+)\.npz$')
REPLAY_FOLDERS = ('replay', 'eval_replay', 'replay_eval')
# The checkpoint entries that list the chunk files of each replay folder: `replay` of train,
# `replay_train` and `replay_eval` of train_eval and of the parallel replay role.
REPLAY_ENTRIES = {
    'replay': ('replay', 'replay_train'),
    'eval_replay': ('replay_eval',),
    'replay_eval': ('replay_eval',),
}
# The agent's counters share a pickle with its parameters; a large model's file takes long to
# read, so it is read only below this size unless --read-agent is given.
AGENT_READ_LIMIT = 256 * 2**20
LAST_SCORES = 5
# metrics.jsonl of a long run is large; its last lines hold the current step and losses.
TAIL_BYTES = 2**20
# Keys that differ between runs by design; the output shows them elsewhere.
UNCOMPARED = ('logdir',)


def tail_records(path: pathlib.Path, size: int = TAIL_BYTES) -> list[dict]:
    """The JSON records in the last `size` bytes of a JSONL file."""
    if not path.exists():
        return []
    with path.open('rb') as f:
        f.seek(max(0, path.stat().st_size - size))
        lines = f.read().decode(errors='replace').splitlines()
    if path.stat().st_size > size:
        lines = lines[1:]  # cut mid-line
    return curveslib.parse_records(lines)


def flat_config(logdir: pathlib.Path) -> dict:
    """The run's config.yaml as a flat {dotted key: value} dict."""
    return dict(elements.Config(curveslib.read_config(logdir)).flat)


def same(a, b) -> bool:
    """Whether two config values are equal, with numbers compared by value (1e4 == 10000)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def config_changes(config: dict) -> list[dict]:
    """The keys whose value differs from the `defaults` block of configs/dreamerv3.yaml."""
    defaults = dict(elements.Config(configlib.load_presets()['defaults']).flat)
    changes = []
    for key in sorted(set(config) | set(defaults)):
        if key in UNCOMPARED:
            continue
        if key in config and key in defaults and same(config[key], defaults[key]):
            continue
        changes.append(dict(key=key, value=config.get(key), default=defaults.get(key)))
        if key not in defaults:
            changes[-1]['note'] = 'not in the current defaults'
        elif key not in config:
            changes[-1]['note'] = 'added to the defaults after this run'
    return changes


def folder_bytes(folder: pathlib.Path) -> int:
    """Total size of the files under a folder."""
    return sum(p.stat().st_size for p in pathlib.Path(folder).rglob('*') if p.is_file())


def checkpoints(logdir: pathlib.Path, read_agent: bool = False) -> list[dict]:
    """Every checkpoint folder with its step, save time, size and whether it is complete."""
    limit = None if read_agent else AGENT_READ_LIMIT
    found = []
    for directory in ckptlib.directories(logdir):
        latest = ckptlib.latest_name(directory)
        for folder in ckptlib.folders(directory):
            folder = pathlib.Path(folder)
            entry = dict(
                path=str(folder.relative_to(logdir)),
                time=ckptlib.saved_at(folder),
                bytes=folder_bytes(folder),
                complete=ckptlib.is_complete(folder),
                latest=folder.name == latest,
            )
            if (folder / 'step.pkl').exists():
                entry['step'] = ckptlib.peek(folder, 'step')
            agent = folder / 'agent.pkl'
            if agent.exists() and limit is not None and agent.stat().st_size > limit:
                entry['counters'] = None  # read only with --read-agent
            elif agent.exists():
                data = ckptlib.peek(folder, 'agent')
                counters = data.get('counters') if isinstance(data, dict) else None
                if isinstance(counters, dict):
                    entry['counters'] = {k: int(v) for k, v in counters.items()}
            found.append(entry)
        for folder in ckptlib.set_aside(directory):
            folder = pathlib.Path(folder)
            found.append(
                dict(
                    path=str(folder.relative_to(logdir)),
                    time=ckptlib.saved_at(folder),
                    bytes=folder_bytes(folder),
                    complete=False,
                    latest=False,
                    corrupt=True,
                )
            )
    return found


def chunk_steps(names) -> int:
    """The steps of chunk files, from the lengths their names end in."""
    lengths = [CHUNK_LENGTH.search(name) for name in names]
    return sum(int(m.group(1)) for m in lengths if m)


def replay_listing(logdir: pathlib.Path, folder: str) -> dict | None:
    """The chunk list of a replay folder in the newest complete checkpoint that has its entry.

    None without such a checkpoint; `names` is None when the entry lists no chunks (written
    by an earlier version, whose resume loads the newest files instead).
    """
    for directory in ckptlib.directories(logdir):
        for ckpt in ckptlib.complete(directory)[:1]:
            ckpt = pathlib.Path(ckpt)
            for entry in REPLAY_ENTRIES[folder]:
                if not (ckpt / f'{entry}.pkl').exists():
                    continue
                data = ckptlib.peek(ckpt, entry)
                names = data.get('chunks') if isinstance(data, dict) else None
                return dict(
                    checkpoint=str(ckpt.relative_to(logdir)),
                    stamp=ckpt.name,
                    names=None if names is None else set(names),
                )
    return None


def replay(logdir: pathlib.Path, config: dict | None = None) -> list[dict]:
    """Chunks, steps and bytes of each replay folder on disk, and what its checkpoint lists.

    A resume loads only the chunk files the checkpoint lists; `unlisted` counts the others,
    split into those older than the checkpoint (evicted, or dropped when the replay was not
    full) and those written after it.
    """
    config = config or {}
    result = []
    for name in REPLAY_FOLDERS:
        folder = logdir / name
        if not folder.is_dir():
            continue
        chunks = sorted(folder.glob('*.npz'))
        size = config.get('replay.size')
        facts = dict(
            folder=name,
            chunks=len(chunks),
            steps=chunk_steps(p.name for p in chunks),
            bytes=sum(p.stat().st_size for p in chunks),
            capacity=None if size is None else int(size if name == 'replay' else size / 10),
            listed=None,
        )
        result.append(facts)
        listing = replay_listing(logdir, name)
        if listing is None or listing['names'] is None:
            facts['listed'] = listing and dict(checkpoint=listing['checkpoint'], chunks=None)
            continue
        names, stamp = listing['names'], listing['stamp']
        disk = {p.name for p in chunks}
        # Chunk names start with the time the chunk was started, in the format of the
        # checkpoint folder names.
        unlisted = sorted(disk - names)
        older = [n for n in unlisted if n < stamp]
        newer = [n for n in unlisted if n >= stamp]
        missing = sorted(names - disk)
        count = lambda group: dict(chunks=len(group), steps=chunk_steps(group))
        facts['listed'] = dict(checkpoint=listing['checkpoint'], **count(names))
        facts['unlisted'] = dict(older=count(older), newer=count(newer))
        facts['missing'] = count(missing)
    return result


def progress(logdir: pathlib.Path, config: dict, ckpts: list[dict], metrics: list[dict]) -> dict:
    """Env steps and updates of the latest checkpoint and of the last metrics lines."""
    repeat = curveslib.frames_per_step(curveslib.read_config(logdir))
    latest = [c for c in ckpts if c['latest'] and c.get('step') is not None]
    updates = [c['counters'] for c in ckpts if c['latest'] and c.get('counters')]
    result = dict(
        repeat=repeat,
        budget_steps=config.get('run.steps'),
        checkpoint_steps=max((c['step'] for c in latest), default=None),
        updates=updates[0]['updates'] if updates else None,
        logged_frames=None,
        logged_updates=None,
    )
    steps = [r['step'] for r in metrics if isinstance(r.get('step'), (int, float))]
    if steps:
        result['logged_frames'] = max(steps)
    opt = [r['train/opt/updates'] for r in metrics if 'train/opt/updates' in r]
    if opt:
        # The logger writes the mean of the update counter since its last write.
        result['logged_updates'] = opt[-1]
    return result


def scores(logdir: pathlib.Path) -> dict:
    """Count and last values of each episode score in scores.jsonl (x in env frames)."""
    records = curveslib.read_jsonl(logdir / 'scores.jsonl')
    keys = sorted({k for r in records for k in r if k.endswith('episode/score')})
    result = {}
    for key in keys:
        xs, ys = curveslib.step_series(records, key)
        result[key] = dict(
            episodes=len(xs),
            last=[[float(x), float(y)] for x, y in zip(xs[-LAST_SCORES:], ys[-LAST_SCORES:])],
            mean_last10=float(ys[-10:].mean()) if len(ys) else None,
        )
    return result


def losses(metrics: list[dict]) -> dict:
    """The train/loss/* values of the last metrics line that has them, with its step."""
    for record in reversed(metrics):
        found = {k: v for k, v in record.items() if k.startswith('train/loss/')}
        if found:
            return dict(step=record.get('step'), values=dict(sorted(found.items())))
    return {}


def lock_state(logdir: pathlib.Path) -> dict:
    """Whether a live run holds the logdir now, and who: host, pid and start time."""
    holder = lock.holder(str(logdir))
    return dict(held=holder is not None, holder=holder)


def inspect(logdir: pathlib.Path, read_agent: bool = False) -> dict:
    """Everything the command prints, as plain data (the --json output)."""
    config = flat_config(logdir)
    metrics = tail_records(logdir / 'metrics.jsonl')
    ckpts = checkpoints(logdir, read_agent)
    return dict(
        logdir=str(logdir),
        task=config.get('task'),
        script=config.get('script'),
        seed=config.get('seed'),
        changes=config_changes(config),
        checkpoints=ckpts,
        progress=progress(logdir, config, ckpts, metrics),
        replay=replay(logdir, config),
        scores=scores(logdir),
        losses=losses(metrics),
        lock=lock_state(logdir),
        processes=sorted(
            p.name for p in logdir.iterdir() if curveslib.PROCESS_FOLDER.match(p.name)
        ),
    )


def size(count: int) -> str:
    """A byte count in B, KB, MB or GB."""
    for unit in ('B', 'KB', 'MB', 'GB'):
        if count < 1024 or unit == 'GB':
            return f'{count:.0f} {unit}' if unit == 'B' else f'{count:.1f} {unit}'
        count /= 1024


def short(value) -> str:
    """A config value or metric in a few characters."""
    if isinstance(value, float):
        return f'{value:.4g}'
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def render(facts: dict) -> str:
    """The facts as the text the command prints."""
    lines = [
        f'Logdir: {facts["logdir"]}',
        f'Task: {facts["task"]}, script {facts["script"]}, seed {facts["seed"]}',
    ]
    changes = facts['changes']
    lines.append(f'Config: {len(changes)} keys differ from the defaults')
    width = max((len(c['key']) for c in changes), default=0)
    for c in changes:
        note = f'; {c["note"]}' if 'note' in c else ''
        value = short(c['value']) if c['value'] is not None else '-'
        lines.append(f'  {c["key"]:<{width}}  {value}  (default {short(c["default"])}{note})')
    ckpts = facts['checkpoints']
    lines.append(f'Checkpoints: {len(ckpts) or "none"}')
    for c in ckpts:
        state = 'corrupt' if c.get('corrupt') else ('complete' if c['complete'] else 'incomplete')
        step = f'step {c["step"]}' if c.get('step') is not None else 'no step'
        extra = ', latest' if c['latest'] else ''
        if c.get('counters'):
            extra += f', {c["counters"]["updates"]} updates'
        lines.append(f'  {c["path"]}  {c["time"]}  {step}  {size(c["bytes"])}  ({state}{extra})')
    p = facts['progress']
    frames = p['checkpoint_steps'] * p['repeat'] if p['checkpoint_steps'] is not None else None
    budget = f' of run.steps {p["budget_steps"]:.0f}' if p['budget_steps'] else ''
    if p['checkpoint_steps'] is not None:
        lines.append(
            f'Env steps: {p["checkpoint_steps"]}{budget} in the latest checkpoint '
            f'({frames} env frames at action repeat {p["repeat"]})'
        )
    else:
        lines.append('Env steps: no checkpoint with a step yet')
    if p['updates'] is not None:
        lines.append(f'Updates: {p["updates"]} in the latest checkpoint')
    elif any(c.get('counters', 0) is None for c in ckpts):
        lines.append(
            f'Updates: the agent checkpoint is over {size(AGENT_READ_LIMIT)}; '
            'pass --read-agent to read its counters'
        )
    if p['logged_frames'] is not None:
        updates = p['logged_updates']
        # Only an estimate (a mean since the previous line); shown when the checkpoint has none.
        exact = p['updates'] is not None
        updates = f', about {updates:.0f} updates' if updates is not None and not exact else ''
        lines.append(f'Last metrics line: {p["logged_frames"]:.0f} env frames{updates}')
    for r in facts['replay']:
        lines.extend(replay_lines(r))
    if not facts['replay']:
        lines.append('Replay: none on disk')
    for key, s in facts['scores'].items():
        last = ', '.join(f'{y:.4g} at frame {x:.0f}' for x, y in s['last'])
        count = s['episodes']
        lines.append(
            f'Scores ({key}): {count} episode{"" if count == 1 else "s"}, mean of the last '
            f'{min(count, 10)} {s["mean_last10"]:.4g}; last: {last}'
        )
    if not facts['scores']:
        lines.append('Scores: no episode finished yet')
    if facts['losses']:
        values = ' / '.join(
            f'{k.removeprefix("train/loss/")} {short(v)}'
            for k, v in facts['losses']['values'].items()
        )
        lines.append(f'Losses (at {facts["losses"]["step"]} env frames): {values}')
    else:
        lines.append('Losses: none logged yet')
    if facts['processes']:
        lines.append(f"Other hosts' files: {', '.join(facts['processes'])}")
    lines.append(lock_line(facts['lock']))
    return '\n'.join(lines)


def replay_lines(r: dict) -> list[str]:
    """A replay folder's files and the steps its checkpoint lists, with what a resume skips."""
    line = (
        f'Replay ({r["folder"]}/): {r["steps"]} steps in {r["chunks"]} chunks, '
        f'{size(r["bytes"])} on disk'
    )
    listed = r['listed']
    if listed is None:
        return [f'{line}; no checkpoint lists them yet']
    if listed['chunks'] is None:
        return [
            f'{line}; the checkpoint {listed["checkpoint"]} lists no chunks (an earlier '
            'version): a resume loads the newest files'
        ]
    older, newer, missing = r['unlisted']['older'], r['unlisted']['newer'], r['missing']
    if not (older['chunks'] or newer['chunks'] or missing['chunks']):
        return [f'{line}, all listed by the checkpoint {listed["checkpoint"]}']
    lines = [
        f'{line}; the checkpoint {listed["checkpoint"]} lists {listed["steps"]} steps in '
        f'{listed["chunks"]} chunks, which a resume loads'
    ]
    unlisted = '  Not listed: {} chunk files ({} steps) {}'
    if older['chunks']:
        capacity = r['capacity']
        if capacity is not None and listed['steps'] < capacity:
            why = (
                f'older than the checkpoint, although the replay holds fewer than its {capacity} '
                'steps: left out of the list, a resume does not load them'
            )
        else:
            why = 'older than the checkpoint: evicted once the replay was full'
        lines.append(unlisted.format(older['chunks'], older['steps'], why))
    if newer['chunks']:
        why = 'written after the checkpoint, before the run stopped: a resume leaves them out'
        lines.append(unlisted.format(newer['chunks'], newer['steps'], why))
    if missing['chunks']:
        lines.append(
            f'  Missing: {missing["chunks"]} chunk files ({missing["steps"]} steps) the '
            'checkpoint lists are not on disk'
        )
    return lines


def lock_line(state: dict) -> str:
    """Whether a run holds the logdir, in one line."""
    if not state['held']:
        return 'Lock: free, no run holds this logdir now'
    h = state['holder']
    who = f'pid {h.get("pid")} on host {h.get("host")}, started {h.get("started")}'
    if h.get('host') != socket.gethostname():
        return f'Lock: held by {who} (another host: whether it still runs cannot be checked)'
    return f'Lock: held by a running process, {who}'


def parse(argv=None) -> argparse.Namespace:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(
        prog='python -m dreamerv3.tools.inspect_logdir',
        description='Show what a run logdir holds: config changes, checkpoints, progress, '
        'replay, scores, losses, and whether a run holds it now.',
    )
    parser.add_argument('logdir', help='the logdir of a run')
    parser.add_argument('--json', action='store_true', help='print the facts as JSON')
    parser.add_argument(
        '--read-agent',
        action='store_true',
        help=f'read agent.pkl for the update count even when over {size(AGENT_READ_LIMIT)}',
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Entry point of `python -m dreamerv3.tools.inspect_logdir`."""
    args = parse(argv)
    logdir = pathlib.Path(args.logdir).expanduser()
    if not logdir.is_dir():
        curveslib.fail(f"Logdir '{logdir}' does not exist or is not a folder.")
    if not curveslib.is_run(logdir):
        curveslib.fail(
            f"'{logdir}' holds no config.yaml or scores.jsonl: pass the logdir of a run "
            '(the folder given as --logdir).'
        )
    try:
        facts = inspect(logdir, args.read_agent)
    except curveslib.InputError as e:
        curveslib.fail(str(e))
    print(json.dumps(facts, indent=1, default=str) if args.json else render(facts))


if __name__ == '__main__':
    main()
