"""Two local processes form one JAX runtime (gloo collectives on CPU) and train one model."""

import os
import pickle
import subprocess

import numpy as np
import portal
import pytest
from helpers import command, metrics

FLAGS = (
    # A vector task: the smallest model, so the two processes compile quickly.
    '--task',
    'gym_CartPole-v1',
    '--jax.mock_devices',
    '2',
    '--jax.train_devices',
    '0',
    '1',
    '--jax.policy_devices',
    '0',
    '--jax.num_processes',
    '2',
    '--run.steps',
    '60',
    '--run.envs',
    '2',
    '--batch_size',
    '2',
    # Reports and saves are collective: short wall-clock periods check that both processes
    # follow process 0's clock decisions instead of deadlocking.
    '--run.report_every',
    '2',
    '--run.save_every',
    '3',
    '--jax.precompile',
    'False',
    '--jax.profiler',
    'False',
)


def agent_checkpoint(logdir):
    folder = logdir / 'ckpt' / (logdir / 'ckpt' / 'latest').read_text().strip()
    return pickle.loads((folder / 'agent.pkl').read_bytes())


@pytest.mark.slow
def test_two_processes_train_the_same_parameters(tmp_path):
    address = f'localhost:{portal.free_port()}'
    # Mock devices only apply to a fresh backend, so keep the parent's JAX settings out.
    env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
    procs = [
        subprocess.Popen(
            # Both hosts get the same logdir; process 1 writes to its own part of it.
            command(tmp_path, *FLAGS, '--jax.coordinator_address', address),
            # The cluster's completion index becomes the replica and the JAX process id.
            env={**env, 'JOB_COMPLETION_INDEX': str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=540)[0])
    finally:
        for proc in procs:
            proc.kill()
    for i, (proc, text) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, text[-4000:]
        assert f'JAX multi-host: process {i} of 2.' in text
    logdirs = [tmp_path, tmp_path / 'process1']
    for logdir in logdirs:
        assert (logdir / 'config.yaml').exists() and list((logdir / 'replay').glob('*.npz'))
    first, second = [agent_checkpoint(logdir) for logdir in logdirs]
    assert first['counters']['updates'] > 0
    assert first['counters'] == second['counters']
    assert sorted(first['params']) == sorted(second['params'])
    for key, value in first['params'].items():
        np.testing.assert_array_equal(value, second['params'][key], err_msg=key)
    # The processes stepped their own envs, but trained on one global batch.
    losses = [
        [r['train/loss/image'] for r in metrics(logdir) if 'train/loss/image' in r]
        for logdir in logdirs
    ]
    assert losses[0] and losses[0] == losses[1]
