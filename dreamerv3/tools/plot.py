"""Episode score against environment frames, one panel per task, one curve per method.

usage: python -m dreamerv3.tools.plot LOGDIR ... --out plot.png [--reference FILE ...]

Each seed's scores are averaged into bins of a grid shared by all curves of a task; bins a
seed skips inside its range are interpolated, bins past its last episode stay empty, so a run
in progress contributes to the early bins only. The line is the mean over seeds, the shaded
band their standard deviation (or min to max with --spread minmax). A resumed run's repeated
steps count once, with the score written last (see `curves.step_series`).
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


def draw(rows: list[dict], path: pathlib.Path, kind: str, cols: int) -> None:
    """One panel per task, one line with a shaded band per method, saved as an image."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    tasks = sorted({r['task'] for r in rows})
    methods = sorted({r['method'] for r in rows})
    colors = {m: plt.get_cmap('tab10')(i % 10) for i, m in enumerate(methods)}
    cols = max(1, min(cols, len(tasks)))
    lines = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(4 * cols, 3 * lines + 0.4), squeeze=False)
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
    handles = [plt.Line2D([], [], color=colors[m], lw=2) for m in methods]
    fig.legend(handles, methods, loc='upper center', ncol=min(len(methods), 4), frameon=False)
    if SPREAD_TEXT[kind]:
        fig.text(0.99, 0.005, SPREAD_TEXT[kind], ha='right', va='bottom', fontsize=8)
    # Leave room above the panels for the legend, one line per four methods.
    top = 1 - 0.3 * math.ceil(len(methods) / 4) / fig.get_figheight()
    fig.tight_layout(rect=(0, 0.02, 1, top))
    temp = path.with_name(path.stem + '.tmp' + path.suffix)
    fig.savefig(temp, dpi=100)
    plt.close(fig)
    temp.replace(path)


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
    runs, published = curveslib.load(args.logdirs, args.reference, args.method, args.key)
    curves = select(runs, published, args.tasks)
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
