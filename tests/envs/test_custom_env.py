"""User environments named by an import path in the task: gymnasium ids, gymnasium entry points
and `embodied.Env` classes, from the registry and from the command line (custom_env_example.py)."""

import os
import pathlib
import re

import helpers
import numpy as np
import pytest

import embodied
from embodied.envs import custom, registry

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent

EXAMPLE = 'custom_env_example'

# The tasks the docs' commands train on, and that the command-line tests run the same way.
TRAINED = [f'gym_{EXAMPLE}:ReachDiscrete-v0', f'custom_{EXAMPLE}:reach_continuous']
# (suite, task after the suite prefix, action space)
TASKS = [
    ('gym', f'{EXAMPLE}:ReachDiscrete-v0', 'discrete'),
    ('gym', f'{EXAMPLE}:ReachContinuous-v0', 'continuous'),
    ('gym', f'{EXAMPLE}:ReachGym', 'discrete'),
    ('custom', f'{EXAMPLE}:ReachEnv', 'discrete'),
    ('custom', f'{EXAMPLE}:reach_continuous', 'continuous'),
]


def doc_sections():
    """The `# doc: <name>` sections of the example module, in order."""
    source = (HERE / f'{EXAMPLE}.py').read_text()
    return re.findall(r'^# doc: (\w+)\n(.*?)^# end doc\n', source, re.S | re.M)


def test_the_docs_show_the_tested_code():
    doc = (ROOT / 'docs' / 'custom_env.md').read_text()
    blocks = re.findall(r'```python\n(.*?)```', doc, re.S)
    sections = doc_sections()
    assert [name for name, _ in sections] == ['common', 'gymnasium', 'embodied']
    assert [b.strip() for b in blocks] == [body.strip() for _, body in sections]
    # The commands on the page name the tasks that the tests below build and train.
    commands = ' '.join(re.findall(r'```sh\n(.*?)```', doc, re.S))
    for task in TRAINED:
        assert f'--task {task}' in commands
    assert f'gym_{EXAMPLE}:ReachGym' in doc and f'custom_{EXAMPLE}:ReachEnv' in doc


def example_env(suite, task):
    """The example env through the registry, with the standard wrappers."""
    # Seeded where the entry takes a seed: a random policy that happened to reach the goal in
    # every episode would fail the checks below.
    kwargs = {} if task.endswith(':reach_continuous') else {'seed': 0}
    return embodied.wrap_env(registry.load(suite)(task, **kwargs))


@pytest.mark.parametrize('suite, task, kind', TASKS, ids=[f'{s}_{t}' for s, t, _ in TASKS])
def test_import_paths_build_the_example(suite, task, kind, rollout):
    env = example_env(suite, task)
    assert env.obs_space['image'].shape == (64, 64, 3)
    assert env.obs_space['image'].dtype == np.uint8
    assert env.obs_space['vector'].shape == (2,)
    action = env.act_space['action']
    if kind == 'discrete':
        assert action.discrete and action.classes == 3
    else:
        assert not action.discrete and action.shape == (1,)
    trajectory = rollout(env, 200)
    assert all(obs['image'].shape == (64, 64, 3) for obs in trajectory)
    # A random policy rarely reaches the goal within the time limit, so episodes are cut off
    # (is_last without is_terminal) unless the entry point skipped gymnasium's time limit.
    lasts = [obs for obs in trajectory if obs['is_last']]
    if task.endswith('ReachGym'):
        assert all(obs['is_terminal'] for obs in lasts)
    else:
        assert lasts and any(not obs['is_terminal'] for obs in lasts)
    assert all(obs['is_last'] for obs in trajectory if obs['is_terminal'])


@pytest.mark.parametrize(
    'suite, task, message',
    [
        ('custom', 'no_such_module_xyz:Env', "module 'no_such_module_xyz' could not be imported"),
        ('gym', 'no_such_module_xyz:Env-v0', 'PYTHONPATH'),
        ('custom', 'nocolon', 'must name an import path <module>:<attribute>'),
        ('custom', f'{EXAMPLE}:Missing', 'Environment classes there: ReachEnv'),
        ('gym', f'{EXAMPLE}:Missing-v0', 'It registers: ReachContinuous-v0, ReachDiscrete-v0'),
        ('custom', f'{EXAMPLE}:ReachGym', 'use --task gym_<module>:<id>'),
    ],
)
def test_import_path_errors_say_what_to_fix(suite, task, message):
    with pytest.raises(custom.ImportPathError, match=re.escape(message)):
        registry.load(suite)(task)


def test_import_path_error_is_a_setup_error():
    # main.py turns SetupError into one line and exit status 2.
    assert issubclass(custom.ImportPathError, embodied.SetupError)


def cli(logdir, task, *flags, timeout=600):
    """Train the debug agent on `task` from the command line with the example importable."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(HERE), env.get('PYTHONPATH')]))
    return helpers.cli(logdir, '--task', task, *flags, timeout=timeout, cwd=ROOT, env=env)


def test_unimportable_module_is_one_line_on_the_command_line(tmp_path):
    result = cli(tmp_path, 'custom_no_such_module_xyz:Env', '--run.steps', '10')
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    assert "module 'no_such_module_xyz' could not be imported" in result.stderr


# Two envs and batch 2 fill the replay quickly, so that a few updates run within the steps. The
# example's time limit is 50 steps: 120 steps over two envs end an episode in each of them even
# when the random policy never reaches the goal, so scores are written.
TRAIN = ('--run.steps', '120', '--run.envs', '2', '--batch_size', '2')


def test_runs_the_gymnasium_example_from_the_command_line(tmp_path):
    # The random agent: the debug agent's training on an image and a vector is tested on the
    # dummy task; this checks that the example's keys reach the replay as the model reads them.
    result = cli(tmp_path, TRAINED[0], *TRAIN, '--random_agent', 'True')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / 'scores.jsonl').exists()
    chunks = sorted((tmp_path / 'replay').glob('*.npz'))
    with np.load(chunks[0]) as data:
        assert data['image'].shape[1:] == (64, 64, 3) and data['image'].dtype == np.uint8
        assert data['vector'].shape[1:] == (2,) and data['vector'].dtype == np.float32


def test_runs_the_embodied_example_from_the_command_line(tmp_path):
    # The same for the `custom_` path.
    result = cli(tmp_path, TRAINED[1], *TRAIN, '--random_agent', 'True')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scores = helpers.metrics(tmp_path, 'scores.jsonl')
    assert len(scores) >= 2 and all('episode/score' in r for r in scores)
