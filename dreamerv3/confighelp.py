"""Descriptions of the config keys, read from the comments beside them in the config file.

In the `defaults` block of configs/dreamerv3.yaml a key is described in one of two forms:

    key: value  # Description.             the comment that ends the key's line
    # block.sub: Description.              above `block: {sub: ..., ...}`, for its keys

The comment that ends the line of a flow mapping (`block: {...}  # ...`) or of a section
header describes that whole block. Suite option blocks (`env.<suite>`) are described as a
whole; every other key needs a description of its own.
"""

from collections.abc import Iterable

import ruamel.yaml as yaml

# Blocks whose keys share the block's description (the keyword arguments of a suite).
WHOLE_BLOCKS = ('env.',)
# Values shown in the key table are padded to this width, so that most descriptions align.
VALUE_WIDTH = 16


def trailing_comment(line: str, start: int = 0) -> str:
    """The comment that ends a YAML line ('' if none); a '#' inside quotes starts none."""
    quote = None
    i = start
    while i < len(line):
        char = line[i]
        if quote:
            if char == '\\' and quote == '"':
                i += 1
            elif char == quote:
                quote = None
        elif char in '\'"' and (i == start or line[i - 1] in ' \t[{,:'):
            quote = char
        elif char == '#' and (i == 0 or line[i - 1] in ' \t'):
            return line[i + 1 :].strip()
        i += 1
    return ''


def descriptions(text: str) -> dict[str, str]:
    """{dotted key or block: description} of the `defaults` block of a config file's text."""
    data = yaml.YAML(typ='rt').load(text)
    found = {}
    _collect(data['defaults'], '', text.splitlines(), found)
    return found


def _collect(mapping, prefix, lines, found):
    for key, value in mapping.items():
        name = f'{prefix}{key}'
        row, col = mapping.lc.key(key)
        comment = trailing_comment(lines[row], col)
        if comment:
            found[name] = comment
        if not isinstance(value, dict):
            continue
        if value.fa.flow_style():
            found.update(_described_above(lines, row, str(key), prefix))
        else:
            _collect(value, f'{name}.', lines, found)


def _described_above(lines, row, key, prefix):
    """The `# key.sub: text` lines of the comment run directly above line `row`."""
    found = {}
    while row > 0 and lines[row - 1].strip().startswith('#'):
        row -= 1
        body = lines[row].strip()[1:].strip()
        name, colon, text = body.partition(': ')
        if colon and name.startswith(f'{key}.') and ' ' not in name:
            found[f'{prefix}{name}'] = text.strip()
    return found


def describe(key: str, docs: dict[str, str]) -> str:
    """The description of a key: its own, else that of the nearest block around it, else ''."""
    parts = key.split('.')
    for end in range(len(parts), 0, -1):
        name = '.'.join(parts[:end])
        if name in docs:
            return docs[name]
    return ''


def undescribed(keys: Iterable[str], docs: dict[str, str]) -> list[str]:
    """The keys that lack a description (keys of WHOLE_BLOCKS need their block's)."""
    missing = []
    for key in keys:
        if key in docs:
            continue
        whole = key.startswith(WHOLE_BLOCKS) and key.count('.') >= 2
        if whole and key.rsplit('.', 1)[0] in docs:
            continue
        missing.append(key)
    return missing


def key_table(flat: dict, docs: dict[str, str]) -> list[str]:
    """One line per key: flag, value and description (a block's description on its first key)."""
    width = max(len(k) for k in flat)
    lines, shown = [], set()
    for key, value in flat.items():
        text = docs.get(key)
        if text is None:
            block = key.rsplit('.', 1)[0]
            text = docs.get(block, '') if block not in shown else ''
            shown.add(block)
        line = f'  --{key.ljust(width)}  {repr(value).ljust(VALUE_WIDTH)}  {text}'
        lines.append(line.rstrip())
    return lines


def key_details(keys: Iterable[str], flat: dict, defaults: dict, docs: dict[str, str]) -> list[str]:
    """Two lines per key: flag, value, type (and the defaults' value if a preset changed it),
    then the description."""
    lines = []
    for key in keys:
        value = flat[key]
        note = type(value).__name__
        if key in defaults and defaults[key] != value:
            note += f'; {defaults[key]!r} in defaults'
        lines.append(f'--{key} = {value!r} ({note})')
        lines.append(f'    {describe(key, docs) or "(no description)"}')
    return lines
