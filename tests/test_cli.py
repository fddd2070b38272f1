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
        (['--task', 'atari_pongg'], "Unknown task 'atari_pongg'. Did you mean atari_pong?"),
        (['--task', 'gym_CartPol-v1'], "Unknown task 'gym_CartPol-v1'. Did you mean gym_CartPole"),
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


@pytest.mark.parametrize('where', ['file', 'under_file'])
def test_a_logdir_that_is_a_file_exits_2_and_leaves_it(tmp_path, capsys, where):
    (tmp_path / 'file').write_text('notes')
    logdir = tmp_path / 'file' if where == 'file' else tmp_path / 'file' / 'run'
    assert helpers.main_status(logdir, '--random_agent', 'True') == 2
    out, err = capsys.readouterr()
    assert f'Cannot use the logdir {logdir}' in err and '--logdir' in err
    assert 'Traceback' not in out + err
    assert (tmp_path / 'file').read_text() == 'notes'


def test_an_unreadable_config_yaml_is_set_aside(tmp_path, capsys):
    from dreamerv3 import main

    config = helpers.config(logdir=str(tmp_path))
    (tmp_path / 'config.yaml').write_bytes(b'run:\n  steps: \xff\xfe\n')
    assert main.write_config(config) is None
    out = capsys.readouterr().out
    aside = list(tmp_path.glob('config.yaml.unreadable-*'))
    assert len(aside) == 1 and aside[0].read_bytes() == b'run:\n  steps: \xff\xfe\n'
    assert f'moved it to {aside[0]}' in out
    assert 'steps:' in (tmp_path / 'config.yaml').read_text()


def test_a_start_that_fails_leaves_no_logdir_behind(tmp_path, capsys):
    # The checkpoint to start from is looked for once the logdir is locked and configured.
    logdir = tmp_path / 'run'
    flags = ('--random_agent', 'True', '--run.from_checkpoint', str(tmp_path / 'missing'))
    assert helpers.main_status(logdir, *flags) == 2
    assert 'No complete checkpoint found' in capsys.readouterr().err
    assert not logdir.exists()
    # A logdir that existed before keeps what it held.
    logdir.mkdir()
    (logdir / 'notes.txt').write_text('mine')
    assert helpers.main_status(logdir, *flags) == 2
    assert sorted(p.name for p in logdir.iterdir()) == ['notes.txt']
    # A logdir of an earlier run keeps its config.yaml as it was.
    (logdir / 'config.yaml').write_text('earlier')
    assert helpers.main_status(logdir, *flags) == 2
    assert (logdir / 'config.yaml').read_text() == 'earlier'
