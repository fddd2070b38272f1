"""The script table: every entry resolves to a function, main calls it the one way."""

import inspect

import pytest
from runhelpers import load_config

from dreamerv3 import config as configlib
from embodied.run import parallel, scripts


@pytest.mark.parametrize('name', sorted(scripts.TABLE))
def test_every_script_takes_factories_args_and_its_extras(name, tmp_path):
    script = scripts.get(name)
    params = set(inspect.signature(scripts.function(script)).parameters)
    assert 'args' in params
    _, _, args = load_config(tmp_path)
    extras = set(script.extra(args)) if script.extra else set()
    assert params - {'args'} <= set(scripts.FACTORIES) | extras, params


def test_help_and_validation_read_the_table():
    _, text = configlib.parse(['--help'])
    for name, script in scripts.TABLE.items():
        assert f'  {name}' in text and script.summary in text
    with pytest.raises(configlib.ConfigError, match="Unknown script 'trian'.*train_offline"):
        configlib.parse(['--script', 'trian', '--logdir', '/tmp/x'])


def test_call_passes_the_named_factories_and_the_extras(tmp_path, monkeypatch):
    seen = {}

    def fake(make_env, env_id, args, is_eval=False):
        seen.update(make_env=make_env, env_id=env_id, is_eval=is_eval)

    monkeypatch.setattr(parallel, 'parallel_env', fake)
    _, fns, args = load_config(tmp_path, '--run.envs', '2', '--replica', '3')
    scripts.call(scripts.get('parallel_env'), fns, args)
    assert seen == {'make_env': fns['make_env'], 'env_id': 3, 'is_eval': True}
