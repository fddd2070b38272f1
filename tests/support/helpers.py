"""What the tests share: the one config builder, the command line as a user runs it, reading a
run's outputs, the JAX settings an agent changes, and a fake agent that records its calls.

Importable from every test (`pythonpath` in pyproject.toml). The fixtures built on
these (a compiled debug agent shared by all tests of a worker, the fake agent) are in
tests/conftest.py.
"""

import collections
import contextlib
import io
import json
import pathlib
import pickle
import subprocess
import sys

import elements

ROOT = pathlib.Path(__file__).resolve().parents[2]

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


def config(*flags, logdir='/tmp/dreamerv3-tests', presets=('debug',)) -> elements.Config:
    """The config a command line gives: `--configs <presets> --jax.platform cpu`, then flags.

    Parsed and checked exactly as `python -m dreamerv3.main` does, so a flag that the command
    line would reject fails here too.
    """
    from dreamerv3 import config as configlib
    from dreamerv3 import main

    argv = ['--configs', *presets, '--jax.platform', 'cpu', '--logdir', str(logdir), *flags]
    summaries = {name: script.summary for name, script in main.SCRIPTS.items()}
    result, _ = configlib.parse(argv, summaries, environ={})
    return result


def argv(logdir, *flags) -> list[str]:
    """The arguments of the debug preset on CPU with this logdir and flags."""
    return ['--configs', 'debug', '--jax.platform', 'cpu', '--logdir', str(logdir), *flags]


def command(logdir, *flags) -> list[str]:
    """The `python -m dreamerv3.main` command of the debug preset on CPU."""
    return [sys.executable, '-m', 'dreamerv3.main', *argv(logdir, *flags)]


def main_status(logdir, *flags) -> int:
    """Run `dreamerv3.main.main` in this process; returns its exit status (0 when it returns).

    For the paths that end before an agent is built, such as every bad-input error.
    """
    from dreamerv3 import main

    try:
        main.main(argv(logdir, *flags))
    except SystemExit as e:
        return e.code
    return 0


def cli(logdir, *flags, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """Run the command line to completion (extra keyword arguments go to subprocess.run)."""
    return subprocess.run(
        command(logdir, *flags), capture_output=True, text=True, timeout=timeout, **kwargs
    )


def tool(module, *args, timeout=120) -> subprocess.CompletedProcess:
    """Run `python -m <module> <args>` from the repository root to completion."""
    return subprocess.run(
        [sys.executable, '-m', module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def call(main, *args) -> subprocess.CompletedProcess:
    """Run a command's `main(argv)` in this process, like `tool` runs it in a new one: returns
    its exit status (0 when it returns normally) with what it printed."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in args]) or 0
        except SystemExit as e:
            code = e.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def output(result, chars=4000) -> str:
    """The end of a finished command's stdout and stderr, for assertion messages."""
    return result.stdout[-chars:] + '\n--- stderr ---\n' + result.stderr[-chars:]


def metrics(logdir, name='metrics.jsonl') -> list[dict]:
    """The records of a JSONL metrics file."""
    path = pathlib.Path(logdir) / name
    return [json.loads(line) for line in path.read_text().splitlines()]


def keys(logdir) -> set:
    """Every metric name in metrics.jsonl."""
    return set().union(*metrics(logdir))


def checkpoint(directory, name):
    """One saveable of the latest checkpoint in `directory`, unpickled."""
    directory = pathlib.Path(directory)
    folder = directory / (directory / 'latest').read_text().strip()
    assert (folder / 'done').exists()
    return pickle.loads((folder / f'{name}.pkl').read_bytes())


def reuse(agent, initial=None):
    """A `make_agent` that hands out `agent` for configs of the same model, spaces and batch,
    loading the state `initial` (from `agent.save()`) first when given."""

    def make_agent(config):
        for key in ('task', 'agent', 'batch_size', 'batch_length', 'report_length'):
            assert config[key] == agent.config[key], f'{key} differs from the shared agent'
        if initial is not None:
            agent.load(initial)
        return agent

    return make_agent


def read_flag(name):
    """Current value of a JAX config flag (attribute or read(), depending on flag and version)."""
    import jax

    try:
        return getattr(jax.config, name)
    except AttributeError:
        return jax.config.read(name)


# The global JAX flags that building an agent (its setup()) changes.
SETUP_FLAGS = (
    'jax_disable_most_optimizations',
    'jax_disable_jit',
    'jax_transfer_guard',
    'jax_debug_nans',
    'jax_enable_compilation_cache',
)


@contextlib.contextmanager
def kept_jax_settings():
    """Restore the compute dtype and the JAX flags that an agent's setup() changes."""
    import jax

    from embodied.jax import nets

    previous = nets.COMPUTE_DTYPE, {k: read_flag(k) for k in SETUP_FLAGS}
    try:
        yield
    finally:
        nets.COMPUTE_DTYPE = previous[0]
        for key, value in previous[1].items():
            jax.config.update(key, value)


@contextlib.contextmanager
def settings_of(agent):
    """The JAX settings `agent` was built with, for a block; the previous ones afterwards."""
    from embodied.jax.setup import configure

    with kept_jax_settings():
        configure(agent.config.jax)
        yield


def run_script(script, config, make_agent) -> str:
    """Write the config into the logdir and run a script as `main` does, in this process;
    returns what it printed."""
    from dreamerv3 import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main.write_config(config)
        script(config, make_agent)
    return out.getvalue()


class FakeAgent:
    """A random agent that records how the run loop calls it."""

    def __init__(self, obs_space, act_space):
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
