"""The huge page restart: when it applies, what it sets, and that it happens once."""

import os
import subprocess
import sys

import pytest

from embodied.core import hugepages

HERE = os.environ.copy()
APPLIES = hugepages.applies(HERE)


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
    path = tmp_path / 'enabled'
    path.write_text('always [madvise] never\n')
    assert hugepages.thp_mode(str(path)) == 'madvise'
    path.write_text('[always] madvise never\n')
    assert hugepages.thp_mode(str(path)) == 'always'
    assert hugepages.thp_mode(str(tmp_path / 'missing')) == ''


@pytest.mark.parametrize(
    'env, mode, glibc, expected',
    [
        ({}, 'madvise', (2, 36), True),
        ({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, 'madvise', (2, 35), True),
        ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}, 'madvise', (2, 36), False),
        ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, 'madvise', (2, 36), False),
        ({}, 'always', (2, 36), False),
        ({}, 'never', (2, 36), False),
        ({}, '', (2, 36), False),
        ({}, 'madvise', (2, 34), False),
        ({}, 'madvise', None, False),
    ],
)
def test_restart_only_where_it_changes_something(env, mode, glibc, expected):
    assert hugepages.would_help(env, mode, glibc) is expected


def test_tunable_joins_the_ones_already_set():
    env = hugepages.with_tunable({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2', 'A': '1'})
    assert env == {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1', 'A': '1'}
    assert hugepages.with_tunable({})['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1'


def run_python(code, env=HERE):
    return subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, timeout=60, env=env
    )


def test_relaunch_replaces_the_process_once_with_the_tunable():
    code = (
        'import os; from embodied.core import hugepages; print("pid", os.getpid()); '
        'hugepages.relaunch(); print("tunables", os.environ.get("GLIBC_TUNABLES", ""))'
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    restarts = [line for line in lines if line.startswith('Restarting with GLIBC_TUNABLES')]
    pids = [line for line in lines if line.startswith('pid ')]
    if APPLIES:
        # The same process (exec keeps the pid) ran the code twice, the second time with the
        # tunable, and did not restart again.
        assert len(restarts) == 1 and len(pids) == 2 and pids[0] == pids[1]
        assert lines[-1].startswith('tunables') and 'glibc.malloc.hugetlb=1' in lines[-1]
    else:
        assert restarts == [] and len(pids) == 1
    preset = run_python(code, {**HERE, 'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'})
    assert 'Restarting' not in preset.stdout and preset.stdout.count('pid ') == 1


@pytest.mark.parametrize('enabled', [True, False])
def test_jax_setup_says_how_to_get_huge_pages_when_started_without(enabled):
    code = (
        'from embodied.jax import setup\n'
        f'setup(platform="cpu", compute_dtype="float32", hugepages={enabled})\n'
        f'setup(platform="cpu", compute_dtype="float32", hugepages={enabled})\n'
    )
    env = {k: v for k, v in HERE.items() if k != 'GLIBC_TUNABLES'}
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    notes = result.stderr.count('Note: XLA:CPU trains faster with GLIBC_TUNABLES')
    applies = hugepages.applies(env)
    # Once per process, however often setup() runs.
    assert notes == (1 if enabled and applies else 0)
    preset = run_python(code, {**env, 'GLIBC_TUNABLES': hugepages.TUNABLE})
    assert 'Note:' not in preset.stderr
