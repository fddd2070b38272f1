"""Final scores by the paper's protocol, per task and method, and their aggregates.

usage: python -m dreamerv3.tools.score [LOGDIR ...] [--reference FILE ...]
"""

import argparse
import dataclasses
import importlib.resources
import json
import math
import pathlib

import numpy as np

from . import curves as curveslib

# Atari 100k scores a run at 400k frames (100k agent steps at action repeat 4), although the
# atari100k preset trains a little longer.
ATARI100K_WINDOW = (390e3, 400e3)
# Every other benchmark scores the mean over the final 5% of its budget.
FINAL_FRACTION = 0.05
# Which table of data/baselines.json normalises the tasks whose name starts with the key.
NORMALISERS = {
    'atari_': ('atari57_gamer', 'human-normalised'),
    'dmlab_': ('dmlab30', 'human-normalised'),
    'procgen_': ('procgen_hard', 'min-max normalised'),
}


@dataclasses.dataclass
class TaskScore:
    """The final score of one method on one task, with the per-seed scores it averages."""

    score: float
    seeds: list[float]
    fallbacks: int  # seeds without an episode in the window, scored by their last episode


def baselines() -> dict:
    """Per-task [low, high] normalisation scores shipped as dreamerv3/data/baselines.json.

    The figures are those published with the DreamerV3 reference implementation; the file's
    `about` entry names the exact source.
    """
    path = importlib.resources.files('dreamerv3') / 'data' / 'baselines.json'
    return json.loads(path.read_text())


def window(suite: str, budget: float | None, xs: np.ndarray) -> tuple[float, float]:
    """The [low, high] range of env frames whose episodes make up the final score."""
    if suite == 'atari100k':
        return ATARI100K_WINDOW
    end = budget if budget else (float(xs[-1]) if len(xs) else 0.0)
    return (1 - FINAL_FRACTION) * end, end


def protocol(suite: str) -> str:
    """The scoring protocol of a benchmark, in words."""
    if suite == 'atari100k':
        low, high = ATARI100K_WINDOW
        return (
            f'per seed, the mean score of the episodes between {low / 1e3:.0f}k and '
            f'{high / 1e3:.0f}k env frames (a seed with none there: its last episode before '
            f'{high / 1e3:.0f}k), then the mean over seeds'
        )
    return (
        f'per seed, the mean score of the episodes in the final {FINAL_FRACTION:.0%} of the '
        'budget (run.steps times the action repeat for runs, the longest seed for published '
        'files; a seed with none there: its last episode), then the mean over seeds'
    )


def seed_score(xs: np.ndarray, ys: np.ndarray, low: float, high: float) -> tuple[float, bool]:
    """The mean of the scores with x in [low, high], or the last one before high (fallback)."""
    inside = (xs >= low) & (xs <= high)
    if inside.any():
        return float(ys[inside].mean()), False
    before = xs <= high
    if before.any():
        return float(ys[before][-1]), True
    return math.nan, True


def task_scores(curves: list[curveslib.Curve]) -> dict:
    """{suite: {task: {method: TaskScore}}} for the given curves."""
    seeds = {}
    for curve in curves:
        low, high = window(curve.suite, curve.budget, curve.xs)
        score, fallback = seed_score(curve.xs, curve.ys, low, high)
        if math.isnan(score):
            continue
        entry = seeds.setdefault(curve.suite, {}).setdefault(curve.task, {})
        entry.setdefault(curve.method, []).append((score, fallback))
    return {
        suite: {
            task: {
                method: TaskScore(
                    score=float(np.mean([s for s, _ in pairs])),
                    seeds=[s for s, _ in pairs],
                    fallbacks=sum(f for _, f in pairs),
                )
                for method, pairs in sorted(methods.items())
            }
            for task, methods in sorted(tasks.items())
        }
        for suite, tasks in sorted(seeds.items())
    }


def interquartile_mean(values: list[float]) -> float:
    """The mean of the values left after cutting the lowest and highest quarter (floor n/4)."""
    values = np.sort(np.asarray(values, float))
    cut = len(values) // 4
    return float(values[cut : len(values) - cut].mean())


def normaliser(task: str, tables: dict) -> tuple[str, str, list[float]] | None:
    """(table name, kind, [low, high]) for a task with baseline scores, else None."""
    for prefix, (table, kind) in NORMALISERS.items():
        if task.startswith(prefix) and task in tables.get(table, {}):
            return table, kind, tables[table][task]
    return None


def aggregates(tasks: dict, method: str, tables: dict) -> dict:
    """Plain mean over tasks and, where baselines exist, normalised mean, median and IQM.

    Mean and median run over the per-task scores; the interquartile mean runs over every
    task-seed score, as is usual since Agarwal et al. (2021).
    """
    scores = {task: methods[method] for task, methods in tasks.items() if method in methods}
    result = {'tasks': len(scores), 'mean': float(np.mean([s.score for s in scores.values()]))}
    normed, runs, kinds, missing = [], [], set(), []
    for task, score in scores.items():
        found = normaliser(task, tables)
        if not found:
            missing.append(task)
            continue
        table, kind, (low, high) = found
        kinds.add(f'{kind} ({table})')
        normed.append((score.score - low) / (high - low))
        runs += [(seed - low) / (high - low) for seed in score.seeds]
    if normed:
        result['normalised'] = {
            'by': ', '.join(sorted(kinds)),
            'tasks': len(normed),
            'mean': float(np.mean(normed)),
            'median': float(np.median(normed)),
            'iqm': interquartile_mean(runs),
            'missing': missing,
        }
    return result


def summarise(curves: list[curveslib.Curve]) -> dict:
    """Everything the command prints, as plain data (the --json output)."""
    tables = baselines()
    result = {}
    for suite, tasks in task_scores(curves).items():
        methods = sorted({m for methods in tasks.values() for m in methods})
        result[suite] = {
            'protocol': protocol(suite),
            'methods': methods,
            'tasks': {
                task: {method: dataclasses.asdict(score) for method, score in by.items()}
                for task, by in tasks.items()
            },
            'aggregates': {method: aggregates(tasks, method, tables) for method in methods},
        }
    return result


def number(value: float) -> str:
    """A score with about four significant digits."""
    return f'{value:.4g}' if abs(value) < 1e4 else f'{value:.0f}'


def table(summary: dict) -> str:
    """The summary as one text table per benchmark."""
    lines = []
    for suite, entry in summary.items():
        methods = entry['methods']
        rows = []
        fallback = False
        for task, by in entry['tasks'].items():
            cells = []
            for method in methods:
                score = by.get(method)
                if not score:
                    cells.append('-')
                    continue
                mark = '*' if score['fallbacks'] else ''
                fallback |= bool(mark)
                cells.append(f'{number(score["score"])}{mark} ({len(score["seeds"])})')
            rows.append((task, cells))
        aggs = entry['aggregates']
        rows.append(('mean over tasks', [number(aggs[m]['mean']) for m in methods]))
        rows.append(('tasks', [str(aggs[m]['tasks']) for m in methods]))
        normed = [aggs[m].get('normalised') for m in methods]
        if any(normed):
            for name, key in (('mean', 'mean'), ('median', 'median'), ('IQM', 'iqm')):
                cells = [f'{n[key]:.1%}' if n else '-' for n in normed]
                rows.append((f'normalised {name}', cells))
            rows.append(('normalised tasks', [str(n['tasks']) if n else '-' for n in normed]))
        width = max(len(task) for task, _ in rows)
        widths = [max(len(m), *(len(c[i]) for _, c in rows)) for i, m in enumerate(methods)]
        lines.append(f'{suite}: {entry["protocol"]}.')
        header = ' ' * width + ''.join(f'  {m:>{w}}' for m, w in zip(methods, widths))
        lines.append(header)
        for task, cells in rows:
            lines.append(f'{task:<{width}}' + ''.join(f'  {c:>{w}}' for c, w in zip(cells, widths)))
        kinds = sorted({n['by'] for n in normed if n})
        if kinds:
            lines.append(
                f'Normalised: {"; ".join(kinds)}; 100% = human or max score. Mean and median '
                'over the task scores, IQM over every task-seed score.'
            )
        for method, n in zip(methods, normed):
            if n and n['missing']:
                lines.append(f'{method}: no baseline for {", ".join(n["missing"])}.')
        lines.append(
            'In brackets: seeds.'
            + (' *: some seeds scored by their last episode.' if fallback else '')
        )
        lines.append('')
    return '\n'.join(lines)


def parse(argv=None) -> argparse.Namespace:
    """The command-line arguments."""
    parser = curveslib.input_parser(
        'python -m dreamerv3.tools.score',
        description='Final scores per task and method by the paper protocol, with aggregates '
        '(x in environment frames). Give logdirs, published score files, or both.',
    )
    parser.add_argument(
        '--suite', help='benchmark of the published files when their name does not say it'
    )
    parser.add_argument('--json', metavar='PATH', help='also write the results as JSON')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Entry point of `python -m dreamerv3.tools.score`."""
    args = parse(argv)
    if not args.logdirs and not args.reference:
        curveslib.fail('Give at least one logdir or --reference FILE.')
    runs, published = curveslib.load(
        args.logdirs, args.reference, args.method, args.key, args.suite
    )
    curves = runs + published
    summary = summarise(curves)
    if not summary:
        curveslib.fail('None of the inputs holds an episode score.')
    print(table(summary))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
        print(f'Wrote {args.json}')
    tasks = sum(len(entry['tasks']) for entry in summary.values())
    print(f'Scored {len(curves)} curves: {tasks} tasks in {len(summary)} benchmarks.')


if __name__ == '__main__':
    main()
