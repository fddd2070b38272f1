"""The plot tool on synthetic logdirs and score files: the image and the binned CSV."""

import csv
import json
import pathlib

import helpers
import numpy as np
import pytest

from dreamerv3.tools import plot

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data'
PNG = b'\x89PNG\r\n\x1a\n'


def write_run(logdir, records, task='dmc_walker_walk', steps=1000, seed=0, extra=''):
    """A logdir with a config.yaml (plus the `extra` YAML lines) and a scores.jsonl of
    (step, score) records."""
    logdir.mkdir(parents=True)
    config = f'task: {task}\nseed: {seed}\nrun: {{steps: {steps}}}\n{extra}'
    logdir.joinpath('config.yaml').write_text(config)
    lines = [json.dumps({'step': s, 'episode/score': y}) for s, y in records]
    logdir.joinpath('scores.jsonl').write_text('\n'.join(lines) + '\n')


def run_plot(*args, out):
    return helpers.call(plot.main, *args, '--out', out)


def read_csv(path):
    with path.open() as f:
        return [
            {k: (v if k in ('task', 'method') else float(v)) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


@pytest.fixture
def logdirs(tmp_path):
    """Two methods on one task: a resumed run, a run in progress and one without scores."""
    steps = range(100, 1001, 100)
    write_run(tmp_path / 'runs' / 'alpha' / 's1', [(x, x / 100) for x in steps])
    # Resumed at 300 after a crash at 600: the records from 300 on are written twice.
    resumed = [(x, 0.0) for x in range(100, 601, 100)] + [(x, 10.0) for x in range(300, 1001, 100)]
    write_run(tmp_path / 'runs' / 'alpha' / 's2', resumed)
    write_run(tmp_path / 'runs' / 'beta' / 'b1', [(x, 2.0) for x in steps])
    write_run(tmp_path / 'runs' / 'beta' / 'b2', [(x, 4.0) for x in range(100, 401, 100)])
    (tmp_path / 'runs' / 'beta' / 'empty').mkdir()
    (tmp_path / 'runs' / 'beta' / 'empty' / 'config.yaml').write_text('task: dmc_walker_walk\n')
    return tmp_path / 'runs'


def test_runs_binned_with_resume_progress_and_skips(logdirs, tmp_path):
    out = tmp_path / 'plot.png'
    result = run_plot(logdirs / 'alpha', logdirs / 'beta', '--bins', '2', out=out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(PNG) and out.stat().st_size > 5000
    assert 'Skipping' in result.stdout and 'empty' in result.stdout
    assert 'Wrote' in result.stdout and '1 tasks, 2 methods' in result.stdout
    rows = read_csv(tmp_path / 'plot.csv')
    by = {(r['method'], r['x']): r for r in rows}
    # Bins [0, 500) and [500, 1000]. alpha: s1 averages 1..4 and 5..10; s2 keeps the resumed
    # records, 0 0 10 10 and then 10s.
    assert by[('alpha', 250)]['mean'] == pytest.approx(3.75)
    assert by[('alpha', 250)]['high'] - by[('alpha', 250)]['mean'] == pytest.approx(1.25)
    assert by[('alpha', 750)]['mean'] == pytest.approx(8.75)
    assert by[('alpha', 750)]['seeds'] == 2
    # beta: b2 stopped at 400, so only b1 reaches the second bin.
    assert by[('beta', 250)]['mean'] == 3 and by[('beta', 250)]['seeds'] == 2
    assert by[('beta', 750)]['mean'] == 2 and by[('beta', 750)]['seeds'] == 1
    assert {r['task'] for r in rows} == {'dmc_walker_walk'}


def test_method_flag_and_minmax_spread(logdirs, tmp_path):
    out = tmp_path / 'one.png'
    result = run_plot(logdirs, '--method', 'mine', '--bins', '2', '--spread', 'minmax', out=out)
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / 'one.csv')
    assert {r['method'] for r in rows} == {'mine'}
    first = [r for r in rows if r['x'] == 250][0]
    # Seeds of the first bin: 2.5, 5, 2, 4.
    assert first['seeds'] == 4 and first['low'] == 2 and first['high'] == 5


def test_reference_curves_against_a_run(tmp_path):
    write_run(
        tmp_path / 'mine' / 'pong',
        [(x, -20 + x / 2e4) for x in range(4000, 440001, 4000)],
        task='atari100k_pong',
        steps=110000,
    )
    out = tmp_path / 'ref.png'
    result = run_plot(tmp_path / 'mine', '--reference', DATA / 'atari100k-tiny.json', out=out)
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / 'ref.csv')
    # The run names its task atari100k_pong; the published files file it as atari_pong, and only
    # the runs' tasks are drawn.
    assert {r['task'] for r in rows} == {'atari_pong'}
    assert {r['method'] for r in rows} == {'mine', 'tiny'}
    assert max(r['x'] for r in rows) < 440000


def test_reference_only_one_panel_per_task(tmp_path):
    out = tmp_path / 'all.png'
    result = run_plot(
        '--reference', DATA / 'atari100k-tiny.json', '--tasks', 'pong|boxing', out=out
    )
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / 'all.csv')
    assert {r['task'] for r in rows} == {'atari_pong', 'atari_boxing'}
    assert out.read_bytes().startswith(PNG)


def test_nothing_to_plot_exits_2(tmp_path):
    (tmp_path / 'empty').mkdir()
    for args in ([], [tmp_path / 'empty'], [tmp_path / 'missing']):
        result = run_plot(*args, out=tmp_path / 'x.png')
        assert result.returncode == 2, result
        assert 'error:' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'x.png').exists()


def test_bin_curve_interpolates_inside_and_leaves_the_rest_empty():
    edges = np.linspace(0, 10, 6)
    values = plot.bin_curve(np.array([1.0, 5.5]), np.array([2.0, 6.0]), edges)
    # Bins 0 and 2 hold a score, bin 1 between them is interpolated, bins 3 and 4 are past
    # the seed's last episode.
    assert values[:3] == pytest.approx([2, 4, 6])
    assert np.isnan(values[3:]).all()


def test_seeds_of_one_logdir_are_one_method(tmp_path):
    # A train_device run with --run.seeds 2: config.yaml at the top, a run per seed below.
    logdir = tmp_path / 'cartpole'
    logdir.mkdir()
    logdir.joinpath('config.yaml').write_text('task: dmc_walker_walk\nseed: 0\n')
    write_run(logdir / 'seed0', [(x, 1.0) for x in range(100, 1001, 100)])
    write_run(logdir / 'seed1', [(x, 3.0) for x in range(100, 1001, 100)])
    write_run(logdir / 'seed10', [(x, 5.0) for x in range(100, 1001, 100)])
    out = tmp_path / 'plot.png'
    result = run_plot(logdir, '--bins', '1', out=out)
    assert result.returncode == 0, result.stderr
    (row,) = read_csv(tmp_path / 'plot.csv')
    assert row['method'] == 'cartpole' and row['seeds'] == 3 and row['mean'] == 3


def binned_rows(methods, tasks=1, seeds=2):
    """Rows as `plot.binned` gives them: ten bins per method and task."""
    return [
        dict(
            task=f'dmc_task{t}',
            method=m,
            x=x * 100.0,
            mean=x + i,
            low=x + i - 1,
            high=x + i + 1,
            seeds=seeds,
        )
        for t in range(tasks)
        for i, m in enumerate(methods)
        for x in range(10)
    ]


def inside(inner, outer):
    return (
        inner.x0 >= outer.x0 - 1
        and inner.y0 >= outer.y0 - 1
        and inner.x1 <= outer.x1 + 1
        and inner.y1 <= outer.y1 + 1
    )


@pytest.mark.parametrize('count,tasks,cols', [(1, 1, 4), (4, 1, 4), (12, 2, 1)])
def test_legend_stays_inside_the_figure_clear_of_the_panels(count, tasks, cols):
    import matplotlib.pyplot as plt

    methods = [f'method_{i}' for i in range(count)]
    # A label wider than a panel, too.
    methods[-1] += '_with_a_name_much_wider_than_one_panel_of_the_figure_is'
    fig = plot.figure(binned_rows(methods, tasks), 'std', cols)
    try:
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        assert len(legend.get_texts()) == count
        box = legend.get_window_extent(renderer)
        assert inside(box, fig.bbox), (box, fig.bbox)
        panels = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.axison]
        assert len(panels) == tasks
        texts = [t.get_window_extent(renderer) for t in fig.texts]
        for panel in panels:
            assert inside(panel, fig.bbox) and not box.overlaps(panel)
            assert not any(text.overlaps(panel) for text in texts)
        assert all(inside(text, fig.bbox) for text in texts)
        # Twelve methods get twelve colours.
        colors = {tuple(line.get_color()) for line in legend.get_lines()}
        assert len(colors) == count
    finally:
        plt.close(fig)


def test_evaluation_logdirs_only_with_include_eval(tmp_path):
    steps = [(x, 1.0) for x in range(100, 1001, 100)]
    write_run(tmp_path / 'runs' / 'walker', steps)
    evaluation = [(x, 9.0) for x in range(10, 101, 10)]
    write_run(tmp_path / 'runs' / 'eval', evaluation, extra='script: eval_only\n')
    out = tmp_path / 'plot.png'
    result = run_plot(tmp_path / 'runs', '--bins', '1', out=out)
    assert result.returncode == 0, result.stderr
    assert 'eval_only' in result.stdout and '--include_eval' in result.stdout
    (row,) = read_csv(tmp_path / 'plot.csv')
    assert row['mean'] == 1 and row['seeds'] == 1
    result = run_plot(tmp_path / 'runs', '--bins', '1', '--include_eval', out=out)
    assert result.returncode == 0, result.stderr
    # The two differ in their script, so each goes by its own folder, and the evaluation
    # never joins a training curve.
    assert {r['method'] for r in read_csv(tmp_path / 'plot.csv')} == {'walker', 'eval (eval)'}


def test_runs_of_one_parent_are_labelled_by_what_tells_them_apart(tmp_path):
    steps = [(x, 1.0) for x in range(100, 1001, 100)]
    # The default ~/logdir/<timestamp>: runs of different settings in one folder.
    write_run(tmp_path / 'logdir' / '20250101T090000', steps, extra='batch_size: 16\n')
    write_run(tmp_path / 'logdir' / '20250102T090000', steps, extra='batch_size: 32\n')
    out = tmp_path / 'plot.png'
    result = run_plot(tmp_path / 'logdir', '--bins', '1', out=out)
    assert result.returncode == 0, result.stderr
    methods = {r['method'] for r in read_csv(tmp_path / 'plot.csv')}
    assert methods == {'20250101T090000', '20250102T090000'}
    # Alike runs in the default root also go by their own names, never by 'logdir'.
    write_run(tmp_path / 'alike' / 'logdir' / '20250101T090000', steps)
    write_run(tmp_path / 'alike' / 'logdir' / '20250102T090000', steps)
    result = run_plot(tmp_path / 'alike' / 'logdir', '--bins', '1', out=out)
    assert result.returncode == 0, result.stderr
    methods = {r['method'] for r in read_csv(tmp_path / 'plot.csv')}
    assert methods == {'20250101T090000', '20250102T090000'}
    # Runs that differ only in seed are seeds of the method their folder names.
    write_run(tmp_path / 'mine' / 'walker0', steps, seed=0)
    write_run(tmp_path / 'mine' / 'walker1', steps, seed=1)
    result = run_plot(tmp_path / 'mine', '--bins', '1', out=out)
    assert result.returncode == 0, result.stderr
    (row,) = read_csv(tmp_path / 'plot.csv')
    assert row['method'] == 'mine' and row['seeds'] == 2


def test_one_seed_is_said_not_shaded():
    import matplotlib.pyplot as plt

    one = binned_rows(['mine'], seeds=1)
    assert plot.caption(one, 'std') == 'one seed per curve: no spread across seeds'
    fig = plot.figure(one, 'std', 4)
    try:
        texts = [t.get_text() for t in fig.texts]
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
    finally:
        plt.close(fig)
    assert not any('deviation' in text for text in texts) and any('one seed' in t for t in texts)
    assert labels == ['mine (one seed)']
    mixed = one + binned_rows(['theirs'], seeds=5)
    assert plot.caption(mixed, 'std').endswith('(none for one seed)')
    assert plot.legend_label('theirs', [5]) == 'theirs (5 seeds)'
    assert plot.caption(binned_rows(['theirs'], seeds=5), 'minmax') == plot.SPREAD_TEXT['minmax']


def test_benchmarks_mix_only_when_asked(tmp_path):
    write_run(
        tmp_path / 'mine' / 'pong',
        [(x, -20 + x / 2e4) for x in range(4000, 400001, 4000)],
        task='atari100k_pong',
        steps=110000,
    )
    # An Atari 57 file: the same game, a budget 500 times larger.
    atari57 = tmp_path / 'atari57-tiny.json'
    xs = [i * 1e7 for i in range(1, 21)]
    records = [dict(task='atari_pong', method='tiny', seed=0, xs=xs, ys=[10.0] * 20)]
    atari57.write_text(json.dumps(records))
    out = tmp_path / 'mix.png'
    result = run_plot(tmp_path / 'mine', '--reference', atari57, out=out)
    assert result.returncode == 2, result.stdout
    assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr
    assert 'atari100k (mine)' in result.stderr and 'atari (tiny)' in result.stderr
    assert '--mix_benchmarks' in result.stderr and not out.exists()
    result = run_plot(tmp_path / 'mine', '--reference', atari57, '--mix_benchmarks', out=out)
    assert result.returncode == 0, result.stderr
    methods = {r['method'] for r in read_csv(tmp_path / 'mix.csv')}
    assert methods == {'mine [atari100k]', 'tiny [atari]'}
