"""JAX's persistent compilation cache: its folder, what it stores, and configs of earlier versions
whose `jax.compilation_cache` was a bool."""

import importlib
import logging
import os

import helpers
import jax
import jax.numpy as jnp
import pytest
import ruamel.yaml
from jax.experimental.compilation_cache import compilation_cache

# The module, which `embodied.jax.setup` (its function) hides.
setup = importlib.import_module('embodied.jax.setup')
HOME = os.path.expanduser('~')


@pytest.fixture
def jax_cache():
    """Restore the process-wide cache settings the test changes (the suite shares one cache)."""
    names = (
        'jax_enable_compilation_cache',
        'jax_compilation_cache_dir',
        'jax_persistent_cache_min_compile_time_secs',
    )
    previous = {name: helpers.read_flag(name) for name in names}
    yield
    for name, value in previous.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def test_folder_of_each_value():
    default = os.path.join(HOME, '.cache', 'dreamerv3', 'jax')
    assert setup.cache_dir('~/.cache/dreamerv3/jax', {}) == default
    assert setup.cache_dir(True, {}) == default  # configs of earlier versions
    assert setup.cache_dir(False, {}) == ''
    assert setup.cache_dir('', {}) == ''
    assert setup.cache_dir('/data/cache', {}) == '/data/cache'
    xdg = {'XDG_CACHE_HOME': '/xdg'}
    assert setup.cache_dir('~/.cache/dreamerv3/jax', xdg) == '/xdg/dreamerv3/jax'
    assert setup.cache_dir(True, xdg) == '/xdg/dreamerv3/jax'
    # The XDG spec ignores a relative XDG_CACHE_HOME; other folders do not move.
    assert setup.cache_dir('~/.cache/x', {'XDG_CACHE_HOME': 'rel'}) == f'{HOME}/.cache/x'
    assert setup.cache_dir('~/other', xdg) == f'{HOME}/other'
    # The environment variable names the folder, but '' still turns the cache off.
    env = {'JAX_COMPILATION_CACHE_DIR': '/env/cache', **xdg}
    assert setup.cache_dir('/data/cache', env) == '/env/cache'
    assert setup.cache_dir(True, env) == '/env/cache'
    assert setup.cache_dir('', env) == ''


def test_default_folder_is_the_config_default():
    yaml = ruamel.yaml.YAML(typ='safe')
    defaults = yaml.load((helpers.ROOT / 'configs' / 'dreamerv3.yaml').read_text())['defaults']
    assert defaults['jax']['compilation_cache'] == setup.DEFAULT_CACHE_DIR


def test_a_program_compiled_once_is_read_back(tmp_path, jax_cache, monkeypatch, caplog):
    monkeypatch.delenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', raising=False)
    folder = str(tmp_path / 'cache')
    setup.configure_cache(folder)
    assert jax.config.jax_enable_compilation_cache
    assert jax.config.jax_compilation_cache_dir == folder
    assert jax.config.jax_persistent_cache_min_compile_time_secs == setup.CACHE_MIN_COMPILE_SECS
    # Every program counts here, whatever its compile time on this machine.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    fn = jax.jit(lambda x: jnp.cumsum(x * 3.0) - 1.0)
    fn(jnp.arange(7.0)).block_until_ready()
    entries = set(os.listdir(folder))
    assert any('cache' in name for name in entries), entries
    jax.clear_caches()  # forget the in-memory executable, as a new process would
    caplog.set_level(logging.DEBUG, logger='jax._src.compiler')
    fn = jax.jit(lambda x: jnp.cumsum(x * 3.0) - 1.0)
    fn(jnp.arange(7.0)).block_until_ready()
    assert 'Persistent compilation cache hit' in caplog.text
    assert set(os.listdir(folder)) == entries


def test_threshold_of_the_environment_wins(tmp_path, jax_cache, monkeypatch):
    monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '5')
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 5.0)
    setup.configure_cache(str(tmp_path / 'cache'))
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 5.0


def test_empty_folder_turns_the_cache_off(jax_cache):
    setup.configure_cache('')
    assert not jax.config.jax_enable_compilation_cache


def test_unwritable_folder_compiles_without_cache(tmp_path, jax_cache, capsys):
    (tmp_path / 'file').write_text('')
    setup.configure_cache(str(tmp_path / 'file' / 'cache'))
    out = capsys.readouterr().out
    assert 'without the persistent compilation cache: cannot create' in out
    assert '--jax.compilation_cache' in out and len(out.strip().splitlines()) == 1
    assert not jax.config.jax_enable_compilation_cache


def test_flags_of_earlier_versions_still_parse():
    assert helpers.config().jax.compilation_cache == setup.DEFAULT_CACHE_DIR
    assert helpers.config('--jax.compilation_cache', 'False').jax.compilation_cache == ''
    flag = helpers.config('--jax.compilation_cache', 'True').jax.compilation_cache
    assert flag == setup.DEFAULT_CACHE_DIR
    assert helpers.config('--jax.compilation_cache', '/c').jax.compilation_cache == '/c'


@pytest.mark.parametrize('old', ['true', 'false'])
def test_logdir_of_an_earlier_version_resumes(tmp_path, fake_agent, old):
    from dreamerv3 import policy
    from embodied.run import train

    logdir = tmp_path / 'run'
    config = helpers.config('--run.steps', '20', logdir=logdir)
    helpers.run_script(train.train, config, fake_agent)
    path = logdir / 'config.yaml'
    text = path.read_text()
    line = f'  compilation_cache: {setup.DEFAULT_CACHE_DIR}\n'
    assert line in text
    path.write_text(text.replace(line, f'  compilation_cache: {old}\n'))

    # The saved config loads; its bool still means the default folder or no cache.
    saved = policy.saved_config(logdir)
    assert saved.jax.compilation_cache is (old == 'true')
    expected = setup.cache_dir(setup.DEFAULT_CACHE_DIR, {}) if old == 'true' else ''
    assert setup.cache_dir(saved.jax.compilation_cache, {}) == expected

    # The run resumes; True is today's default, so only False shows up as a change.
    config = helpers.config('--run.steps', '40', logdir=logdir)
    out = helpers.run_script(train.train, config, fake_agent)
    assert 'Loaded checkpoint.' in out and 'Training from step 24 to 40' in out, out
    assert ('jax.compilation_cache' in out) is (old == 'false'), out
    assert 'compilation_cache: ~/.cache/dreamerv3/jax' in path.read_text()
