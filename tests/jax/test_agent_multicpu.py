"""The JAX agent on several CPU devices: the `multicpu` preset and a two-process run.

Mock devices must be configured before the JAX backend starts, so each scenario runs in fresh
subprocesses: this file executed as a script.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent


def script(*args):
    """Start this file as a script in a clean JAX environment."""
    env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
    return subprocess.Popen(
        [sys.executable, __file__, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result_of(proc, timeout=400):
    """Wait for a script and parse the JSON summary it printed last."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, out[-4000:] + err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.pinned
def test_multicpu_preset_trains_and_policy_follows(tmp_path):
    result = result_of(script('multicpu', tmp_path))
    assert result['devices'] == 8
    assert result['train_devices'] == [2, 3, 4, 5, 6, 7]
    assert result['policy_devices'] == [0, 1]
    assert result['param_devices'] == [2, 3, 4, 5, 6, 7]
    assert result['policy_param_devices'] == [0, 1]
    assert result['batch_shards'] == [[2, 9]] * 6
    assert result['batch_devices'] == [2, 3, 4, 5, 6, 7]
    assert result['last_loss'] < 0.2 * result['first_loss']
    assert result['lagged'] and result['roundtrip']
    assert result['shardmap_last_loss'] < result['shardmap_first_loss']
    assert 'split evenly over the 2 local policy devices' in result['odd_envs_error']


def test_two_processes_train_one_model(tmp_path):
    with socket.socket() as sock:
        sock.bind(('localhost', 0))
        port = sock.getsockname()[1]
    procs = [script('multihost', tmp_path, port, index) for index in range(2)]
    results = [result_of(proc) for proc in procs]
    for result in results:
        assert result['processes'] == 2 and result['devices'] == 4
        assert result['last_loss'] < 0.5 * result['first_loss']
        # Results are process-local: each process gets outputs for its own batch entries.
        assert result['stepid_shape'] == [2, 9, 20]
        assert result['acts_shape'] == [2, 2]
        assert result['roundtrip']
    # Both processes train the same model on the global batch.
    assert results[0]['last_loss'] == results[1]['last_loss']
    assert results[0]['checksum'] == results[1]['checksum']


def run_multicpu(logdir):
    """Build the agent with the multicpu preset, train it and check shardings and the lag."""
    import jax
    import numpy as np
    import ruamel.yaml

    sys.path.insert(0, str(HERE))
    import test_agent_jax as toy

    import embodied
    import embodied.jax

    yaml = ruamel.yaml.YAML(typ='safe')
    preset = yaml.load((toy.ROOT / 'configs' / 'dreamerv3.yaml').read_text())['multicpu']
    config = toy.make_config(logdir, **preset['jax'], precompile=True)
    config = config.update(batch_size=preset['batch_size'])
    agent = embodied.jax.Agent(toy.model_fn(config), toy.OBS_SPACE, toy.ACT_SPACE, config)
    ids = lambda arrays: sorted({d.id for x in arrays for d in x.sharding.device_set})
    result = {
        'devices': jax.device_count(),
        'train_devices': [d.id for d in agent.train_devices],
        'policy_devices': [d.id for d in agent.policy_devices],
        'param_devices': ids(agent.params.values()),
        'policy_param_devices': ids(agent.policy_params.values()),
    }

    rng = np.random.default_rng(0)
    stream = iter(toy.batches(agent, rng))
    carry = agent.init_train(config.batch_size)
    policy_carry = agent.init_policy(4)
    obs = toy.make_obs(rng, 4)
    losses, lagged = [], True
    for i in range(40):
        data = next(stream)
        if i == 0:
            shards = data['vec'].addressable_shards
            result['batch_shards'] = [list(s.data.shape[:2]) for s in shards]
            result['batch_devices'] = sorted(s.device.id for s in shards)
        before = toy.host({k: agent.params[k] for k in agent.policy_keys})
        carry, _, mets = agent.train(carry, data)
        policy_carry, acts, outs = agent.policy(policy_carry, obs)
        used = toy.host(agent.policy_params)
        lagged &= all(np.array_equal(used[k], before[k]) for k in agent.policy_keys)
        expected = obs['vec'] @ used['net/kernel'][:, 0] + used['net/bias'][0]
        lagged &= bool(np.allclose(outs['pred'], expected, rtol=1e-5, atol=1e-6))
        if mets:
            losses.append(float(mets['loss']))
    stream.close()
    assert len(policy_carry) == 4 and acts['cont'].shape == (4, 2)
    try:
        agent.policy(policy_carry[:3], toy.make_obs(rng, 3))
    except ValueError as error:
        result['odd_envs_error'] = str(error)
    assert ids(jax.tree.leaves(policy_carry)) == [0, 1]
    result.update(first_loss=losses[0], last_loss=losses[-1], lagged=bool(lagged))

    saved = agent.save()
    snapshot = {k: v.copy() for k, v in saved['params'].items()}
    stream = iter(toy.batches(agent, rng))
    carry, _, _ = agent.train(carry, next(stream))
    stream.close()
    agent.load(saved)
    restored = toy.host(agent.params)
    result['roundtrip'] = all(np.array_equal(restored[k], v) for k, v in snapshot.items())

    # The same on shard_map: every device runs the model on its slice of the batch.
    config = config.update({'jax.use_shardmap': True, 'jax.precompile': False})
    agent = embodied.jax.Agent(toy.model_fn(config), toy.OBS_SPACE, toy.ACT_SPACE, config)
    stream = iter(toy.batches(agent, rng))
    carry = agent.init_train(config.batch_size)
    losses = []
    for _ in range(20):
        carry, _, mets = agent.train(carry, next(stream))
        if mets:
            losses.append(float(mets['loss']))
    stream.close()
    _, acts, _ = agent.policy(agent.init_policy(4), obs)
    assert acts['cont'].shape == (4, 2)
    result.update(shardmap_first_loss=losses[0], shardmap_last_loss=losses[-1])
    print(json.dumps(result))


def run_multihost(logdir, port, index):
    """One of two processes with 2 CPU devices each, training one model on the global batch."""
    import jax
    import numpy as np

    sys.path.insert(0, str(HERE))
    import test_agent_jax as toy

    import embodied.jax

    config = toy.make_config(
        logdir,
        mock_devices=2,
        policy_devices=[0, 1],
        train_devices=[0, 1],
        process_id=int(index),
        num_processes=2,
        coordinator_address=f'localhost:{port}',
        precompile=True,
        ckpt_chunksize=64,
    )
    config = config.update(batch_size=2)
    agent = embodied.jax.Agent(toy.model_fn(config), toy.OBS_SPACE, toy.ACT_SPACE, config)
    rng = np.random.default_rng(int(index))
    stream = iter(toy.batches(agent, rng))
    carry = agent.init_train(2)
    policy_carry = agent.init_policy(2)
    obs = toy.make_obs(rng, 2)
    losses = []
    for _ in range(30):
        carry, outs, mets = agent.train(carry, next(stream))
        policy_carry, acts, _ = agent.policy(policy_carry, obs)
        if mets:
            losses.append(float(mets['loss']))
    stream.close()
    saved = agent.save()
    agent.load(saved)
    restored = agent.save()['params']
    print(
        json.dumps(
            {
                'processes': jax.process_count(),
                'devices': jax.device_count(),
                'first_loss': losses[0],
                'last_loss': losses[-1],
                'stepid_shape': list(outs['replay']['stepid'].shape),
                'acts_shape': list(acts['cont'].shape),
                'roundtrip': all(
                    np.array_equal(restored[k], v) for k, v in saved['params'].items()
                ),
                'checksum': float(sum(np.abs(v).sum() for v in saved['params'].values())),
            }
        )
    )


if __name__ == '__main__':
    if sys.argv[1] == 'multicpu':
        run_multicpu(sys.argv[2])
    else:
        run_multihost(*sys.argv[2:])
