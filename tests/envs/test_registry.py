"""Suite registry: name lookup, lazy imports and the missing-package error."""

import subprocess
import sys
import textwrap

import pytest

from embodied.envs import registry


def test_one_record_per_suite_names_its_constructor_packages_and_extra():
    expected = {
        'dummy',
        'custom',
        'gym',
        'dm',
        'crafter',
        'dmc',
        'atari',
        'atari100k',
        'dmlab',
        'minecraft',
        'loconav',
        'pinpad',
        'procgen',
        'bsuite',
        'memmaze',
        'gymnax',
        'craftax',
        'xminigrid',
    }
    assert set(registry.SUITES) == expected
    assert registry.suites() == sorted(expected)
    for name, suite in registry.SUITES.items():
        module, sep, ctor = suite.ctor.partition(':')
        assert module.startswith('embodied.envs.') and sep and ctor, name
        # A suite that needs packages says how to get them.
        assert not suite.needs or suite.extra or suite.install, name
    native = {name for name, suite in registry.SUITES.items() if suite.jax}
    assert native == {'gymnax', 'craftax', 'xminigrid'}


def test_only_jax_native_tasks_train_on_the_device():
    from embodied.core.base import SetupError

    registry.check_jax_task('craftax_Craftax-Classic-Pixels-v1')
    with pytest.raises(SetupError, match='not a JAX-native environment.*gymnax, craftax'):
        registry.check_jax_task('gym_CartPole-v1')


def test_load_returns_constructors():
    from embodied.envs import atari, dummy, from_dm, pinpad

    assert registry.load('dummy') is dummy.Dummy
    assert registry.load('pinpad') is pinpad.PinPad
    assert registry.load('atari') is atari.Atari
    assert registry.load('atari100k') is atari.Atari
    # The reference pointed `dm` at a module that does not exist.
    assert registry.load('dm') is from_dm.FromDM


def test_unknown_suite_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        registry.load('nosuchsuite')
    message = str(info.value)
    assert "'nosuchsuite'" in message
    for suite in ('atari', 'crafter', 'dmc', 'pinpad', 'gym', 'dm'):
        assert suite in message


def test_langroom_is_reported_as_unsupported():
    with pytest.raises(ValueError, match='langroom.*not supported'):
        registry.load('langroom')


@pytest.mark.parametrize(
    'suite, module, extra',
    [
        ('atari', 'ale_py', 'atari'),
        ('atari100k', 'ale_py', 'atari'),
        ('crafter', 'crafter', 'crafter'),
        ('dmc', 'dm_control', 'dmc'),
        ('gym', 'gymnasium', 'gym'),
        ('dm', 'dm_env', 'dm'),
        ('bsuite', 'bsuite', 'bsuite'),
        ('procgen', 'procgen', 'procgen'),
        ('memmaze', 'memory_maze', 'memmaze'),
        ('loconav', 'labmaze', 'dmc'),
    ],
)
def test_missing_package_names_suite_module_and_extra(monkeypatch, suite, module, extra):
    # A None entry in sys.modules makes `import module` fail like an absent package.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(registry.MissingSuiteError) as info:
        registry.load(suite)
    error = info.value
    assert isinstance(error, ImportError)
    assert error.suite == suite and error.module == module
    message = str(error)
    assert f"suite '{suite}'" in message
    assert f"'{module}'" in message
    assert f"pip install 'dreamerv3[{extra}]'" in message


@pytest.mark.parametrize(
    'suite, module, words',
    [
        ('dmlab', 'deepmind_lab', ['not on the Python package index', 'from source']),
        ('minecraft', 'minerl', ['minerl==0.4.4', 'JDK 8']),
    ],
)
def test_missing_system_package_explains_the_install(monkeypatch, suite, module, words):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(registry.MissingSuiteError) as info:
        registry.load(suite)
    message = str(info.value)
    assert f"suite '{suite}'" in message and f"'{module}'" in message
    assert 'dreamerv3[' not in message
    for word in words:
        assert word in message


def test_adapter_raises_the_same_error_when_used_directly(monkeypatch):
    from embodied.envs import atari

    monkeypatch.setitem(sys.modules, 'ale_py', None)
    with pytest.raises(registry.MissingSuiteError, match=r'dreamerv3\[atari\]'):
        atari.Atari('pong')


def test_adapter_modules_import_no_heavy_packages():
    # Importing the registry and every adapter must not pull in any suite package or JAX.
    code = textwrap.dedent("""
        import importlib, sys
        from embodied.envs import registry
        for suite in registry.SUITES.values():
            importlib.import_module(suite.ctor.split(':')[0])
        heavy = ['ale_py', 'crafter', 'dm_control', 'mujoco', 'gymnasium', 'gym', 'dm_env',
                 'bsuite', 'procgen', 'deepmind_lab', 'minerl', 'memory_maze', 'labmaze',
                 'jax', 'cv2']
        print(sorted(name for name in heavy if name in sys.modules))
    """)
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


def test_dummy_through_the_registry(rollout):
    import embodied

    env = embodied.wrap_env(registry.load('dummy')('anything'))
    trajectory = rollout(env, 250)
    lasts = [i for i, obs in enumerate(trajectory) if obs['is_last']]
    assert lasts == [100, 201]
    assert all(trajectory[i]['is_terminal'] for i in lasts)


def test_missing_suite_error_survives_pickling(monkeypatch):
    import pickle

    monkeypatch.setitem(sys.modules, 'crafter', None)
    with pytest.raises(registry.MissingSuiteError) as info:
        registry.load('crafter')
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is registry.MissingSuiteError
    assert str(copy) == str(info.value) and copy.suite == 'crafter'
