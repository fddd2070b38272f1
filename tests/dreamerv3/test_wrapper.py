"""dreamerv3.agent.Agent through the JAX agent wrapper: act, train, report, save and load."""

import numpy as np
import pytest
from conftest import dummy_spaces, kept_jax_settings, load_config, random_batch

B, T = 2, 4


@pytest.fixture(scope='module')
def agent(tmp_path_factory):
    """Debug-preset agent without images, in float32 (fastest to compile; test_agent covers
    images and bfloat16); restores the global JAX settings that the agent's setup() changes."""
    from dreamerv3.agent import Agent

    obs_space, act_space = dummy_spaces()
    del obs_space['image']
    config = load_config(
        'debug',
        **{
            'logdir': str(tmp_path_factory.mktemp('logdir')),
            'batch_size': B,
            'batch_length': T,
            'report_length': T,
            'jax.compilation_cache': False,
            'jax.compute_dtype': 'float32',
        },
    )
    with kept_jax_settings():
        yield Agent(obs_space, act_space, config)


def batches(agent, length):
    spaces = {**agent.obs_space, **agent.act_space, **agent.model.ext_space}
    for seed in range(100):
        data = random_batch(spaces, B, length, seed)
        data['consec'][:] = 0  # random_batch draws dyn/stoch as valid class indices
        yield data


def test_policy_train_report_save_load(agent):
    obs = {k: v[:, 0] for k, v in next(batches(agent, 1)).items() if k in agent.obs_space}
    carry = agent.init_policy(B)
    assert len(carry) == B
    carry, act, outs = agent.policy(carry, obs, mode='train')
    assert act['act_disc'].shape == (B,) and act['act_cont'].shape == (B, 6)
    assert set(outs) == {'dyn/deter', 'dyn/stoch'}
    assert outs['dyn/deter'].dtype == np.float32 and outs['dyn/deter'].shape == (B, 8)
    assert outs['dyn/stoch'].dtype == np.uint8 and outs['dyn/stoch'].shape == (B, 2)

    stream = agent.stream(batches(agent, T + 1))
    carry = agent.init_train(B)
    carry, outs, metrics = agent.train(carry, next(stream))
    assert outs == {} and metrics == {}  # results arrive one call late
    carry, outs, metrics = agent.train(carry, next(stream))
    assert set(outs['replay']) == {'stepid', 'priority', 'dyn/deter', 'dyn/stoch'}
    assert outs['replay']['dyn/deter'].shape == (B, T, 8)
    assert outs['replay']['dyn/stoch'].shape == (B, T, 2)
    assert np.isfinite(metrics['loss/vector']) and 'opt/grad_norm' in metrics

    _, metrics = agent.report(agent.init_report(B), next(stream))
    assert np.isfinite(metrics['loss/dyn']) and 'params/summary' in metrics
    assert not any(k.startswith('openloop/') for k in metrics)

    saved = agent.save()
    assert saved['counters']['updates'] == 2
    assert set(saved['params']) == set(agent.params)
    assert {'dyn/dyngru/kernel', 'enc/mlp0/kernel', 'slowval/mlp/linear0/kernel'} <= set(
        saved['params']
    )
    agent.load(saved)
    np.testing.assert_array_equal(
        agent.save()['params']['dyn/dyngru/kernel'], saved['params']['dyn/dyngru/kernel']
    )
    carry, act, _ = agent.policy(agent.init_policy(B), obs)
    assert ((act['act_disc'] >= 0) & (act['act_disc'] < 5)).all()
