"""Helpers for the run-script tests: the command line as a user runs it, its output files and
a fake agent that records how a run loop calls it."""

import json
import pickle
import subprocess
import sys

# The loss terms of the debug agent on the dummy task: the world model's and actor-critic's,
# then one reconstruction loss per observation of the task.
LOSSES = (
    'dyn',
    'rep',
    'rew',
    'con',
    'policy',
    'value',
    'repval',
    'image',
    'vector',
    'token',
    'count',
    'float2d',
    'int2d',
)


def command(logdir, *flags):
    """The `python -m dreamerv3.main` command of the debug preset on CPU."""
    return [
        sys.executable,
        '-m',
        'dreamerv3.main',
        '--configs',
        'debug',
        '--jax.platform',
        'cpu',
        '--logdir',
        str(logdir),
        *flags,
    ]


def main(logdir, *flags, timeout=300, **kwargs):
    """Run the command line to completion; returns the CompletedProcess.

    Extra keyword arguments (cwd, env) go to subprocess.run."""
    return subprocess.run(
        command(logdir, *flags), capture_output=True, text=True, timeout=timeout, **kwargs
    )


def output(result, chars=4000):
    """The end of a finished command's stdout and stderr, for assertion messages."""
    return result.stdout[-chars:] + '\n--- stderr ---\n' + result.stderr[-chars:]


def metrics(logdir, name='metrics.jsonl'):
    """The records of a JSONL metrics file."""
    return [json.loads(line) for line in (logdir / name).read_text().splitlines()]


def keys(logdir):
    """Every metric name in metrics.jsonl."""
    return set().union(*metrics(logdir))


def checkpoint(directory, name):
    """Load one saveable of the latest checkpoint in `directory`."""
    folder = directory / (directory / 'latest').read_text().strip()
    assert (folder / 'done').exists()
    return pickle.loads((folder / f'{name}.pkl').read_bytes())


def load_config(logdir, *flags):
    """The resolved debug config, its factories but make_agent, and the run-script args."""
    from dreamerv3 import config as configlib
    from dreamerv3 import factories

    config, _ = configlib.parse(
        ['--configs', 'debug', '--jax.platform', 'cpu', '--logdir', str(logdir), *flags]
    )
    fns = factories.make_factories(config)
    del fns['make_agent']  # the tests pass their own agent
    return config, fns, factories.make_args(config)


class FakeAgent:
    """A random agent that records how the run loop calls it."""

    def __init__(self, obs_space, act_space):
        import collections

        import embodied

        self.obs_space, self.act_space = obs_space, act_space
        self.random = embodied.RandomAgent(obs_space, act_space)
        self.modes = collections.Counter()  # env steps acted on per policy mode
        self.reports = collections.Counter()  # report calls per report carry name
        self.report_carries = iter(['report', 'eval'] + ['extra'] * 100)
        self.trains = 0

    def init_policy(self, batch_size):
        return [0] * batch_size

    def init_train(self, batch_size):
        return ()

    def init_report(self, batch_size):
        return next(self.report_carries)

    def policy(self, carry, obs, mode='train'):
        self.modes[mode] += len(obs['is_first'])
        _, act, outs = self.random.policy((), obs)
        return [c + 1 for c in carry], act, outs

    def train(self, carry, data):
        self.trains += 1
        return carry, {}, {'loss': 1.0}

    def report(self, carry, data):
        self.reports[carry] += 1
        return carry, {'value': 1.0}

    def stream(self, st):
        return st

    def save(self):
        return {'trains': self.trains}

    def load(self, data, regex=None):
        self.trains = data['trains']
