"""The command line rejects bad input with exit status 2, a clear message and no traceback."""

import subprocess
import sys

import pytest


def run(*argv):
    return subprocess.run(
        [sys.executable, '-m', 'dreamerv3.main', *argv], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    'argv, message',
    [
        (['--configs', 'debgu'], "Unknown preset 'debgu'. Did you mean debug? Valid presets:"),
        (
            ['--run.stepz', '3'],
            'Unknown flag --run.stepz: no config key matches it. Closest valid keys: --run.steps',
        ),
        (['--run.steps', 'abc'], "Invalid value 'abc' for --run.steps: expected float"),
        (['--run.steps'], 'Flag --run.steps is missing its value'),
    ],
)
def test_bad_input_exits_2_without_traceback(argv, message):
    result = run(*argv)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert 'Traceback' not in result.stderr + result.stdout


@pytest.mark.parametrize(
    'task, message',
    [
        ('dmlab_goals', "Environment suite 'dmlab' needs the Python module 'deepmind_lab'"),
        ('foo_bar', "Unknown environment suite 'foo'"),
        ('pong', "Task 'pong' must look like <suite>_<name>"),
    ],
)
def test_bad_task_exits_2_before_creating_the_logdir(tmp_path, task, message):
    logdir = tmp_path / 'run'
    result = run('--configs', 'debug', '--task', task, '--logdir', str(logdir))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert 'Traceback' not in result.stderr + result.stdout
    assert not logdir.exists()


def test_help_prints_usage_and_presets():
    result = run('--help')
    assert result.returncode == 0, result.stderr
    assert 'usage: python -m dreamerv3.main' in result.stdout
    assert 'presets: size1m' in result.stdout
    # The script table: every script with its one-line summary.
    assert 'scripts (--script):' in result.stdout
    for name in ('train', 'train_eval', 'train_offline', 'eval_only', 'parallel_replay'):
        assert f'\n  {name} ' in result.stdout


@pytest.mark.parametrize(
    'flags, message',
    [
        (['--script', 'trian'], "Unknown script 'trian'. Valid scripts: train, train_eval"),
        (['--logger.terminal', 'bar'], "Unknown logger.terminal 'bar'; choose progress or metrics"),
        (['--script', 'train_offline'], 'train_offline script needs a replay folder'),
        (['--script', 'train_offline', '--run.from_replay', '/nonexistent'], 'No replay chunks'),
    ],
)
def test_bad_script_settings_exit_2_before_creating_the_logdir(tmp_path, flags, message):
    logdir = tmp_path / 'run'
    result = run('--configs', 'debug', '--jax.platform', 'cpu', '--logdir', str(logdir), *flags)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert 'Traceback' not in result.stderr + result.stdout
    assert not logdir.exists()


@pytest.mark.parametrize('flag', ['True', 'False'])
def test_cpu_runs_restart_once_for_huge_pages_unless_turned_off(tmp_path, flag):
    from embodied.core import hugepages

    applies = hugepages.applies()
    flags = ('--configs', 'debug', '--jax.platform', 'cpu', '--task', 'foo_bar')
    result = run(*flags, '--jax.hugepages', flag, '--logdir', str(tmp_path / 'run'))
    # The restarted command goes on as before: here to the bad-task error.
    assert result.returncode == 2 and "Unknown environment suite 'foo'" in result.stderr
    restarts = result.stdout.count('Restarting with GLIBC_TUNABLES=glibc.malloc.hugetlb=1')
    assert restarts == (1 if applies and flag == 'True' else 0)
    assert result.stdout.count('|___/|_|') == 1
