"""dreamerv3.agent.Agent through the JAX agent wrapper: act, train, report, save and load."""

import numpy as np
from conftest import random_batch


def batches(agent, batch, length):
    spaces = {**agent.obs_space, **agent.act_space, **agent.model.ext_space}
    for seed in range(100):
        data = random_batch(spaces, batch, length, seed)
        data['consec'][:] = 0  # random_batch draws dyn/stoch as valid class indices
        # Stored deter is bfloat16 bits; below 2**14 they are finite numbers under 2.
        data['dyn/deter'] %= 2**14
        yield data


def test_policy_train_report_save_load(debug_agent):
    agent, config = debug_agent, debug_agent.config
    B, T, C = config.batch_size, config.batch_length, config.replay_context
    obs = {k: v[:, 0] for k, v in next(batches(agent, 2, 1)).items() if k in agent.obs_space}
    carry = agent.init_policy(2)
    assert len(carry) == 2
    carry, act, outs = agent.policy(carry, obs, mode='train')
    assert act['act_disc'].shape == (2,) and act['act_cont'].shape == (2, 6)
    # The replay context in the compact layout: bfloat16 bits and class indices.
    assert set(outs) == {'dyn/deter', 'dyn/stoch'}
    assert outs['dyn/deter'].dtype == np.uint16 and outs['dyn/deter'].shape == (2, 8)
    assert outs['dyn/stoch'].dtype == np.uint8 and outs['dyn/stoch'].shape == (2, 2)

    stream = agent.stream(batches(agent, B, T + C))
    carry = agent.init_train(B)
    carry, outs, metrics = agent.train(carry, next(stream))
    assert outs == {} and metrics == {}  # results arrive one call late
    carry, outs, metrics = agent.train(carry, next(stream))
    assert set(outs['replay']) == {'stepid', 'priority', 'dyn/deter', 'dyn/stoch'}
    assert outs['replay']['dyn/deter'].shape == (B, T, 8)
    assert outs['replay']['dyn/stoch'].shape == (B, T, 2)
    assert np.isfinite(metrics['loss/vector']) and 'opt/grad_norm' in metrics

    report = agent.stream(batches(agent, B, config.report_length + C))
    _, metrics = agent.report(agent.init_report(B), next(report))
    assert np.isfinite(metrics['loss/dyn']) and 'params/summary' in metrics
    assert 'openloop/image' in metrics

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
    # A load drops the outputs of the updates before it: the next update returns none.
    _, outs, metrics = agent.train(carry, next(stream))
    assert outs == {} and metrics == {}
    carry, act, _ = agent.policy(agent.init_policy(2), obs)
    assert ((act['act_disc'] >= 0) & (act['act_disc'] < 5)).all()
