"""Every command in README.md is checked: configs parse, extras exist, scripts run, CI matches."""

import pathlib
import re
import shlex
import subprocess
import sys
import tomllib

import pytest

from dreamerv3 import config as configlib
from embodied.envs import registry

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / 'README.md').read_text()


def commands():
    """Shell commands from the README's code blocks and inline code spans."""
    blocks = re.findall(r'```sh\n(.*?)```', README, re.S)
    # A trailing backslash continues a command on the next line.
    lines = [line for block in blocks for line in block.replace('\\\n', ' ').splitlines()]
    lines += re.findall(r'`([^`\n]+)`', re.sub(r'```.*?```', '', README, flags=re.S))
    found = []
    for line in lines:
        for part in line.split('&&'):
            part = part.strip()
            if re.match(r'(python|pip|pytest|docker|tensorboard|tail) ', part):
                found.append(part)
    return found


def by_prefix(prefix):
    return [cmd for cmd in commands() if cmd.startswith(prefix)]


def test_readme_has_the_quick_start_commands():
    assert "pip install -e '.[dev]'" in by_prefix('pip install')
    assert any('--configs debug --jax.platform cpu' in c for c in by_prefix('python -m dreamerv3'))
    assert by_prefix('pytest')


def doc_commands():
    """`python -m dreamerv3.main` lines of the README and of every page under docs/."""
    found = by_prefix('python -m dreamerv3.main')
    for page in sorted((ROOT / 'docs').glob('*.md')):
        text = page.read_text().replace('\\\n', ' ')
        for line in re.findall(r'python -m dreamerv3\.main[^`\n]*', text):
            found.append(line.strip())
    return sorted(set(found))


@pytest.mark.parametrize('cmd', doc_commands())
def test_training_commands_parse(cmd):
    # Placeholders such as <logdir> or ... in prose stand for a user's values.
    argv = [arg for arg in shlex.split(cmd)[3:] if arg != '...']
    config, _ = configlib.parse(argv, environ={})
    suite = config.task.split('_', 1)[0]
    assert suite in registry.suites(), config.task


def test_install_commands_name_real_extras():
    extras = set(
        tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['optional-dependencies']
    )
    named = set()
    for cmd in by_prefix('pip install'):
        for spec in re.findall(r'\.\[([a-z0-9_,]+)\]', cmd):
            named.update(spec.split(','))
    assert named and named <= extras, named - extras
    assert (ROOT / 'requirements.txt').exists() and (ROOT / 'Dockerfile').exists()


def test_test_command_is_what_ci_runs():
    ci = (ROOT / '.ci' / 'run').read_text()
    for cmd in by_prefix('pytest'):
        assert cmd in ci, cmd


@pytest.mark.parametrize(
    'path',
    sorted(
        {m for cmd in commands() for m in re.findall(r'scripts/\w+\.py', cmd)}
        | {m for m in re.findall(r'`(scripts/\w+\.py)`', README)}
    ),
)
def test_scripts_exist_and_show_help(path):
    result = subprocess.run(
        [sys.executable, str(ROOT / path), '--help'], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert 'usage' in result.stdout.lower()


def test_scope_viewer_module_exists():
    import importlib.util

    assert any('scope_viewer' in cmd for cmd in commands())
    assert importlib.util.find_spec('scope_viewer') is not None
