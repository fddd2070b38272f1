"""Episode score against environment frames, one panel per task, one curve per method.

usage: python -m dreamerv3.tools.plot LOGDIR ... --out plot.png [--reference FILE ...]

Each seed's scores are averaged into bins of a grid shared by all curves of a task; bins a
seed skips inside its range are interpolated, bins past its last episode stay empty, so a run
in progress contributes to the early bins only. The line is the mean over seeds, the shaded
band their standard deviation (or min to max with --spread minmax); the legend gives each
method's seed count. A resumed run's repeated steps count once, with the score written last
(see `curves.step_series`).

Curves of two benchmarks on one task (an Atari 100k run against the Atari 57 file) differ in
budget and protocol, so the command refuses to draw them in one panel unless asked.
"""

import argparse
import csv
import importlib.util
import math
import pathlib
import re
import warnings

import numpy as np

from . import curves as curveslib

SPREADS = ('std', 'minmax', 'none')
SPREAD_TEXT = {
    'std': 'shaded: one standard deviation across seeds',
    'minmax': 'shaded: min to max across seeds',
    'none': '',
}
# Inches of one panel, and the font size of the legend.
PANEL = (4.0, 3.0)
LEGEND_FONT = 9


def bin_curve(xs: np.ndarray, ys: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean score per bin; empty bins inside the seed's range are interpolated, others NaN."""
    count = len(edges) - 1
    index = np.clip(np.searchsorted(edges, xs, side='right') - 1, 0, count - 1)
    sums = np.bincount(index, ys, minlength=count)
    counts = np.bincount(index, minlength=count)
    values = np.full(count, np.nan)
    filled = counts > 0
    values[filled] = sums[filled] / counts[filled]
    if filled.sum() >= 2:
        centers = np.arange(count)
        first, last = np.flatnonzero(filled)[[0, -1]]
        inner = (centers > first) & (centers < last) & ~filled
        values[inner] = np.interp(centers[inner], centers[filled], values[filled])
    return values


def spread(stack: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, low, high and seed count per bin of a [seeds, bins] array with NaN gaps."""
    seeds = np.isfinite(stack).sum(0)
    # Bins that no seed reaches are all NaN; their mean is NaN without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        mean = np.nanmean(stack, 0)
        if kind == 'std':
            std = np.nanstd(stack, 0)
            low, high = mean - std, mean + std
        elif kind == 'minmax':
            low, high = np.nanmin(stack, 0), np.nanmax(stack, 0)
        else:
            low, high = mean, mean
    return mean, low, high, seeds


def binned(curves: list[curveslib.Curve], bins: int, kind: str) -> list[dict]:
    """Rows of the binned curves: task, method, x, mean, low, high, seeds."""
    rows = []
    for task in sorted({c.task for c in curves}):
        ofs = [c for c in curves if c.task == task and len(c.xs)]
        if not ofs:
            continue
        end = max(float(c.xs[-1]) for c in ofs)
        edges = np.linspace(0.0, end if end > 0 else 1.0, bins + 1)
        centers = (edges[:-1] + edges[1:]) / 2
        for method in sorted({c.method for c in ofs}):
            stack = np.stack([bin_curve(c.xs, c.ys, edges) for c in ofs if c.method == method])
            mean, low, high, seeds = spread(stack, kind)
            for i in np.flatnonzero(seeds):
                rows.append(
                    dict(
                        task=task,
                        method=method,
                        x=float(centers[i]),
                        mean=float(mean[i]),
                        low=float(low[i]),
                        high=float(high[i]),
                        seeds=int(seeds[i]),
                    )
                )
    return rows


def write_csv(rows: list[dict], path: pathlib.Path) -> None:
    """The binned curves as CSV, written to a temporary file and renamed."""
    temp = path.with_name(path.name + '.tmp')
    with temp.open('w', newline='') as f:
        writer = csv.DictWriter(f, ['task', 'method', 'x', 'mean', 'low', 'high', 'seeds'])
        writer.writeheader()
        writer.writerows(rows)
    temp.replace(path)


def seed_counts(rows: list[dict]) -> dict:
    """{method: sorted seed counts over its tasks}, each the most seeds any of its bins has."""
    most = {}
    for row in rows:
        key = (row['method'], row['task'])
        most[key] = max(most.get(key, 0), row['seeds'])
    counts = {}
    for (method, _), count in most.items():
        counts.setdefault(method, set()).add(count)
    return {method: sorted(found) for method, found in counts.items()}


def legend_label(method: str, counts: list[int]) -> str:
    """The method with its seeds, e.g. 'dreamerv3 (5 seeds)' or 'mine (one seed)'."""
    if counts == [1]:
        return f'{method} (one seed)'
    if len(counts) == 1:
        return f'{method} ({counts[0]} seeds)'
    return f'{method} ({counts[0]}-{counts[-1]} seeds)'


def caption(rows: list[dict], kind: str) -> str:
    """What the band shows; with one seed per curve there is no spread to show."""
    counts = [c for found in seed_counts(rows).values() for c in found]
    if max(counts) == 1:
        return 'one seed per curve: no spread across seeds'
    if kind != 'none' and min(counts) == 1:
        return f'{SPREAD_TEXT[kind]} (none for one seed)'
    return SPREAD_TEXT[kind]


def place_legend(fig, handles: list, labels: list[str]):
    """A legend across the top of the figure in as many columns as fit its width; a label
    wider than the figure widens the figure."""
    renderer = fig.canvas.get_renderer()
    for ncol in range(len(labels), 0, -1):
        legend = fig.legend(
            handles,
            labels,
            loc='upper center',
            bbox_to_anchor=(0.5, 1.0),
            ncol=ncol,
            frameon=False,
            fontsize=LEGEND_FONT,
        )
        width = legend.get_window_extent(renderer).width
        if width <= 0.98 * fig.bbox.width or ncol == 1:
            break
        legend.remove()
    if width > 0.98 * fig.bbox.width:
        fig.set_figwidth(width / fig.dpi + 0.2)
    return legend


def palette(count: int) -> list:
    """`count` distinct colours: tab10 or tab20 while they last, then samples of a colour map,
    so that no two methods share a colour."""
    import matplotlib.pyplot as plt

    for name, size in (('tab10', 10), ('tab20', 20)):
        if count <= size:
            return [plt.get_cmap(name)(i) for i in range(count)]
    return [plt.get_cmap('turbo')(i / (count - 1)) for i in range(count)]


def figure(rows: list[dict], kind: str, cols: int):
    """One panel per task, one line with a shaded band per method; the legend has a row of
    its own above the panels, so it stays inside the figure at any number of methods."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    tasks = sorted({r['task'] for r in rows})
    methods = sorted({r['method'] for r in rows})
    colors = dict(zip(methods, palette(len(methods))))
    cols = max(1, min(cols, len(tasks)))
    lines = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(
        lines, cols, figsize=(PANEL[0] * cols, PANEL[1] * lines), squeeze=False
    )
    for ax, task in zip(axes.flat, tasks):
        for method in methods:
            mine = [r for r in rows if r['task'] == task and r['method'] == method]
            if not mine:
                continue
            xs = np.array([r['x'] for r in mine])
            ax.plot(xs, [r['mean'] for r in mine], color=colors[method], label=method, lw=1.5)
            if kind != 'none':
                low, high = [r['low'] for r in mine], [r['high'] for r in mine]
                ax.fill_between(xs, low, high, color=colors[method], alpha=0.2, lw=0)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel('environment frames')
        ax.set_ylabel('episode score')
        ax.xaxis.get_offset_text().set_fontsize(8)
        ax.ticklabel_format(axis='x', style='sci', scilimits=(0, 0))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis('off')
    counts = seed_counts(rows)
    handles = [plt.Line2D([], [], color=colors[m], lw=2) for m in methods]
    legend = place_legend(fig, handles, [legend_label(m, counts[m]) for m in methods])
    text = caption(rows, kind)
    if text:
        fig.text(0.99, 0.005, text, ha='right', va='bottom', fontsize=8)
    # Grow the figure by the legend's and caption's height rather than squeeze the panels.
    top = legend.get_window_extent(fig.canvas.get_renderer()).height / fig.dpi + 0.1
    bottom = 0.25 if text else 0.05
    height = PANEL[1] * lines + top + bottom
    fig.set_figheight(height)
    fig.tight_layout(rect=(0, bottom / height, 1, 1 - top / height))
    return fig


def draw(rows: list[dict], path: pathlib.Path, kind: str, cols: int) -> None:
    """The figure of the binned curves, saved to a temporary image and renamed."""
    import matplotlib.pyplot as plt

    fig = figure(rows, kind, cols)
    temp = path.with_name(path.stem + '.tmp' + path.suffix)
    fig.savefig(temp, dpi=fig.dpi)
    plt.close(fig)
    temp.replace(path)


def mix_check(curves: list[curveslib.Curve], mix: bool) -> None:
    """Refuse curves of different benchmarks on one task unless `mix`; with it, name each
    method's benchmark so that no curve of one joins a curve of the other."""
    suites = {}
    for curve in curves:
        suites.setdefault(curve.task, {}).setdefault(curve.suite, set()).add(curve.method)
    mixed = {task: by for task, by in sorted(suites.items()) if len(by) > 1}
    if not mixed:
        return
    if not mix:
        task, by = next(iter(mixed.items()))
        names = ' and '.join(f'{s} ({", ".join(sorted(m))})' for s, m in sorted(by.items()))
        more = f' (and {len(mixed) - 1} more tasks)' if len(mixed) > 1 else ''
        curveslib.fail(
            f'{task}{more} has curves of different benchmarks, {names}, whose budgets and '
            "protocols differ; give score files of the runs' benchmark, or pass "
            '--mix_benchmarks to draw them together.'
        )
    for curve in curves:
        curve.method = f'{curve.method} [{curve.suite}]'


def parse(argv=None) -> argparse.Namespace:
    """The command-line arguments."""
    parser = curveslib.input_parser(
        'python -m dreamerv3.tools.plot',
        description='Plot episode score against environment frames for runs and published '
        'curves; also writes the binned curves as CSV next to the image.',
    )
    parser.add_argument('--out', default='plot.png', help='image to write (default plot.png)')
    parser.add_argument('--bins', type=int, default=30, help='bins of the step grid per task')
    parser.add_argument('--spread', choices=SPREADS, default='std', help='band across seeds')
    parser.add_argument('--tasks', default='', help='regex: plot only the tasks it matches')
    parser.add_argument('--cols', type=int, default=4, help='panels per row')
    parser.add_argument(
        '--mix_benchmarks',
        action='store_true',
        help='draw curves of different benchmarks on one task together (e.g. an Atari 100k '
        'run and the Atari 57 file), each method labelled with its benchmark',
    )
    return parser.parse_args(argv)


def select(runs: list, published: list, pattern: str) -> list[curveslib.Curve]:
    """The curves to draw: tasks matching `pattern`; with runs, only the runs' tasks."""
    tasks = {c.task for c in runs}
    try:
        regex = re.compile(pattern)
    except re.error as e:
        curveslib.fail(f'--tasks {pattern!r} is not a valid regular expression: {e}.')
    published = [c for c in published if not tasks or c.task in tasks]
    return [c for c in runs + published if regex.search(c.task)]


def main(argv=None) -> None:
    """Entry point of `python -m dreamerv3.tools.plot`."""
    args = parse(argv)
    if not args.logdirs and not args.reference:
        curveslib.fail('Give at least one logdir or --reference FILE.')
    if args.bins < 1:
        curveslib.fail(f'--bins must be at least 1, got {args.bins}.')
    if importlib.util.find_spec('matplotlib') is None:
        curveslib.fail("Plotting needs matplotlib: pip install -e '.[plot]'.")
    out = pathlib.Path(args.out).expanduser()
    if not out.parent.is_dir():
        curveslib.fail(f"The folder of --out '{out}' does not exist; create it first.")
    runs, published = curveslib.load(
        args.logdirs, args.reference, args.method, args.key, include_eval=args.include_eval
    )
    curves = select(runs, published, args.tasks)
    mix_check(curves, args.mix_benchmarks)
    print(f'Loaded {len(curves)} curves; binning on {args.bins} steps per task.')
    rows = binned(curves, args.bins, args.spread)
    if not rows:
        curveslib.fail('No episode scores to plot in the given logdirs and files.')
    table = out.with_suffix('.csv')
    write_csv(rows, table)
    draw(rows, out, args.spread, args.cols)
    tasks = len({r['task'] for r in rows})
    methods = len({r['method'] for r in rows})
    print(f'Wrote {out} and {table}: {tasks} tasks, {methods} methods, {len(curves)} seeds.')


if __name__ == '__main__':
    main()
