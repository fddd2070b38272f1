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
            '--json',
            str(tmp_path / 'profile.json'),
        ]
    )
    stages = json.loads((tmp_path / 'profile.json').read_text())['stages']
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
