"""Loading the YAML presets and parsing command-line flags into one config."""

import difflib
import importlib.resources
import os
import pathlib
import re

import elements
import ruamel.yaml as yaml

from . import confighelp

# Keys with a character outside this set are regular expressions over the flat keys.
PLAIN_KEY = re.compile(r'^[A-Za-z0-9_.\-]+$')
# Values of logger.terminal: a progress display, or that plus the metrics block.
TERMINAL = ('progress', 'metrics')
USAGE = """\
usage: python -m dreamerv3.main [--configs NAME [NAME ...]] [--KEY VALUE ...]

Trains a DreamerV3 agent. The `defaults` block of the config file is always the base;
the presets named by --configs are applied over it in order, then every --KEY VALUE flag.
Keys are dotted (--run.steps 1e5, --agent.opt.lr 1e-4); a key with regex characters sets
every key it fully matches (--.*\\.units 512); --KEY+ VALUE appends to a list.
--help KEY_REGEX shows every key the regex finds (--help train_ratio, --help 'replay\\.')
with its value, type and description.

examples:
  python -m dreamerv3.main --configs debug --jax.platform cpu --logdir ~/logdir/debug
  python -m dreamerv3.main --configs atari --task atari_pong --logdir ~/logdir/pong
  python -m dreamerv3.main --configs crafter size50m --run.train_ratio 64
"""


class ConfigError(Exception):
    """Bad command-line input; main prints the message and exits with status 2."""


def config_path():
    """Path of the YAML file with the defaults and presets."""
    # A source checkout has configs/ next to the packages; an installed wheel ships the
    # same file as package data of dreamerv3.configs.
    local = pathlib.Path(__file__).resolve().parent.parent / 'configs' / 'dreamerv3.yaml'
    if local.exists():
        return local
    return pathlib.Path(str(importlib.resources.files('dreamerv3.configs') / 'dreamerv3.yaml'))


def load_presets(path=None):
    """Read every block of the config file as a dict of name to nested dict."""
    text = pathlib.Path(path or config_path()).read_text()
    return yaml.YAML(typ='safe').load(text)


def split_configs(argv):
    """Separate `--configs a b` (or `--configs=a,b`) from the remaining flags."""
    names, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg != '--configs' and not arg.startswith('--configs='):
            rest.append(arg)
            continue
        values = [arg.split('=', 1)[1]] if '=' in arg else []
        while '=' not in arg and i < len(argv) and not argv[i].startswith('--'):
            values.append(argv[i])
            i += 1
        names += [name for value in values for name in value.split(',') if name]
        if not values or not names:
            raise ConfigError('--configs needs at least one preset name.')
    return names or ['defaults'], rest


def merge_presets(presets, names):
    """Apply the named presets in order over the defaults block."""
    valid = [name for name in presets if name != 'defaults']
    config = elements.Config(presets['defaults'])
    for name in names:
        if name == 'defaults':
            continue
        if name not in presets:
            close = difflib.get_close_matches(name, valid, n=3)
            hint = f' Did you mean {", ".join(close)}?' if close else ''
            raise ConfigError(f"Unknown preset '{name}'.{hint} Valid presets: {', '.join(valid)}.")
        try:
            config = config.update(presets[name])
        except (KeyError, TypeError) as e:
            raise ConfigError(f"Preset '{name}' does not fit the defaults: {e}") from e
    return config


def group_flags(argv):
    """Split argv into (key, values) pairs; raise on stray values and missing values."""
    groups = []
    for arg in argv:
        if arg.startswith('--'):
            key, eq, value = arg[2:].partition('=')
            if not key:
                raise ConfigError(f"Malformed flag '{arg}': expected --KEY VALUE.")
            groups.append((key, [value] if eq else []))
        elif groups:
            groups[-1][1].append(arg)
        else:
            raise ConfigError(
                f"Unexpected value '{arg}' without a flag before it: write flags as --KEY VALUE."
            )
    for key, values in groups:
        if not values:
            raise ConfigError(f'Flag --{key} is missing its value: write --{key} VALUE.')
    return groups


def check_key(config, key):
    """Raise a ConfigError naming the closest keys when a flag matches no config key."""
    flat = config.flat
    name = key[:-1] if key.endswith('+') else key
    if PLAIN_KEY.match(name):
        if name in flat:
            return
        sections = {k for k in flat if k.startswith(name + '.')}
        if sections:
            raise ConfigError(
                f'--{name} names a whole section; set one of its keys instead, '
                f'e.g. --{sorted(sections)[0]}.'
            )
    else:
        try:
            if any(re.fullmatch(name, k) for k in flat):
                return
        except re.error as e:
            raise ConfigError(f'Flag --{name} is not a valid regular expression: {e}.')
    close = difflib.get_close_matches(name, list(flat), n=5, cutoff=0.5)
    if not close:
        tail = name.split('.')[-1]
        close = [k for k in flat if k.split('.')[-1] == tail][:5]
    hint = f' Closest valid keys: {", ".join("--" + k for k in close)}.' if close else ''
    raise ConfigError(f'Unknown flag --{name}: no config key matches it.{hint}')


def apply_flags(config, argv):
    """Parse --KEY VALUE flags against the config, with errors that name the key."""
    for key, values in group_flags(argv):
        check_key(config, key)
        try:
            config = elements.Flags(config).parse([f'--{key}', *values])
        except (TypeError, ValueError) as e:
            name = key.rstrip('+')
            current = config.flat.get(name)
            wanted = type(current).__name__ if name in config.flat else 'the existing type'
            if isinstance(current, tuple) and current:
                wanted = f'a list of {type(current[0]).__name__}'
            raise ConfigError(
                f'Invalid value {" ".join(values)!r} for --{name}: expected {wanted} '
                f'(default {current!r}). Details: {e}'
            ) from e
    return config


def finalize(config, environ=None, scripts=None):
    """Resolve {timestamp} and ~ in the logdir and the replica from the cluster env.

    `scripts`, the names `--script` accepts, are checked when given.
    """
    environ = os.environ if environ is None else environ
    logdir = config.logdir.format(timestamp=elements.timestamp())
    config = config.update(logdir=os.path.abspath(os.path.expanduser(logdir)))
    if 'JOB_COMPLETION_INDEX' in environ:
        value = environ['JOB_COMPLETION_INDEX']
        try:
            config = config.update(replica=int(value))
        except ValueError as e:
            raise ConfigError(f'JOB_COMPLETION_INDEX must be an integer, got {value!r}.') from e
    if scripts is not None and config.script not in scripts:
        close = difflib.get_close_matches(config.script, list(scripts), n=3)
        hint = f' Did you mean {", ".join(close)}?' if close else ''
        names = ', '.join(scripts)
        raise ConfigError(f"Unknown script '{config.script}'.{hint} Valid scripts: {names}.")
    if config.run.keep_checkpoints < 1:
        raise ConfigError(
            f'--run.keep_checkpoints must be at least 1, got {config.run.keep_checkpoints}; '
            '2 or more lets a resume fall back to an older checkpoint when the newest is damaged.'
        )
    if config.logger.terminal not in TERMINAL:
        raise ConfigError(
            f"Unknown logger.terminal '{config.logger.terminal}'; choose {' or '.join(TERMINAL)}."
        )
    return multihost(config)


def multihost(config):
    """Give each process of a multi-host run its JAX process id and its own part of the logdir.

    On a cluster the replica index (JOB_COMPLETION_INDEX) is the process id. Every host may be
    started with the same --logdir: process 0 writes there like a single-host run, process i
    writes its config, metrics, replay and checkpoint to <logdir>/process<i>, so no two
    processes write the same file.
    """
    if config.jax.num_processes <= 1:
        return config
    if config.jax.process_id < 0:
        config = config.update({'jax.process_id': config.replica})
    pid = config.jax.process_id
    if not 0 <= pid < config.jax.num_processes:
        raise ConfigError(
            f'jax.process_id is {pid}, but jax.num_processes={config.jax.num_processes} needs '
            'an id from 0 to num_processes - 1; set --jax.process_id or JOB_COMPLETION_INDEX.'
        )
    if pid > 0:
        config = config.update(logdir=os.path.join(config.logdir, f'process{pid}'))
    return config


def help_text(presets, config, scripts=None):
    """Usage, preset names, the scripts with their summaries and every key with its value."""
    names = ', '.join(name for name in presets if name != 'defaults')
    lines = [USAGE, f'presets: {names}']
    if scripts:
        width = max(len(name) for name in scripts)
        lines += ['', 'scripts (--script):']
        lines += [f'  {name.ljust(width)}  {summary}' for name, summary in scripts.items()]
    lines += ['', 'keys (values after the selected presets; --help KEY_REGEX for details):']
    lines += confighelp.key_table(config.flat, key_descriptions())
    return '\n'.join(lines)


def key_descriptions() -> dict[str, str]:
    """{key or block: description} from the comments of the config file."""
    return confighelp.descriptions(pathlib.Path(config_path()).read_text())


def help_request(argv: list[str]) -> str | None:
    """None without -h/--help, '' for the full help, else the KEY_REGEX that follows it."""
    for i, arg in enumerate(argv):
        if arg.startswith('--help='):
            return arg.split('=', 1)[1]
        if arg in ('-h', '--help'):
            following = argv[i + 1] if i + 1 < len(argv) else ''
            return '' if following.startswith('-') else following
    return None


def key_help(presets: dict, config: elements.Config, pattern: str) -> str:
    """Every key that the regex finds, with its value, type and description."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f'--help {pattern!r} is not a valid regular expression: {e}.') from e
    flat = config.flat
    keys = [key for key in flat if regex.search(key)]
    if not keys:
        raise ConfigError(f'--help {pattern!r} matches no config key.{closest_keys(pattern, flat)}')
    defaults = elements.Config(presets['defaults']).flat
    return '\n'.join(confighelp.key_details(keys, flat, defaults, key_descriptions()))


def closest_keys(pattern: str, flat: dict) -> str:
    """' Closest keys: a, b.' for a pattern that matched nothing, by whole key and by last part."""
    plain = pattern.replace('\\', '')
    close = difflib.get_close_matches(plain, list(flat), n=5, cutoff=0.5)
    leaves = difflib.get_close_matches(
        plain.split('.')[-1], {k.split('.')[-1] for k in flat}, cutoff=0.75
    )
    close += [k for k in flat if k.split('.')[-1] in leaves and k not in close]
    return f' Closest keys: {", ".join(close[:5])}.' if close else ''


def parse(argv, scripts=None, environ=None):
    """Turn command-line arguments into (config, None), or (None, help text) for --help.

    `--help KEY_REGEX` gives the matching keys in full instead of the whole help.
    `scripts` maps the names `--script` accepts to their summaries, for checking and --help.
    Bad input raises ConfigError.
    """
    presets = load_presets()
    names, rest = split_configs(argv)
    config = merge_presets(presets, names)
    pattern = help_request(rest)
    if pattern:
        return None, key_help(presets, config, pattern)
    if pattern is not None:
        return None, help_text(presets, config, scripts)
    config = upgrade_values(apply_flags(config, rest), presets)
    if config.script == 'eval_only' and not flag_sets(rest, 'run.steps'):
        # eval_only counts run.eval_eps episodes unless --run.steps asks for env steps; the
        # presets' run.steps are training budgets. Its config.yaml says so with run.steps 0.
        config = config.update({'run.steps': 0})
    return finalize(config, environ, scripts), None


def flag_sets(argv: list[str], key: str) -> bool:
    """Whether a --KEY VALUE flag of argv sets `key`, by its name or by a regex it matches."""
    for name, _ in group_flags(argv):
        name = name.rstrip('+')
        if name == key or (not PLAIN_KEY.match(name) and re.fullmatch(name, key)):
            return True
    return False


def upgrade_values(config: elements.Config, presets: dict | None = None) -> elements.Config:
    """The config with the values of earlier versions turned into today's equivalents.

    `jax.compilation_cache` was a bool: True (the default folder) and False ('', off), also as
    the text a --jax.compilation_cache True/False flag leaves in today's string key.
    """
    value = config.flat.get('jax.compilation_cache')
    if isinstance(value, bool) or value in ('True', 'False'):
        presets = presets or load_presets()
        default = presets['defaults']['jax']['compilation_cache']
        folder = default if value in (True, 'True') else ''
        # Rebuilt rather than updated: an update keeps the bool type of an older config's key.
        return elements.Config({**config.flat, 'jax.compilation_cache': folder})
    return config


def config_diff(old, new, prefixes=('',)):
    """Keys whose values differ between two configs, as (key, old, new) triples.

    Values that mean the same in an earlier version (`upgrade_values`) do not differ.
    """
    old, new = upgrade_values(old).flat, upgrade_values(new).flat
    keys = sorted(set(old) | set(new))
    return [
        (k, old.get(k), new.get(k))
        for k in keys
        if any(k.startswith(p) for p in prefixes) and old.get(k) != new.get(k)
    ]
