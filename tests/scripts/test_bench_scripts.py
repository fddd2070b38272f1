"""The benchmark and profile scripts run end to end in their tiny CPU modes."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ['--configs', 'debug', '--jax.platform', 'cpu', '--batch_size', '2', '--batch_length', '4']


def run(cmd, env=None, timeout=600):
    env = {**os.environ, 'PYTHONPATH': str(ROOT), **(env or {})}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_bench_gpu_tiny_cpu_mode_writes_table_and_json(tmp_path):
    cmd = ['bash', 'scripts/bench_gpu.sh', *TINY, '--updates', '1', '--warmup', '1']
    out = run([*cmd, '--peak-tflops', '2'], env={'OUT': str(tmp_path)})
    assert '| configs | device |' in out and '% of 2 TFLOP/s' in out
    assert 'XLA flags in effect:' in out
    assert out.strip().endswith('benchmarked 1 configurations')
    payload = json.loads((tmp_path / 'bench_gpu.json').read_text())
    assert payload['peak_tflops'] == 2
    (result,) = payload['results']
    assert result['configs'] == 'debug' and result['platform'] == 'cpu'
    assert result['batch'] == [2, 4]
    assert result['sec_per_update'] > 0 and result['flops_per_update'] > 0
    assert result['flops_per_s'] == pytest.approx(
        result['flops_per_update'] / result['sec_per_update']
    )
    assert (tmp_path / 'bench_gpu.md').read_text().startswith('| configs |')


@pytest.mark.slow
def test_bench_train_reports_time_faults_and_cpu_seconds_per_update():
    out = run([sys.executable, 'scripts/bench_train.py', *TINY, '--updates', '2', '--warmup', '1'])
    result = json.loads(out.strip().splitlines()[-1])
    assert result['batch'] == [2, 4] and result['sec_per_update'] > 0
    assert result['replayed_steps_per_s'] == pytest.approx(8 / result['sec_per_update'], rel=0.01)
    assert result['minor_faults_per_update'] >= 0
    # Two waited-for updates use CPU time, which the process accounts to itself.
    assert result['user_s_per_update'] + result['sys_s_per_update'] > 0


@pytest.mark.slow
def test_profile_train_reports_every_stage(tmp_path):
    out = run(
        [
            sys.executable,
            'scripts/profile_train.py',
            *TINY,
            '--jax.precompile',
            'False',
            '--repeats',
            '1',
            '--ops',
            '3',
            '--json',
            str(tmp_path / 'profile.json'),
        ]
    )
    stages = json.loads((tmp_path / 'profile.json').read_text())['stages']
    # Every timed stage lists its three costliest XLA ops, most expensive first.
    for stage in stages[:-1]:
        ms = [op['ms'] for op in stage['ops']]
        assert len(ms) == 3 and ms == sorted(ms, reverse=True) and ms[0] > 0, stage
        assert all(op['shape'] and op['calls'] > 0 for op in stage['ops']), stage
        # Loops span the ops of their bodies, which are listed themselves.
        assert not any(op['op'].startswith('while') for op in stage['ops']), stage
    assert out.count('costliest XLA ops of') == len(stages) - 1
    names = [s['name'] for s in stages]
    assert names == [
        'enc',
        'dyn',
        'dec',
        'heads',
        'imagine',
        'actor-critic',
        'loss+grad',
        'train',
        'optimizer (train - loss+grad)',
    ]
    assert all(s['seconds'] > 0 or s['name'].startswith('optimizer') for s in stages)
    assert '| stage | compile (s) |' in out


def test_side_by_side_alternates_the_checkouts_and_prints_each_last_line(tmp_path):
    base = tmp_path / 'base'
    base.mkdir()
    cmd = [
        sys.executable,
        '-c',
        'import os; print("noise"); print(os.getcwd(), os.environ["PYTHONPATH"])',
    ]
    out = subprocess.run(
        ['bash', 'scripts/side_by_side.sh', str(base), '2', *cmd],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    results = [line for line in lines if not line.startswith('[') and not line.startswith('Done')]
    assert results == [f'{base} {base}', f'{ROOT} {ROOT}'] * 2
    assert lines[0].startswith('[1/2] base') and lines[2].startswith('[1/2] this')
    assert lines[-1] == f'Done: 2 runs in each of {base} and {ROOT}.'


def test_side_by_side_rejects_a_bad_run_count(tmp_path):
    out = subprocess.run(
        ['bash', 'scripts/side_by_side.sh', str(tmp_path), 'three', 'true'],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "RUNS must be a positive number of runs per checkout, got 'three'." in out.stderr
