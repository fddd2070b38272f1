"""Optimizer-state entries of checkpoints written before the chain used optax's named states."""

import jax.numpy as jnp
import ninjax as nj
import numpy as np

from embodied.jax import opt

PARAMS = {'enc/conv0/kernel': jnp.zeros((2, 2)), 'dec/bias': jnp.zeros(3)}

# The names the earlier chain (plain (count, moment) tuples) gave these parameters' state.
OLD_NAMES = [
    'opt/state/1/0',
    'opt/state/1/1/dec/bias',
    'opt/state/1/1/enc/conv0/kernel',
    'opt/state/2/0',
    'opt/state/2/1/dec/bias',
    'opt/state/2/1/enc/conv0/kernel',
    'opt/state/3/count',
]


def current_names(chain):
    flatten = __import__(nj.Tree.__module__, fromlist=['flatten']).flatten
    items, _ = flatten(chain.init(PARAMS))
    return {f'opt/state/{k}' for k in items}


def test_old_tuple_state_names_map_onto_the_named_states():
    expected = current_names(opt.make_chain()) | {'opt/step/value', 'enc/conv0/kernel'}
    old = {name: np.full(1, i) for i, name in enumerate(OLD_NAMES)}
    old['enc/conv0/kernel'] = np.zeros(1)
    upgraded = opt.upgrade_state_keys(old, expected)
    assert set(upgraded) == expected - {'opt/step/value'}
    # The RMS state (transform 1) holds nu, the momentum state (transform 2) holds mu.
    assert upgraded['opt/state/1/count'][0] == 0
    assert upgraded['opt/state/1/nu/dec/bias'][0] == 1
    assert upgraded['opt/state/2/count'][0] == 3
    assert upgraded['opt/state/2/mu/enc/conv0/kernel'][0] == 5


def test_current_names_and_unknown_names_stay_as_they_are():
    expected = current_names(opt.make_chain())
    current = {name: np.zeros(1) for name in expected}
    assert opt.upgrade_state_keys(current, expected).keys() == current.keys()
    stray = {'opt/state/7/1/x': np.zeros(1)}
    assert opt.upgrade_state_keys(stray, expected).keys() == stray.keys()
