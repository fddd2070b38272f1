"""The shape of the code: one plain path from the command line, no stdlib-named modules, no
import cycles, no process replacement, one table of suites."""

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ('dreamerv3', 'embodied')


def modules():
    """{dotted name: (path, is a package __init__)} of every project module."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob('*.py')):
            parts = list(path.relative_to(ROOT).with_suffix('').parts)
            is_package = parts[-1] == '__init__'
            found['.'.join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imports(name, path, is_package, known):
    """The project modules a module imports anywhere in its code (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = name.split('.')
            if node.level:
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
            target = '.'.join([*base, node.module] if node.module else base)
            if not node.level:
                target = node.module
            for alias in node.names:
                full = f'{target}.{alias.name}'
                found.add(full if full in known else target)
    return {m for m in found if m in known and m != name}


def test_no_module_is_named_like_a_standard_library_module():
    clashes = [
        str(path.relative_to(ROOT))
        for path in (*ROOT.glob('dreamerv3/**/*.py'), *ROOT.glob('embodied/**/*.py'))
        if path.stem in sys.stdlib_module_names
    ]
    assert clashes == []


def test_modules_import_one_another_without_cycles():
    known = modules()
    # Package __init__ files only re-export; cycles through them are how packages work.
    graph = {
        name: {m for m in imports(name, path, is_package, known) if not known[m][1]}
        for name, (path, is_package) in known.items()
        if not is_package
    }
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 'open':
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


@pytest.mark.parametrize(
    'words, where',
    [
        (('importlib', 'inspect.signature', 'getattr(module'), 'embodied/run'),
        (('os.execv', 'os.execve', 'os.execl'), 'embodied'),
        (('os.execv', 'os.execve', 'os.execl'), 'dreamerv3'),
    ],
)
def test_no_dispatch_by_reflection_and_no_process_replacement(words, where):
    found = [
        f'{path.relative_to(ROOT)}: {word}'
        for path in sorted((ROOT / where).rglob('*.py'))
        for word in words
        if word in path.read_text()
    ]
    assert found == []


def test_the_scripts_are_one_plain_table_of_functions_of_the_config():
    from dreamerv3 import main

    assert {'train', 'train_eval', 'train_offline', 'eval_only', 'parallel'} <= set(main.SCRIPTS)
    for name, script in main.SCRIPTS.items():
        params = list(script.run.__code__.co_varnames[: script.run.__code__.co_argcount])
        assert params == ['config', 'make_agent'], name


def test_the_env_registry_keeps_one_record_per_suite():
    from embodied.envs import registry

    tables = [
        name
        for name, value in vars(registry).items()
        if isinstance(value, dict) and name.isupper() and set(value) & set(registry.SUITES)
    ]
    assert tables == ['SUITES']
    assert all(isinstance(suite, registry.Suite) for suite in registry.SUITES.values())


def test_the_readme_stays_short():
    lines = (ROOT / 'README.md').read_text().splitlines()
    assert len(lines) <= 200, f'README.md has {len(lines)} lines; the details belong in docs/'
