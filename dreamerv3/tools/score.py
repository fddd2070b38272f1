"""Final scores by the paper's protocol, per task and method, and their aggregates.

usage: python -m dreamerv3.tools.score [LOGDIR ...] [--reference FILE ...]

A seed that ended before its scoring window (a run stopped early) is scored by its last
episode and named in words with how far it got. Aggregate rows compare methods on the tasks
all of them have; what a method scores on its other tasks is reported apart.
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
    # [frames reached, frames scored at] of every seed whose run stopped short of its budget;
    # only runs know how far they got (the last step in metrics.jsonl).
    short: list[list[float]]


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
        reached = curve.progress
        short = [reached, high] if reached is not None and reached < high else None
        entry.setdefault(curve.method, []).append((score, fallback, short))
    return {
        suite: {
            task: {
                method: TaskScore(
                    score=float(np.mean([s[0] for s in found])),
                    seeds=[s[0] for s in found],
                    fallbacks=sum(s[1] for s in found),
                    short=[s[2] for s in found if s[2]],
                )
                for method, found in sorted(methods.items())
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


def shared_tasks(tasks: dict, methods: list[str]) -> list[str]:
    """The tasks that every one of `methods` has a score on."""
    return [task for task, by in tasks.items() if all(m in by for m in methods)]


def summarise(curves: list[curveslib.Curve]) -> dict:
    """Everything the command prints, as plain data (the --json output).

    `aggregates` compare the methods on the `shared` tasks only; a method with more tasks
    gets its aggregates over all of them in `own_aggregates`.
    """
    tables = baselines()
    result = {}
    for suite, tasks in task_scores(curves).items():
        methods = sorted({m for methods in tasks.values() for m in methods})
        shared = shared_tasks(tasks, methods)
        common = {task: tasks[task] for task in shared}
        own = {
            method: aggregates(tasks, method, tables)
            for method in methods
            if sum(method in by for by in tasks.values()) > len(shared)
        }
        result[suite] = {
            'protocol': protocol(suite),
            'methods': methods,
            'tasks': {
                task: {method: dataclasses.asdict(score) for method, score in by.items()}
                for task, by in tasks.items()
            },
            'shared': len(shared),
            'aggregates': {m: aggregates(common, m, tables) for m in methods} if shared else {},
            'own_aggregates': own,
        }
    return result


def number(value: float) -> str:
    """A score with about four significant digits."""
    return f'{value:.4g}' if abs(value) < 1e4 else f'{value:.0f}'


def plural(count: int, noun: str) -> str:
    """'1 task', '3 tasks'."""
    return f'{count} {noun}{"" if count == 1 else "s"}'


def frames(value: float) -> str:
    """Environment frames in short, e.g. 400k or 1.2M."""
    for size, unit in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
        if value >= size:
            return f'{value / size:.3g}{unit}'
    return f'{value:.0f}'


def percent(fraction: float) -> str:
    """A share of the budget, rounded down so that a run short of it never shows 100%."""
    return '<1%' if fraction < 0.01 else f'{math.floor(fraction * 100)}%'


def cell(score: dict) -> str:
    """A task score with its seed count; seeds that ended short of their budget in words."""
    short, seeds = score['short'], len(score['seeds'])
    text = f'{number(score["score"])}{"*" if score["fallbacks"] else ""} ({seeds}'
    if not short:
        return f'{text})'
    if len(short) == 1:
        who = '' if seeds == 1 else 'one '
        return f'{text}, {who}ended at {percent(short[0][0] / short[0][1])})'
    return f'{text}, {len(short)} ended short)'


def short_notes(entry: dict) -> list[str]:
    """One line per method and task with seeds that stopped short of their budget."""
    lines = []
    for task, by in entry['tasks'].items():
        for method, score in by.items():
            short, seeds = score['short'], len(score['seeds'])
            if not short:
                continue
            ended = [
                f'{percent(last / budget)} ({frames(last)} of {frames(budget)} env frames)'
                for last, budget in short
            ]
            if seeds == 1:
                share, of = ended[0].split(' ', 1)
                lines.append(f'{method} on {task}: the run ended at {share} of its budget {of}.')
            else:
                lines.append(
                    f'{method} on {task}: {len(short)} of {seeds} seeds ended short of their '
                    f'budget, at {", ".join(ended)}.'
                )
    return lines


def aggregate_rows(aggs: dict, methods: list[str], label: str) -> list[tuple]:
    """The aggregate rows of the table: plain mean, task count and normalised figures."""
    rows = [(label, [number(aggs[m]['mean']) for m in methods])]
    rows.append(('tasks', [str(aggs[m]['tasks']) for m in methods]))
    normed = [aggs[m].get('normalised') for m in methods]
    if any(normed):
        for name, key in (('mean', 'mean'), ('median', 'median'), ('IQM', 'iqm')):
            cells = [f'{n[key]:.1%}' if n else '-' for n in normed]
            rows.append((f'normalised {name}', cells))
        rows.append(('normalised tasks', [str(n['tasks']) if n else '-' for n in normed]))
    return rows


def own_line(method: str, agg: dict, shared: int) -> str:
    """A method's aggregates over all its tasks, kept out of the rows that compare methods."""
    count = plural(agg['tasks'], 'task')
    apart = f' ({agg["tasks"] - shared} not shared)' if shared else ''
    text = f'{method} over all its {count}{apart}: '
    text += f'mean {number(agg["mean"])}'
    normed = agg.get('normalised')
    if normed:
        text += (
            f', normalised mean {normed["mean"]:.1%}, median {normed["median"]:.1%}, '
            f'IQM {normed["iqm"]:.1%} over {plural(normed["tasks"], "task")}'
        )
    return text + '.'


def table(summary: dict) -> str:
    """The summary as one text table per benchmark."""
    lines = []
    for suite, entry in summary.items():
        methods = entry['methods']
        rows = []
        fallback = False
        for task, by in entry['tasks'].items():
            cells = [cell(by[m]) if m in by else '-' for m in methods]
            fallback |= any(s['fallbacks'] for s in by.values())
            rows.append((task, cells))
        aggs, shared, own = entry['aggregates'], entry['shared'], entry['own_aggregates']
        if aggs:
            label = f'mean over {plural(shared, "shared task")}' if own else 'mean over tasks'
            rows += aggregate_rows(aggs, methods, label)
        width = max(len(task) for task, _ in rows)
        widths = [max(len(m), *(len(c[i]) for _, c in rows)) for i, m in enumerate(methods)]
        lines.append(f'{suite}: {entry["protocol"]}.')
        header = ' ' * width + ''.join(f'  {m:>{w}}' for m, w in zip(methods, widths))
        lines.append(header)
        for task, cells in rows:
            lines.append(f'{task:<{width}}' + ''.join(f'  {c:>{w}}' for c, w in zip(cells, widths)))
        normed = [aggs[m].get('normalised') for m in methods] if aggs else []
        kinds = sorted({n['by'] for n in normed if n})
        if kinds:
            lines.append(
                f'Normalised: {"; ".join(kinds)}; 100% = human or max score. Mean and median '
                'over the task scores, IQM over every task-seed score.'
            )
        for method, n in zip(methods, normed):
            if n and n['missing']:
                lines.append(f'{method}: no baseline for {", ".join(n["missing"])}.')
        if own and aggs:
            lines.append(
                f'Aggregates compare the methods on the {plural(shared, "task")} all of them '
                'have. Over all the tasks of a method:'
            )
        elif own:
            lines.append('No task has a score of every method, so no aggregate compares them:')
        lines += [own_line(method, agg, shared) for method, agg in own.items()]
        lines += short_notes(entry)
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
    if args.json and not pathlib.Path(args.json).expanduser().parent.is_dir():
        curveslib.fail(f"The folder of --json '{args.json}' does not exist; create it first.")
    runs, published = curveslib.load(
        args.logdirs, args.reference, args.method, args.key, args.suite, args.include_eval
    )
    curves = runs + published
    summary = summarise(curves)
    if not summary:
        curveslib.fail('None of the inputs holds an episode score.')
    print(table(summary))
    if args.json:
        path = pathlib.Path(args.json).expanduser()
        temp = path.with_name(path.name + '.tmp')
        temp.write_text(json.dumps(summary, indent=1))
        temp.replace(path)
        print(f'Wrote {args.json}')
    tasks = sum(len(entry['tasks']) for entry in summary.values())
    print(f'Scored {len(curves)} curves: {tasks} tasks in {len(summary)} benchmarks.')


if __name__ == '__main__':
    main()
