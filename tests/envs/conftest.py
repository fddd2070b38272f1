"""Shared helpers for the environment adapter tests."""

import os

import numpy as np
import pytest

# Must precede any MuJoCo import in this process (the registry sets the same default).
os.environ.setdefault('MUJOCO_GL', 'egl')


def reset_action(env):
    """An action dict of zeros with `reset` set."""
    act = {k: np.zeros(v.shape, v.dtype) for k, v in env.act_space.items()}
    act['reset'] = np.bool_(True)
    return act


def random_rollout(env, steps, seed=0):
    """Drive a wrapped env with random actions like the driver does; return the observations.

    Resets are requested after every last step. Checks the standard-key contract on the way.
    """
    import embodied

    agent = embodied.RandomAgent(env.obs_space, env.act_space)
    for space in agent.act_space.values():
        space._random = np.random.RandomState(seed)
    act = reset_action(env)
    trajectory = []
    for index in range(steps):
        obs = env.step(act)
        trajectory.append(obs)
        if index == 0 or trajectory[-2]['is_last']:
            assert obs['is_first'], f'step {index} after a reset must be is_first'
            assert obs['reward'] == 0, f'step {index}: reset steps have reward 0'
        else:
            assert not obs['is_first'], f'step {index} is is_first without a reset'
        agent_obs = {k: v[None] for k, v in obs.items() if not k.startswith('log/')}
        _, act, _ = agent.policy((), agent_obs)
        act = {k: v[0] for k, v in act.items()}
        act['reset'] = obs['is_last']
    return trajectory


@pytest.fixture(scope='session')
def rollout():
    """The `random_rollout` helper as a fixture."""
    return random_rollout


@pytest.fixture(scope='session')
def resetter():
    """The `reset_action` helper as a fixture."""
    return reset_action
