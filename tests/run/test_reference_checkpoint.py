"""Checkpoints in the layout and names of the reference implementation (danijar/dreamerv3) load
through `--run.from_checkpoint` and `load_policy`.

The reference checkpoint is written here as the reference writes it: `elements.Checkpoint` (the
folder layout, an empty `done`) holding this debug agent's state under the reference's names.
Its empty `done` carries no checksums: a checkpoint named by the user loads without them.
"""

import re
import types

import elements
import helpers
import numpy as np
import pytest

import dreamerv3
from dreamerv3 import main
from embodied.run import checkpoints, loop, reference_checkpoint

COUNTERS = {'updates': 7, 'batches': 9, 'actions': 11}
# Keys of this project's config that the reference's config.yaml does not have.
NEWER_KEYS = ('jax.precompile', 'jax.policy_mesh', 'jax.train_mesh', 'run.keep_checkpoints')


def reference_name(name):
    """The name the reference gives an entry of this project's debug agent."""
    # The reference's optimizer keeps each transform's state as a (count, moment) tuple.
    name = re.sub(r'^(.*/state/\d+)/count$', r'\1/0', name)
    name = re.sub(r'^(.*/state/\d+)/(nu|mu)/', r'\1/1/', name)
    # Its binary continuation head names its layer `logit`, its mean heads `pred`.
    name = re.sub(r'(^|/)con/head/logits/', r'\1con/head/logit/', name)
    return re.sub(r'(^|/)dec/vec/([^/]+)/mean/', r'\1dec/vec/\2/pred/', name)


class Saved:
    """A saveable holding fixed data, as `elements.Checkpoint` expects one."""

    def __init__(self, data):
        self.data = data

    def save(self):
        return self.data

    def load(self, data):
        self.data = data


@pytest.fixture
def expected(shared_agent):
    """State that differs from the debug agent's initial one, under this project's names."""
    _, initial = shared_agent
    return {k: (np.asarray(v) + 1).astype(v.dtype) for k, v in initial['params'].items()}


def write_reference(directory, params):
    """Save `params` as the reference's train script does; the checkpoint folder."""
    checkpoint = elements.Checkpoint(directory)
    checkpoint.step = Saved(COUNTERS['actions'])
    checkpoint.agent = Saved({'params': params, 'counters': COUNTERS})
    checkpoint.save()
    folder = elements.Path(directory) / (elements.Path(directory) / 'latest').read_text()
    assert (folder / 'done').read_bytes() == b''
    assert sorted(p.name for p in folder.glob('*')) == ['agent.pkl', 'done', 'step.pkl']
    return folder


def reference_state(expected):
    """`expected` under the reference's names, checked to be a renaming of every kind."""
    state = {reference_name(k): v for k, v in expected.items()}
    assert len(state) == len(expected)
    renamed = set(state) - set(expected)
    for pattern in ('/state/1/0', '/state/1/1/', '/state/2/1/', 'con/head/logit/', '/pred/'):
        assert any(pattern in name for name in renamed), pattern
    return state


def assert_loaded(agent, expected):
    saved = agent.save()
    assert saved['params'].keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(saved['params'][key], value, err_msg=key)
    assert saved['counters']['updates'] == COUNTERS['updates']


def test_from_checkpoint_loads_a_reference_checkpoint(tmp_path, debug_agent, expected):
    write_reference(tmp_path / 'reference' / 'ckpt', reference_state(expected))
    config = helpers.config(
        '--run.from_checkpoint', str(tmp_path / 'reference'), logdir=tmp_path / 'run'
    )
    run = types.SimpleNamespace(config=config, agent=debug_agent, step=elements.Counter())
    loop.restore(run)
    assert_loaded(debug_agent, expected)


def test_from_checkpoint_regex_uses_this_projects_names(tmp_path, debug_agent, expected):
    initial = debug_agent.save()['params']
    folder = write_reference(tmp_path / 'ckpt', reference_state(expected))
    checkpoints.load_agent(debug_agent, folder, r'^(dec/vec/vector/mean|con/head/logits)/')
    params = debug_agent.save()['params']
    loaded = {k for k in params if not np.array_equal(params[k], initial[k])}
    assert loaded == {
        'dec/vec/vector/mean/kernel',
        'dec/vec/vector/mean/bias',
        'con/head/logits/kernel',
        'con/head/logits/bias',
    }


def test_load_policy_loads_a_reference_logdir(tmp_path, make_debug_agent, monkeypatch, expected):
    monkeypatch.setattr(main, 'make_agent', make_debug_agent)
    logdir = tmp_path / 'reference'
    # The reference's config.yaml: the same model, without the keys it does not know.
    flat = helpers.config(logdir=logdir).flat
    logdir.mkdir()
    elements.Config({k: v for k, v in flat.items() if k not in NEWER_KEYS}).save(
        logdir / 'config.yaml'
    )
    write_reference(logdir / 'ckpt', reference_state(expected))
    policy = dreamerv3.load_policy(logdir)
    assert_loaded(policy.agent, expected)
    # The keys the reference lacks take the defaults.
    assert set(NEWER_KEYS) <= set(policy.config.flat)
    assert policy.config.run.keep_checkpoints == helpers.config().run.keep_checkpoints


def test_an_entry_that_fits_nowhere_is_named(
    tmp_path, make_debug_agent, monkeypatch, expected, capsys
):
    monkeypatch.setattr(main, 'make_agent', make_debug_agent)
    state = reference_state(expected)
    state['enc/extra/pred/kernel'] = np.zeros((2, 2), np.float32)
    folder = write_reference(tmp_path / 'ckpt', state)
    flags = ('--script', 'eval_only', '--run.from_checkpoint', str(folder))
    capsys.readouterr()
    assert helpers.main_status(tmp_path / 'eval', *flags) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith('dreamerv3: error: ')
    assert "'enc/extra/pred/kernel'" in error[0] and 'reference' in error[0]


def test_adapt_leaves_this_projects_state_alone(expected):
    data = {'params': expected, 'counters': COUNTERS}
    assert reference_checkpoint.adapt(data, expected) is data
