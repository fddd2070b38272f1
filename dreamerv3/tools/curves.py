"""Episode-score curves of runs (their scores.jsonl) and of published score files, in one form.

Both count x in environment frames: the logger multiplies agent steps by the suite's action
repeat before it writes scores.jsonl, and the published files use frames, too.
"""

import argparse
import dataclasses
import gzip
import json
import os
import pathlib
import re
import sys

import numpy as np
import ruamel.yaml as yaml

# Multi-host runs keep the other processes' files in these subfolders of process 0's logdir.
PROCESS_FOLDER = re.compile(r'^process\d+$')
REFERENCE_KEYS = ('task', 'method', 'seed', 'xs', 'ys')
# Scripts whose logdirs hold evaluation episodes of a trained policy, not a training curve.
EVAL_SCRIPTS = ('eval_only',)
# Config keys in which seeds of one method differ; any other difference makes another method.
RUN_IDENTITY = ('seed', 'logdir', 'task', 'replica', 'jax.process_id')
# The folder the default logdir (`~/logdir/{timestamp}`) puts every run in.
DEFAULT_ROOT = 'logdir'


class InputError(Exception):
    """A logdir or score file the tools cannot read; the message says what to fix."""


@dataclasses.dataclass
class Curve:
    """One seed's episode scores on one task."""

    task: str  # as the published files name it, e.g. atari_pong for atari100k_pong
    method: str
    seed: str
    suite: str  # the benchmark, which fixes the scoring protocol: atari100k, atari, dmc, ...
    xs: np.ndarray  # environment frames
    ys: np.ndarray
    budget: float | None  # environment frames of the whole run, when known
    source: str
    evaluation: bool = False  # episodes of an eval_only logdir, not of training
    progress: float | None = None  # environment frames the run reached, when its logdir says


def input_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the arguments naming the curves to read (the score and plot commands)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('logdirs', nargs='*', help='run logdirs or folders holding logdirs')
    parser.add_argument(
        '--reference', nargs='+', default=[], metavar='FILE', help='published score files'
    )
    parser.add_argument(
        '--method',
        help="label of the runs (default: each logdir's parent folder name, or its own name "
        'where the runs of one parent folder differ in more than seed and task)',
    )
    parser.add_argument('--key', default='episode/score', help='the score in scores.jsonl')
    parser.add_argument(
        '--include_eval',
        action='store_true',
        help="also read evaluation logdirs (script: eval_only), as '<method> (eval)'",
    )
    return parser


def fail(message: str) -> None:
    """Print a command-line error without a traceback and exit with status 2."""
    print(f'dreamerv3: error: {message}', file=sys.stderr)
    sys.exit(2)


def published_task(task: str) -> str:
    """The task name the published files use: they file Atari 100k games under atari_."""
    suite, _, name = task.partition('_')
    return f'atari_{name}' if suite == 'atari100k' else task


def benchmark(task: str, atari100k: bool = False) -> str:
    """The benchmark of a published task name: its suite, or atari100k for the 100k budget."""
    return 'atari100k' if atari100k else task.split('_', 1)[0]


def read_config(logdir: pathlib.Path) -> dict:
    """The run's config.yaml as a nested dict, or {} when the logdir has none."""
    path = logdir / 'config.yaml'
    if not path.exists():
        return {}
    try:
        return yaml.YAML(typ='safe').load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f'{path} is not valid YAML ({e}).') from e


def frames_per_step(config: dict) -> int:
    """Environment frames per agent step: the action repeat of the run's suite (1 if none)."""
    suite = str(config.get('task', '')).split('_', 1)[0]
    return int((config.get('env', {}).get(suite) or {}).get('repeat', 1))


def read_jsonl(path: pathlib.Path) -> list[dict]:
    """The records of a JSONL file; a torn last line of a running logger is left out."""
    return parse_records(path.read_text().splitlines()) if path.exists() else []


def parse_records(lines: list[str]) -> list[dict]:
    """The JSON objects among `lines`; lines that are not one (a torn write) are left out."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def last_step(path: pathlib.Path, tail: int = 1 << 16) -> float | None:
    """The step of the last record of a JSONL file (its tail only: metrics files grow large),
    or None when it has none."""
    if not path.exists():
        return None
    with path.open('rb') as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - tail))
        lines = f.read().decode('utf-8', 'replace').splitlines()
    steps = [r['step'] for r in parse_records(lines) if isinstance(r.get('step'), (int, float))]
    return float(steps[-1]) if steps else None


def step_series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of `key`, one value per step, steps increasing.

    A run resumed from a checkpoint logs again from the checkpoint's step, so a record whose
    step is not above the one before it replaces all earlier records at or after its step:
    the last record written for a step wins.
    """
    kept = []
    for record in records:
        if key not in record or record[key] is None or 'step' not in record:
            continue
        step = float(record['step'])
        while kept and kept[-1][0] >= step:
            kept.pop()
        kept.append((step, float(record[key])))
    if not kept:
        return np.zeros(0), np.zeros(0)
    xs, ys = np.array(kept).T
    return xs, ys


def is_run(folder: pathlib.Path) -> bool:
    """Whether a folder is a run's logdir."""
    return (folder / 'config.yaml').exists() or (folder / 'scores.jsonl').exists()


def seeds_of(folder: pathlib.Path) -> list[pathlib.Path]:
    """The runs `seed<i>/` of a logdir that trained several seeds at once (`run.seeds`), or
    the logdir itself."""
    if (folder / 'scores.jsonl').exists():
        return [folder]
    seeds = [p for p in folder.glob('seed*') if p.name[4:].isdigit() and is_run(p)]
    return sorted(seeds, key=lambda p: int(p.name[4:])) or [folder]


def find_runs(paths: list[str]) -> list[pathlib.Path]:
    """The run logdirs in `paths`: each path is a logdir or a folder holding logdirs."""
    runs = []
    for path in paths:
        path = pathlib.Path(path).expanduser()
        if not path.is_dir():
            raise InputError(f"Logdir '{path}' does not exist or is not a folder.")
        if is_run(path):
            runs += seeds_of(path)
            continue
        found = []
        for folder, subfolders, _ in os.walk(path):
            if is_run(pathlib.Path(folder)):
                found += seeds_of(pathlib.Path(folder))
                # A run's own subfolders (replay, ckpt, process<i>) are no runs of their own.
                subfolders.clear()
            subfolders.sort()
        found.sort()
        if not found:
            print(f'Skipping {path}: it holds no config.yaml or scores.jsonl.')
        runs += found
    return runs


def is_evaluation(config: dict) -> bool:
    """Whether a run's config names a script that evaluates a policy instead of training it."""
    return config.get('script') in EVAL_SCRIPTS


def flat(config: dict, prefix: str = '') -> dict:
    """A nested config as {dotted key: value}."""
    result = {}
    for key, value in config.items():
        if isinstance(value, dict):
            result.update(flat(value, f'{prefix}{key}.'))
        else:
            result[f'{prefix}{key}'] = value
    return result


def setup(config: dict) -> str:
    """What makes a run's method: its config without the keys in which seeds differ."""
    kept = {k: v for k, v in flat(config).items() if k not in RUN_IDENTITY}
    return json.dumps(kept, sort_keys=True, default=str)


def own_name(logdir: pathlib.Path) -> str:
    """A run's own folder name; a seed<i> run of a multi-seed logdir goes by that logdir's."""
    is_seed = logdir.name.startswith('seed') and logdir.name[4:].isdigit()
    return logdir.parent.name if is_seed and is_run(logdir.parent) else logdir.name


def method_labels(logdirs: list[pathlib.Path], configs: dict) -> dict:
    """{logdir: method}: the parent folder's name, or the run's own name where the runs of
    that parent differ in more than seed and task.

    A parent such as the default ~/logdir holds unrelated runs; its name says nothing about
    them, while runs that differ only in seed are seeds of the method the folder names. Runs
    directly in a folder named like the default root (`logdir`, of `~/logdir/{timestamp}`)
    always go by their own names.
    """
    homes = {}
    for logdir in logdirs:
        homes.setdefault(logdir.resolve().parent, []).append(logdir)
    labels = {}
    for home, members in homes.items():
        alike = len({setup(configs[m]) for m in members}) == 1 and home.name != DEFAULT_ROOT
        for member in members:
            labels[member] = home.name if alike else own_name(member.resolve())
    return labels


def load_run(
    logdir: pathlib.Path,
    method: str | None = None,
    key: str = 'episode/score',
    config: dict | None = None,
) -> Curve | None:
    """The score curve of one logdir, or None (with a message) when it has no scores yet."""
    config = read_config(logdir) if config is None else config
    xs, ys = step_series(read_jsonl(logdir / 'scores.jsonl'), key)
    if not len(xs):
        print(f'Skipping {logdir}: no {key} in scores.jsonl yet.')
        return None
    task = str(config.get('task', 'unknown'))
    steps = config.get('run', {}).get('steps')
    budget = float(steps) * frames_per_step(config) if steps is not None else None
    return Curve(
        task=published_task(task),
        method=method or logdir.resolve().parent.name,
        seed=logdir.name,
        suite=benchmark(published_task(task), task.startswith('atari100k_')),
        xs=xs,
        ys=ys,
        budget=budget,
        source=str(logdir),
        evaluation=is_evaluation(config),
        # The loop logs metrics at its last step, in env frames as scores.jsonl counts them.
        progress=last_step(logdir / 'metrics.jsonl'),
    )


def load_runs(
    paths: list[str],
    method: str | None = None,
    key: str = 'episode/score',
    include_eval: bool = False,
) -> list[Curve]:
    """The score curves of every run found in `paths` that has scores; evaluation logdirs
    only with `include_eval`, labelled '<method> (eval)' so they never join a training curve."""
    configs, curves = {}, {}
    for logdir in find_runs(paths):
        config = read_config(logdir)
        if is_evaluation(config) and not include_eval:
            print(
                f'Skipping {logdir}: it holds evaluation episodes (script: '
                f'{config["script"]}), not training; --include_eval adds it.'
            )
            continue
        curve = load_run(logdir, method, key, config)
        if curve:
            configs[logdir], curves[logdir] = config, curve
    # Labels depend on which runs are plotted together, so they come after loading.
    labels = method_labels(list(curves), configs) if not method else {}
    for logdir, curve in curves.items():
        curve.method = method or labels[logdir]
        curve.method += ' (eval)' if curve.evaluation else ''
    return list(curves.values())


def load_reference(path: str, suite: str | None = None) -> list[Curve]:
    """The curves of a published score file: a JSON list of {task, method, seed, xs, ys}."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"Score file '{path}' does not exist.")
    opener = gzip.open if path.name.endswith('.gz') else open
    try:
        with opener(path, 'rt') as f:
            records = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"Score file '{path}' is not (gzipped) JSON: {e}.") from e
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and all(k in r for k in REFERENCE_KEYS) for r in records
    ):
        raise InputError(
            f"Score file '{path}' is not a list of records with the keys "
            f'{", ".join(REFERENCE_KEYS)}.'
        )
    # Atari 100k files name their games atari_<game> like Atari 57 files; only the file's
    # name (atari100k-dreamerv3.json.gz) tells the two apart.
    atari100k = path.name.startswith('atari100k')
    curves = []
    for record in records:
        pairs = [(x, y) for x, y in zip(record['xs'], record['ys']) if x is not None]
        pairs = [(x, y) for x, y in pairs if y is not None and np.isfinite(y)]
        xs, ys = np.array(pairs, float).reshape(-1, 2).T
        order = np.argsort(xs, kind='stable')
        curves.append(
            Curve(
                task=record['task'],
                method=str(record['method']),
                seed=str(record['seed']),
                suite=suite or benchmark(record['task'], atari100k),
                xs=xs[order],
                ys=ys[order],
                budget=None,
                source=str(path),
            )
        )
    # Published runs carry no budget: it is the longest run of the task in the file.
    longest = {}
    for curve in curves:
        if len(curve.xs):
            longest[curve.task] = max(longest.get(curve.task, 0.0), float(curve.xs[-1]))
    for curve in curves:
        curve.budget = longest.get(curve.task)
    return curves


def load_references(paths: list[str], suite: str | None = None) -> list[Curve]:
    """The curves of several published files; a method two files share gets the file's name."""
    loaded = [load_reference(path, suite) for path in paths]
    seen = {}
    for curves in loaded:
        for curve in curves:
            seen.setdefault((curve.suite, curve.method), set()).add(curve.source)
    for curves in loaded:
        for curve in curves:
            if len(seen[(curve.suite, curve.method)]) > 1:
                curve.method = f'{curve.method} ({pathlib.Path(curve.source).name.split(".")[0]})'
    return [curve for curves in loaded for curve in curves]


def rename_published(runs: list[Curve], published: list[Curve]) -> None:
    """Keep published seeds apart from runs: a published method named like a run's is renamed."""
    names = {curve.method for curve in runs}
    for curve in published:
        if curve.method in names:
            curve.method = f'{curve.method} (published)'


def load(
    logdirs: list[str],
    references: list[str],
    method: str | None = None,
    key: str = 'episode/score',
    suite: str | None = None,
    include_eval: bool = False,
) -> tuple[list[Curve], list[Curve]]:
    """The curves of the runs in `logdirs` and of the published files; exits 2 on bad input."""
    try:
        runs = load_runs(logdirs, method, key, include_eval)
        published = load_references(references, suite)
    except InputError as e:
        fail(str(e))
    rename_published(runs, published)
    return runs, published
