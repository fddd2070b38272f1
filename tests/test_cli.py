"""The command line rejects bad input with exit status 2, a clear message and no traceback.

Each kind of error runs once as a real command; the other cases call `main` in this process,
which ends the same way (SystemExit with status 2) before anything is built.
"""

import subprocess
import sys

import helpers
import pytest


def run(*argv):
    return subprocess.run(
        [sys.executable, '-m', 'dreamerv3.main', *argv], capture_output=True, text=True, timeout=120
    )


def check_clean_exit(result, message):
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert 'Traceback' not in result.stderr + result.stdout


def test_bad_flag_and_bad_task_on_the_command_line(tmp_path):
    check_clean_exit(run('--run.steps', 'abc'), "Invalid value 'abc' for --run.steps")
    logdir = tmp_path / 'run'
    result = run('--configs', 'debug', '--task', 'foo_bar', '--logdir', str(logdir))
    check_clean_exit(result, "Unknown environment suite 'foo'")
    assert not logdir.exists()


@pytest.mark.parametrize(
    'flags, message',
    [
        (['--configs', 'debgu'], "Unknown preset 'debgu'. Did you mean debug? Valid presets:"),
        (
            ['--run.stepz', '3'],
            'Unknown flag --run.stepz: no config key matches it. Closest valid keys: --run.steps',
        ),
        (['--run.steps', 'abc'], "Invalid value 'abc' for --run.steps: expected float"),
        (['--run.steps'], 'Flag --run.steps is missing its value'),
        (['--task', 'dmlab_goals'], "suite 'dmlab' needs the Python module 'deepmind_lab'"),
        (['--task', 'foo_bar'], "Unknown environment suite 'foo'"),
        (['--task', 'pong'], "Task 'pong' must look like <suite>_<name>"),
        (['--task', 'dummy_other'], "Unknown task 'dummy_other'. The dummy suite has:"),
        (
            ['--script', 'trian'],
            "Unknown script 'trian'. Did you mean train? Valid scripts: train, train_device,",
        ),
        (['--logger.terminal', 'bar'], "Unknown logger.terminal 'bar'; choose progress or metrics"),
        (['--script', 'train_offline'], 'train_offline script needs a replay folder'),
        (['--script', 'train_device', '--task', 'dummy_disc'], 'not a JAX-native environment'),
        (
            ['--script', 'train_device', '--task', 'gymnax_CartPole-v1', '--run.seeds', '0'],
            'train_device needs run.seeds, run.envs and run.device_chunk of at least 1',
        ),
        (['--script', 'train_offline', '--run.from_replay', '/nonexistent'], 'No replay chunks'),
    ],
)
def test_bad_input_exits_2_before_creating_the_logdir(tmp_path, capsys, flags, message):
    logdir = tmp_path / 'run'
    assert helpers.main_status(logdir, *flags) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert 'Traceback' not in out + err
    assert not logdir.exists()


def test_help_prints_usage_presets_and_the_scripts(capsys):
    from dreamerv3 import main

    main.main(['--help'])
    out = capsys.readouterr().out
    assert 'usage: python -m dreamerv3.main' in out
    assert 'presets: size1m' in out
    # The script table: every script with its one-line summary.
    assert 'scripts (--script):' in out
    for name, script in main.SCRIPTS.items():
        assert f'\n  {name} ' in out and script.summary in out
