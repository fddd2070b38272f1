"""Checking that the checkpoints a run loads fit the model, before the agent compiles."""

import re

import elements
import jax
import numpy as np
import pytest

from embodied.run import checkpoint_fit, checkpoints

MODEL = {
    'dyn/w': jax.ShapeDtypeStruct((4, 3), np.float32),
    'dyn/b': jax.ShapeDtypeStruct((4,), np.float32),
    'enc/w': jax.ShapeDtypeStruct((2, 2), np.float32),
    'opt/state/nu/dyn/w': jax.ShapeDtypeStruct((4, 3), np.float32),
}


def saved(**changes):
    """Checkpoint parameters of the MODEL's shapes, with `changes` (name=None drops it)."""
    params = {k: np.zeros(v.shape, v.dtype) for k, v in MODEL.items()}
    for name, value in changes.items():
        name = name.replace('__', '/')
        if value is None:
            params.pop(name)
        else:
            params[name] = value
    return params


def write(directory, stamp, params):
    """A complete checkpoint folder holding agent parameters, as the run loop saves one."""
    folder = elements.Path(directory) / stamp
    agent = {'params': params, 'counters': {'updates': 1, 'batches': 1, 'actions': 1}}
    checkpoints.write(folder, {'agent': lambda: agent, 'step': lambda: 5})
    return folder


def read(data, regex):
    """What the agent reads from checkpoint data: its parameters, those of `regex` only."""
    params = {k: v for k, v in data['params'].items() if not regex or re.match(regex, k)}
    if not params:
        raise ValueError(f'No checkpoint parameter matches the regex {regex!r}.')
    return params


def config(logdir, script='train', from_checkpoint='', regex=''):
    run = {'from_checkpoint': str(from_checkpoint), 'from_checkpoint_regex': regex}
    return elements.Config(script=script, logdir=str(logdir), run=run)


def test_compare_lists_shape_dtype_missing_and_unexpected_parameters():
    params = saved(
        dyn__w=np.zeros((2, 3), np.float32),
        dyn__b=np.zeros(4, np.float16),
        enc__w=None,
        extra__w=np.zeros(1, np.float32),
    )
    mismatch = checkpoint_fit.compare(params, MODEL)
    assert mismatch.missing == ['enc/w']
    assert mismatch.unexpected == ['extra/w']
    assert mismatch.differing[:2] == [
        ('dyn/b', 'float16[4]', 'float32[4]'),
        ('dyn/w', 'float32[2, 3]', 'float32[4, 3]'),
    ]
    assert checkpoint_fit.compare(saved(), MODEL).differing == []
    assert not checkpoint_fit.compare(saved(), MODEL)
    # A load of some parameters (a regex) needs none of the others.
    assert not checkpoint_fit.compare({'enc/w': np.zeros((2, 2), np.float32)}, MODEL, True)


def test_listing_shows_model_parameters_before_their_optimizer_state_and_no_empty_kinds():
    mismatch = checkpoint_fit.compare(
        saved(opt__state__nu__dyn__w=np.zeros((1, 3), np.float32), dyn__w=np.zeros((1, 3))),
        MODEL,
    )
    assert [name for name, _, _ in mismatch.differing] == ['dyn/w', 'opt/state/nu/dyn/w']
    listing = mismatch.listing()
    assert listing.splitlines()[0] == 'Of another shape or dtype (2):'
    assert '  dyn/w: saved float64[1, 3], model float32[4, 3]' in listing
    assert 'Missing' not in listing and 'Unexpected' not in listing and '(0)' not in listing
    assert mismatch.summary() == '2 parameters of another shape or dtype'


def test_listing_shows_ten_of_each_kind_and_counts_the_rest():
    model = {f'p{i:02}': jax.ShapeDtypeStruct((1,), np.float32) for i in range(25)}
    params = {name: np.zeros(2, np.float32) for name in model}
    lines = checkpoint_fit.compare(params, model).listing().splitlines()
    assert lines[0] == 'Of another shape or dtype (25):'
    assert lines[1:] == [f'  p{i:02}: saved float32[2], model float32[1]' for i in range(10)] + [
        '  ... and 15 more'
    ]


def test_resume_with_other_shapes_raises_naming_the_checkpoint_and_then_the_changed_keys(
    tmp_path,
):
    write(tmp_path / 'ckpt', '20260101T000000F000001', saved())
    newest = write(tmp_path / 'ckpt', '20260102T000000F000001', saved(dyn__w=np.zeros((8, 3))))
    with pytest.raises(checkpoint_fit.DoesNotFit) as info:
        checkpoint_fit.check_resume(config(tmp_path), MODEL, read)
    error = info.value
    assert isinstance(error, checkpoints.CheckpointError)
    message = str(error)
    assert f"The checkpoint '{newest}' does not fit this model" in message
    assert 'dyn/w: saved float64[8, 3], model float32[4, 3]' in message
    assert 'another model config' in message
    named = str(error.naming([('agent.dyn.rssm.deter', 8, 16)]))
    assert 'agent.dyn.rssm.deter (8 -> 16)' in named
    assert 'dyn/w: saved float64[8, 3], model float32[4, 3]' in named


def test_resume_that_fits_or_has_no_checkpoint_passes(tmp_path):
    checkpoint_fit.check_resume(config(tmp_path), MODEL, read)
    write(tmp_path / 'ckpt', '20260101T000000F000001', saved())
    checkpoint_fit.check_resume(config(tmp_path), MODEL, read)
    # Agents built outside a script (no `script` key) load nothing on their own.
    checkpoint_fit.check_resume(elements.Config(logdir=str(tmp_path)), {}, read)


def test_a_damaged_newest_checkpoint_is_skipped_as_loading_skips_it(tmp_path):
    write(tmp_path / 'ckpt', '20260101T000000F000001', saved())
    newest = write(tmp_path / 'ckpt', '20260102T000000F000001', saved(dyn__w=np.zeros(1)))
    (newest / 'agent.pkl').write_bytes(b'damaged')
    checkpoint_fit.check_resume(config(tmp_path), MODEL, read)


def test_each_script_checks_the_checkpoints_it_loads(tmp_path):
    other = tmp_path / 'other'
    folder = write(other / 'ckpt', '20260101T000000F000001', saved(enc__w=np.zeros(3)))
    write(tmp_path / 'ckpt' / 'agent', '20260101T000000F000001', saved(dyn__b=np.zeros(9)))
    # The parallel agent role resumes from ckpt/agent.
    with pytest.raises(checkpoint_fit.DoesNotFit, match='dyn/b: saved'):
        checkpoint_fit.check_resume(config(tmp_path, 'parallel'), MODEL, read)
    # eval_only loads only run.from_checkpoint; a regex limits the check to what it loads.
    with pytest.raises(checkpoint_fit.DoesNotFit, match='enc/w: saved') as info:
        checkpoint_fit.check_resume(config(tmp_path, 'eval_only', other), MODEL, read)
    assert f"'{folder}'" in str(info.value) and '--run.from_checkpoint_regex' in str(info.value)
    # The logdir's config changes say nothing about another run's checkpoint.
    assert str(info.value.naming([('agent.x', 1, 2)])) == str(info.value)
    checkpoint_fit.check_resume(config(tmp_path, 'eval_only', other, '^dyn/'), MODEL, read)
    with pytest.raises(checkpoints.CheckpointError, match='No checkpoint parameter matches'):
        checkpoint_fit.check_resume(config(tmp_path, 'eval_only', other, '^no/'), MODEL, read)
    # A missing run.from_checkpoint is left to its load, which names it.
    checkpoint_fit.check_resume(config(tmp_path, 'eval_only', tmp_path / 'gone'), MODEL, read)
    # train_device keeps checkpoints of its own kind and checks them itself.
    checkpoint_fit.check_resume(config(tmp_path, 'train_device'), MODEL, read)


def test_command_line_names_the_keys_that_changed_since_the_logdirs_config(tmp_path):
    from dreamerv3 import main

    previous = elements.Config(agent={'deter': 8, 'units': 4}, run={'steps': 10})
    path = tmp_path / 'config.yaml'
    previous.save(path)
    new = previous.update({'agent.deter': 16})
    assert main.config_changes(path.read_text(), new) == [('agent.deter', 8, 16)]
    assert main.config_changes('{unreadable: [', new) == []
