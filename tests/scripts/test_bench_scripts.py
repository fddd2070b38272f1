"""The benchmark and profile scripts run end to end in their small CPU modes."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import helpers
import pytest

from dreamerv3 import main as mainlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEBUG = ['--configs', 'debug', '--jax.platform', 'cpu']


def script(name):
    """scripts/<name>.py as a module."""
    sys.path.insert(0, str(ROOT / 'scripts'))  # the scripts import their neighbours
    spec = importlib.util.spec_from_file_location(name, ROOT / 'scripts' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def shared(make_debug_agent, monkeypatch):
    """The scripts get the shared debug agent instead of compiling one."""
    monkeypatch.setattr(mainlib, 'make_agent', make_debug_agent)


def test_bench_gpu_cpu_mode_writes_table_and_json(tmp_path):
    # A process per configuration, as on a GPU; the debug train step is the shared agent's
    # program, so the persistent compilation cache usually has it.
    cmd = ['bash', 'scripts/bench_gpu.sh', *DEBUG, '--updates', '1', '--warmup', '1']
    # The train_device part (Craftax at size12m) is left out here.
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OUT': str(tmp_path), 'BENCH_DEVICE_CONFIGS': ''}
    result = subprocess.run(
        [*cmd, '--peak-tflops', '2'], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, helpers.output(result)
    out = result.stdout
    assert '| configs | device |' in out and '% of 2 TFLOP/s' in out
    assert 'XLA flags in effect:' in out
    assert out.strip().endswith('benchmarked 1 configurations')
    payload = json.loads((tmp_path / 'bench_gpu.json').read_text())
    assert payload['peak_tflops'] == 2
    (result,) = payload['results']
    assert result['configs'] == 'debug' and result['platform'] == 'cpu'
    assert result['batch'] == [8, 10]
    assert result['sec_per_update'] > 0 and result['flops_per_update'] > 0
    assert result['flops_per_s'] == pytest.approx(
        result['flops_per_update'] / result['sec_per_update']
    )
    assert (tmp_path / 'bench_gpu.md').read_text().startswith('| configs |')


def test_bench_train_reports_time_faults_and_cpu_seconds_per_update(shared, capsys):
    script('bench_train').main([*DEBUG, '--updates', '2', '--warmup', '1', '--policy-envs', '2'])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result['batch'] == [8, 10] and result['sec_per_update'] > 0
    assert result['replayed_steps_per_s'] == pytest.approx(80 / result['sec_per_update'], rel=0.01)
    assert result['minor_faults_per_update'] >= 0
    # Two waited-for updates use CPU time, which the process accounts to itself.
    assert result['user_s_per_update'] + result['sys_s_per_update'] > 0
    assert result['policy_envs'] == 2 and result['policy_ms'] > 0


def test_profile_train_reports_the_chosen_stages_with_their_costliest_ops(shared, tmp_path, capsys):
    # Every stage's inputs are computed, but only these are compiled and timed on their own.
    chosen = ['heads', 'imagine']
    flags = ['--repeats', '1', '--ops', '3', '--stages', ','.join(chosen)]
    script('profile_train').main([*DEBUG, *flags, '--json', str(tmp_path / 'profile.json')])
    out = capsys.readouterr().out
    stages = json.loads((tmp_path / 'profile.json').read_text())['stages']
    assert [s['name'] for s in stages] == chosen
    # Every timed stage lists its three costliest XLA ops, most expensive first.
    for stage in stages:
        ms = [op['ms'] for op in stage['ops']]
        assert len(ms) == 3 and ms == sorted(ms, reverse=True) and ms[0] > 0, stage
        assert all(op['shape'] and op['calls'] > 0 for op in stage['ops']), stage
        # Loops span the ops of their bodies, which are listed themselves.
        assert not any(op['op'].startswith('while') for op in stage['ops']), stage
        assert stage['seconds'] > 0
    assert out.count('costliest XLA ops of') == len(stages)
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
