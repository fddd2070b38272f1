"""The score tool: the paper's protocol on synthetic and on the published score files."""

import gzip
import json
import pathlib
import statistics

import helpers
import pytest
import scipy.stats

from dreamerv3.tools import score

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data'
SHARED = ROOT.parent / 'shared' / 'reference'
published = pytest.mark.skipif(
    not (SHARED / 'scores').is_dir(), reason='the published score files are not next to the repo'
)


def run_score(*args, tmp_path):
    """Run the command; returns (CompletedProcess, the --json summary or None)."""
    out = tmp_path / 'summary.json'
    result = helpers.call(score.main, *args, '--json', out)
    summary = json.loads(out.read_text()) if out.exists() else None
    return result, summary


def write_run(logdir, task, steps, records, repeat=1):
    """A logdir with a config.yaml and a scores.jsonl of (step, score) records."""
    logdir.mkdir(parents=True)
    suite = task.split('_', 1)[0]
    logdir.joinpath('config.yaml').write_text(
        f'task: {task}\nseed: 0\nrun: {{steps: {steps}}}\nenv: {{{suite}: {{repeat: {repeat}}}}}\n'
    )
    lines = [json.dumps({'step': s, 'episode/score': y}) for s, y in records]
    logdir.joinpath('scores.jsonl').write_text('\n'.join(lines) + '\n')


def test_tiny_atari100k_file_by_hand(tmp_path):
    # Per seed (window 390k..400k frames, else the last episode before 400k):
    # freeway 29.6 and 0 (fallback), enduro 860.5 and 430.25, boxing 6.1 and 12.1,
    # pong -20.7 and -3.05. Normalised by [random, human]: freeway 1, 0; enduro 1, 0.5;
    # boxing 0.5, 1; pong 0, 0.5. Task means: 0.5, 0.75, 0.75, 0.25.
    result, summary = run_score('--reference', DATA / 'atari100k-tiny.json', tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    entry = summary['atari100k']
    tasks = entry['tasks']
    assert tasks['atari_freeway']['tiny']['score'] == pytest.approx(14.8)
    assert tasks['atari_freeway']['tiny']['fallbacks'] == 1
    assert tasks['atari_enduro']['tiny']['score'] == pytest.approx(645.375)
    assert tasks['atari_boxing']['tiny']['score'] == pytest.approx(9.1)
    assert tasks['atari_pong']['tiny']['score'] == pytest.approx(-11.875)
    aggs = entry['aggregates']['tiny']
    assert aggs['mean'] == pytest.approx(657.4 / 4)
    normed = aggs['normalised']
    assert normed['mean'] == pytest.approx(0.5625)
    assert normed['median'] == pytest.approx(0.625)
    # Sorted seed scores 0 0 .5 .5 .5 1 1 1: the middle four average to 0.625.
    assert normed['iqm'] == pytest.approx(0.625)
    assert '390k and 400k' in result.stdout
    assert 'normalised median' in result.stdout and '62.5%' in result.stdout


def test_tiny_final_five_percent(tmp_path):
    # The longer seed ends at 1000 frames, so the window is 950..1000: seed 0 scores
    # mean(3, 5) = 4, seed 1 never gets there and counts its last episode, 6.
    result, summary = run_score('--reference', DATA / 'dmc-tiny.json', tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    walker = summary['dmc']['tasks']['dmc_walker_walk']['tiny']
    assert walker['seeds'] == [4, 6]
    assert walker['score'] == 5
    assert summary['dmc']['aggregates']['tiny'] == {'tasks': 1, 'mean': 5}
    assert 'final 5% of the budget' in result.stdout


def test_runs_use_their_budget_and_resumes(tmp_path):
    # 500 agent steps at action repeat 2 = 1000 frames: the window is 950..1000 frames. The
    # run was resumed at 900 frames, so the later 960 record replaces the first one.
    records = [(500, 1.0), (960, 100.0), (990, 100.0), (900, 2.0), (960, 4.0), (1000, 6.0)]
    write_run(tmp_path / 'mine' / 'seed0', 'dmc_walker_walk', 500, records, repeat=2)
    write_run(tmp_path / 'mine' / 'seed1', 'dmc_walker_walk', 500, [(980, 10.0)], repeat=2)
    (tmp_path / 'mine' / 'empty').mkdir()
    (tmp_path / 'mine' / 'empty' / 'config.yaml').write_text('task: dmc_walker_walk\n')
    result, summary = run_score(
        tmp_path / 'mine', '--reference', DATA / 'dmc-tiny.json', tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    walker = summary['dmc']['tasks']['dmc_walker_walk']
    assert sorted(walker['mine']['seeds']) == [5, 10]
    assert walker['mine']['score'] == 7.5
    assert walker['tiny']['score'] == 5
    assert 'Skipping' in result.stdout and 'empty' in result.stdout
    assert 'mine' in result.stdout and 'tiny' in result.stdout


def test_atari100k_run_names_match_the_published_games(tmp_path):
    write_run(tmp_path / 'mine' / 'a', 'atari100k_pong', 110000, [(392000, -3.05), (420000, 21)], 4)
    result, summary = run_score(
        tmp_path / 'mine', '--reference', DATA / 'atari100k-tiny.json', tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    pong = summary['atari100k']['tasks']['atari_pong']
    assert pong['mine']['score'] == pytest.approx(-3.05)
    assert summary['atari100k']['aggregates']['mine']['normalised']['mean'] == pytest.approx(0.5)


def test_bad_input_exits_2_without_traceback(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"not": "a list"}')
    for args in ([], [tmp_path / 'missing'], ['--reference', bad]):
        result, _ = run_score(*args, tmp_path=tmp_path)
        assert result.returncode == 2, result
        assert 'error:' in result.stderr and 'Traceback' not in result.stderr


def test_interquartile_mean_cuts_a_quarter_each_side():
    assert score.interquartile_mean([0, 1, 2, 3, 4, 5, 6, 100]) == 3.5
    assert score.interquartile_mean([5, 1, 3]) == 3
    assert score.interquartile_mean(list(range(10))) == pytest.approx(4.5)


def independent_atari100k(records, table):
    """Per-task scores and aggregates of an Atari 100k file, computed in plain Python."""
    by_task = {}
    for r in records:
        pairs = [(x, y) for x, y in zip(r['xs'], r['ys']) if y is not None]
        inside = [y for x, y in pairs if 390_000 <= x <= 400_000]
        if inside:
            seed = sum(inside) / len(inside)
        else:
            seed = [y for x, y in pairs if x <= 400_000][-1]
        by_task.setdefault(r['task'], []).append(seed)
    low = {t: table[t][0] for t in by_task}
    span = {t: table[t][1] - table[t][0] for t in by_task}
    task_norm = [(sum(s) / len(s) - low[t]) / span[t] for t, s in by_task.items()]
    seed_norm = [(s - low[t]) / span[t] for t, seeds in by_task.items() for s in seeds]
    return by_task, dict(
        mean=sum(task_norm) / len(task_norm),
        median=statistics.median(task_norm),
        iqm=scipy.stats.trim_mean(seed_norm, 0.25),
    )


@published
def test_published_atari100k_aggregates_match_an_independent_computation(tmp_path):
    path = SHARED / 'scores' / 'atari100k-dreamerv3.json.gz'
    records = json.loads(gzip.open(path).read())
    table = json.loads((SHARED / 'baselines.json').read_text())['atari57_gamer']
    by_task, expected = independent_atari100k(records, table)
    result, summary = run_score('--reference', path, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    entry = summary['atari100k']
    assert set(entry['tasks']) == set(by_task) and len(by_task) == 26
    for task, seeds in by_task.items():
        assert entry['tasks'][task]['dreamerv3']['seeds'] == pytest.approx(seeds), task
    normed = entry['aggregates']['dreamerv3']['normalised']
    assert normed['tasks'] == 26
    for key in ('mean', 'median', 'iqm'):
        assert normed[key] == pytest.approx(expected[key]), key
    # Two games by hand from the file's episodes near 400k frames. Breakout, per seed, the
    # episodes in 390k..400k: (15+13+14+11)/4, (8+8+15+10+11)/5, (11+7+7+7+11+3+3+2+11+11)/10,
    # (11+10+12+5+11)/5, (12+5+7+3+7+3+8+11+12)/9. Pong: seed 0 has no episode in the window
    # and counts its last one (-9 at 389384 frames); the others: -8, -4, -3, -1.
    breakout = entry['tasks']['atari_breakout']['dreamerv3']
    assert breakout['seeds'] == pytest.approx([13.25, 10.4, 7.3, 9.8, 68 / 9])
    assert breakout['score'] == pytest.approx((13.25 + 10.4 + 7.3 + 9.8 + 68 / 9) / 5)
    pong = entry['tasks']['atari_pong']['dreamerv3']
    assert pong['seeds'] == [-9, -8, -4, -3, -1] and pong['score'] == -5
    assert pong['fallbacks'] == 1
    # Sanity against the paper: DreamerV3 is above human on average and about half of human
    # at the median of the 26 games.
    assert 1.0 < normed['mean'] < 1.5 and 0.3 < normed['median'] < 0.7


@published
def test_baseline_names_match_the_published_task_names():
    shipped = score.baselines()
    assert shipped == json.loads((SHARED / 'baselines.json').read_text())
    assert 'danijar/dreamerv3' in shipped['about']
    tables = {'atari': 'atari57_gamer', 'dmlab': 'dmlab30', 'procgen': 'procgen_hard'}
    checked = 0
    for path in sorted((SHARED / 'scores').glob('*.json.gz')):
        prefix = path.name.split('-')[0]
        table = next((t for p, t in tables.items() if prefix.startswith(p)), None)
        if not table:
            continue
        tasks = {r['task'] for r in json.loads(gzip.open(path).read())}
        assert tasks <= set(shipped[table]), (path.name, tasks - set(shipped[table]))
        checked += 1
    assert checked >= 4
    assert len(shipped['atari57_gamer']) == 57


def test_baselines_ship_as_package_data():
    import tomllib

    pyproject = tomllib.loads((ROOT / 'pyproject.toml').read_text())
    assert 'data/*.json' in pyproject['tool']['setuptools']['package-data']['dreamerv3']
    table = score.baselines()['atari57_gamer']
    assert table['atari_pong'] == [-20.7, 14.6]


def test_published_seeds_stay_apart_from_runs_of_the_same_name(tmp_path):
    write_run(tmp_path / 'tiny' / 'a', 'dmc_walker_walk', 1000, [(1000, 50.0)])
    result, summary = run_score(
        tmp_path / 'tiny', '--reference', DATA / 'dmc-tiny.json', tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    walker = summary['dmc']['tasks']['dmc_walker_walk']
    assert walker['tiny']['seeds'] == [50] and walker['tiny (published)']['score'] == 5


def test_a_run_short_of_its_budget_is_named_in_words(tmp_path):
    # Budget 1000 frames; the run stopped at 40, its last metrics record.
    short = tmp_path / 'short' / 'walker'
    write_run(short, 'dmc_walker_walk', 1000, [(10, 1.0), (30, 2.0)])
    short.joinpath('metrics.jsonl').write_text('{"step": 20}\n{"step": 40}\n')
    done = tmp_path / 'done' / 'walker'
    write_run(done, 'dmc_walker_walk', 1000, [(500, 1.0), (990, 3.0)])
    done.joinpath('metrics.jsonl').write_text('{"step": 500}\n{"step": 1000}\n')
    result, summary = run_score(tmp_path / 'short', tmp_path / 'done', tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    walker = summary['dmc']['tasks']['dmc_walker_walk']
    assert walker['short']['short'] == [[40, 1000]] and walker['short']['score'] == 2
    assert walker['done']['short'] == [] and walker['done']['score'] == 3
    assert '(1, ended at 4%)' in result.stdout
    assert 'short on dmc_walker_walk: the run ended at 4% of its budget (40 of 1k' in result.stdout
    assert 'done on' not in result.stdout


def test_aggregates_compare_methods_on_shared_tasks_only(tmp_path):
    # One game of ours against the four of the file: the rows compare pong alone.
    write_run(tmp_path / 'mine' / 'a', 'atari100k_pong', 110000, [(392000, -3.05)], 4)
    result, summary = run_score(
        tmp_path / 'mine', '--reference', DATA / 'atari100k-tiny.json', tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    entry = summary['atari100k']
    assert entry['shared'] == 1
    assert entry['aggregates']['tiny']['tasks'] == 1
    assert entry['aggregates']['tiny']['mean'] == pytest.approx(-11.875)
    assert entry['aggregates']['tiny']['normalised']['mean'] == pytest.approx(0.25)
    own = entry['own_aggregates']
    assert set(own) == {'tiny'} and own['tiny']['tasks'] == 4
    assert own['tiny']['mean'] == pytest.approx(657.4 / 4)
    assert 'mean over 1 shared task ' in result.stdout
    assert 'tiny over all its 4 tasks (3 not shared)' in result.stdout


def test_no_aggregate_when_methods_share_no_task(tmp_path):
    write_run(tmp_path / 'mine' / 'a', 'dmc_cheetah_run', 1000, [(1000, 50.0)])
    result, summary = run_score(
        tmp_path / 'mine', '--reference', DATA / 'dmc-tiny.json', tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    entry = summary['dmc']
    assert entry['shared'] == 0 and entry['aggregates'] == {}
    assert set(entry['own_aggregates']) == {'mine', 'tiny'}
    assert 'mean over tasks' not in result.stdout and 'shared task' not in result.stdout
    assert 'no aggregate compares them' in result.stdout
    assert 'mine over all its 1 task: mean 50.' in result.stdout
