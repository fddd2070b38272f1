"""The config file holds every reference key and preset; flags parse as documented."""

import json
import pathlib

import elements
import pytest

from dreamerv3 import config as configlib

# The reference's config figures, kept in the repository so the parity tests always run.
REFERENCE = pathlib.Path(__file__).resolve().parent / 'data' / 'config_reference.json'
ADDED_KEYS = {
    # Keys the reference read but could not set, with values that keep reference behaviour.
    'run.from_checkpoint_regex': '',
    'jax.process_id': -1,
    'jax.num_processes': 1,
    'jax.tpuflags': False,
    'jax.gpuflags': True,
    'jax.policy_mesh': '-1,1,1',
    'jax.train_mesh': '-1,1,1',
    'jax.profiler': False,
    'run.keep_checkpoints': 2,
    'jax.use_shardmap': False,
    'jax.ckpt_chunksize': -1,
    'jax.precompile': True,
    'jax.compile_times': '~/.cache/dreamerv3/compile_times.json',
    'jax.hugepages': True,
    'env.atari.length': 108000,
    'env.dmc.log_image': False,
    'env.loconav.log_image': False,
    'env.gym.obs_key': 'image',
    'logger.terminal': 'progress',
    'run.from_replay': '',
    'run.offline_updates': 100000,
}


def plain(value):
    return tuple(value) if isinstance(value, list) else value


@pytest.fixture(scope='module')
def reference():
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope='module')
def presets():
    return configlib.load_presets()


def test_defaults_hold_every_reference_key(reference, presets):
    ours = elements.Config(presets['defaults']).flat
    for key, value in reference['defaults'].items():
        assert key in ours, f'missing config key {key}'
        assert ours[key] == plain(value), key
        assert type(ours[key]) is type(plain(value)), key


def test_every_reference_preset_matches(reference, presets):
    base = elements.Config(presets['defaults'])
    for name, preset in reference['presets'].items():
        assert name in presets, f'missing preset {name}'
        expected = base.update({k: plain(v) for k, v in preset.items()}).flat
        assert base.update(presets[name]).flat == expected, name


def test_added_keys_keep_reference_behaviour(presets):
    flat = elements.Config(presets['defaults']).flat
    for key, value in ADDED_KEYS.items():
        assert flat[key] == value, key


def test_presets_apply_in_order_and_flags_win():
    config, _ = configlib.parse(
        ['--configs', 'size12m', 'debug', '--batch_size', '3', '--logdir', '/tmp/x']
    )
    assert config.agent.dyn.rssm.deter == 8  # debug came after size12m
    assert config.batch_size == 3
    config, _ = configlib.parse(['--configs=debug,size12m', '--logdir', '/tmp/x'])
    assert config.agent.dyn.rssm.deter == 2048
    assert config.agent.enc.simple.depth == 16


def test_nested_and_regex_flags():
    config, _ = configlib.parse(
        [
            '--run.steps',
            '1e5',
            '--agent.opt.lr',
            '1e-4',
            r'--.*\.units',
            '32',
            '--jax.policy_devices',
            '0',
            '1',
            '--logdir=/tmp/y',
        ]
    )
    assert config.run.steps == 1e5
    assert config.agent.opt.lr == 1e-4
    assert config.agent.enc.simple.units == 32
    assert config.agent.value.units == 32
    assert config.jax.policy_devices == (0, 1)


def test_logdir_timestamp_home_and_replica(monkeypatch):
    config, _ = configlib.parse(['--logdir', '~/runs/{timestamp}'], environ={})
    assert config.logdir.startswith(str(pathlib.Path.home()))
    assert '{timestamp}' not in config.logdir and len(config.logdir.split('/')[-1]) == 15
    config, _ = configlib.parse(['--logdir', '/tmp/z'], environ={'JOB_COMPLETION_INDEX': '3'})
    assert config.replica == 3


def test_multihost_processes_get_their_id_and_part_of_the_logdir():
    flags = ['--logdir', '/tmp/run', '--jax.num_processes', '3']
    config, _ = configlib.parse(flags, environ={'JOB_COMPLETION_INDEX': '0'})
    assert config.jax.process_id == 0 and config.logdir == '/tmp/run'
    config, _ = configlib.parse(flags, environ={'JOB_COMPLETION_INDEX': '2'})
    assert config.jax.process_id == 2 and config.logdir == '/tmp/run/process2'
    config, _ = configlib.parse(flags + ['--jax.process_id', '1'], environ={})
    assert config.logdir == '/tmp/run/process1'
    # A single-process run keeps its logdir whatever the replica.
    config, _ = configlib.parse(['--logdir', '/tmp/run'], environ={'JOB_COMPLETION_INDEX': '2'})
    assert config.jax.process_id == -1 and config.logdir == '/tmp/run'
    with pytest.raises(configlib.ConfigError, match='jax.process_id is 3, but'):
        configlib.parse(flags, environ={'JOB_COMPLETION_INDEX': '3'})


@pytest.mark.parametrize(
    'argv, message',
    [
        (['--configs', 'debgu'], "Unknown preset 'debgu'. Did you mean debug?"),
        (['--run.stepz', '3'], 'Closest valid keys: --run.steps'),
        (['--run.steps', 'abc'], "Invalid value 'abc' for --run.steps: expected float"),
        (['--run.envs', '1.5'], "Invalid value '1.5' for --run.envs: expected int"),
        (['--jax.jit', 'yes'], 'expected bool'),
        (['--run.steps'], 'Flag --run.steps is missing its value'),
        (['stray'], "Unexpected value 'stray'"),
        (['--run', '3'], '--run names a whole section'),
        (['--script', 'trian'], "Unknown script 'trian'. Did you mean train? Valid scripts: train"),
    ],
)
def test_bad_input_raises_clear_error(argv, message):
    scripts = {'train': 'train', 'eval_only': 'evaluate'}
    with pytest.raises(configlib.ConfigError) as info:
        configlib.parse(argv + ['--logdir', '/tmp/w'] if argv[0] != 'stray' else argv, scripts)
    assert message in str(info.value)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(configlib.ConfigError) as info:
        configlib.parse(['--configs', 'nope'])
    for name in ('size1m', 'atari', 'crafter', 'debug', 'multicpu'):
        assert name in str(info.value)


def test_help_lists_presets_and_keys():
    config, text = configlib.parse(['--configs', 'debug', '--help'])
    assert config is None
    assert 'presets:' in text and 'atari100k' in text and 'dmc_proprio' in text
    assert '--run.train_ratio' in text and '8.0' in text


@pytest.mark.parametrize(
    'preset, task',
    [('craftax', 'craftax_Craftax-Classic-Pixels-v1'), ('gymnax', 'gymnax_CartPole-v1')],
)
def test_jax_native_presets_train_on_the_device(preset, task):
    config, _ = configlib.parse(['--configs', preset, '--logdir', '/tmp/w'])
    assert config.script == 'train_device' and config.task == task
    # The device replay holds the whole run, which the host replay's default would exceed.
    assert config.replay.size <= config.run.steps and config.run.envs == 16
