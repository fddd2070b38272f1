"""requirements.txt (the reference's pinned GPU environment) agrees with pyproject.toml."""

import pathlib
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The extras whose packages the pinned environment installs besides the dependencies.
PINNED_EXTRAS = ('atari', 'crafter', 'dmc', 'gym', 'dm')
# Packages that requirements.txt pins more tightly than pyproject.toml.
PINNED = {'jax', 'numpy', 'ale-py'}


def project():
    return tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']


def by_name(lines):
    reqs = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in reqs or reqs[name].specifier == req.specifier, line
        reqs[name] = req
    return reqs


def requirements_txt():
    lines = (ROOT / 'requirements.txt').read_text().splitlines()
    return by_name(x.strip() for x in lines if x.strip() and not x.startswith('#'))


def declared():
    meta = project()
    return by_name(meta['dependencies']), by_name(
        line for extra in PINNED_EXTRAS for line in meta['optional-dependencies'][extra]
    )


def test_requirements_install_every_dependency():
    deps, extras = declared()
    missing = (set(deps) | set(extras)) - set(requirements_txt())
    assert not missing, f'add to requirements.txt: {sorted(missing)}'


def test_requirements_name_only_declared_packages():
    deps, extras = declared()
    unknown = set(requirements_txt()) - set(deps) - set(extras)
    assert not unknown, f'declare in pyproject.toml or drop from requirements.txt: {unknown}'


def test_requirements_repeat_the_declared_specifiers():
    deps, extras = declared()
    for name, req in requirements_txt().items():
        want = deps.get(name) or extras[name]
        if name in PINNED:
            continue
        assert req.specifier == want.specifier, f'{name}: {req} vs pyproject {want}'


def test_pins_satisfy_the_declared_specifiers():
    deps, extras = declared()
    reqs = requirements_txt()
    assert PINNED <= set(reqs)
    for name in PINNED:
        want = (deps.get(name) or extras[name]).specifier
        have = reqs[name].specifier
        exact = [s.version for s in have if s.operator == '==']
        if exact:
            assert all(want.contains(v) for v in exact), f'{reqs[name]} vs pyproject {want}'
        else:
            assert set(want) <= set(have), f'{reqs[name]} keeps pyproject bounds {want}'
    assert 'cuda12' in reqs['jax'].extras


def test_dev_extra_has_the_test_tools():
    dev = by_name(project()['optional-dependencies']['dev'])
    assert {'pytest', 'pytest-xdist', 'pytest-timeout', 'ruff'} <= set(dev)
