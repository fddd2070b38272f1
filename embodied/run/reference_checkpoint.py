"""Agent state saved by the reference implementation (danijar/dreamerv3), renamed for this agent.

The reference saves with `elements.Checkpoint`, whose folder layout is the one `checkpoints`
reads (`latest`, `<time>/agent.pkl`, `done`), and its `agent.pkl` holds the same
`{'params': {name: array}, 'counters': {...}}` as this agent's. The arrays fit one to one; only
some names differ:

    reference                                 this project
    <opt>/state/<i>/0                         <opt>/state/<i>/count
    <opt>/state/<i>/1/<param>                 <opt>/state/<i>/nu/<param> (or mu/)
    .../logit/kernel|bias  (binary heads)     .../logits/kernel|bias
    .../pred/kernel|bias   (mean heads)       .../mean/kernel|bias

A name is translated only into a name the agent has, so the state of this project's own
checkpoints passes through unchanged.
"""

import re
from collections.abc import Iterable

# Output layers of the heads that the reference names differently.
HEAD_NAMES = {'logit': 'logits', 'pred': 'mean'}


class UnplacedEntry(ValueError):
    """A reference checkpoint holds an entry that fits no parameter of the agent."""


def project_name(name: str, expected: Iterable[str]) -> str | None:
    """The name of `expected` that the reference entry `name` stands for, or None."""
    # Imported here: the logdir tools read checkpoints without ever loading JAX.
    from ..jax import opt

    expected = expected if isinstance(expected, (set, frozenset, dict)) else set(expected)
    if name in expected:
        return name
    heads = '/'.join(HEAD_NAMES.get(part, part) for part in name.split('/'))
    for candidate in (heads, *opt.upgrade_state_keys({heads: None}, expected)):
        if candidate in expected:
            return candidate
    return None


def is_reference(params: dict, expected: Iterable[str]) -> bool:
    """Whether some entry of `params` carries a reference name of an entry of `expected`."""
    expected = set(expected)
    return any(name not in expected and project_name(name, expected) for name in params)


def adapt(
    data: dict, expected: Iterable[str], regex: str = '', source: str = '', quiet: bool = False
) -> dict:
    """`data` (an `agent.pkl`) with its entries renamed to `expected` when the reference wrote it.

    Raises UnplacedEntry naming an entry that fits no name of `expected`; with `regex` (the
    partial load of `run.from_checkpoint_regex`), entries it does not match are dropped instead.
    """
    params = data.get('params') if isinstance(data, dict) else None
    expected = set(expected)
    if not isinstance(params, dict) or not is_reference(params, expected):
        return data
    renamed, unplaced = {}, []
    for name, value in params.items():
        target = project_name(name, expected)
        if target is not None and target not in renamed:
            renamed[target] = value
        elif not regex or re.match(regex, name):
            unplaced.append(name)
    if unplaced:
        more = f' (and {len(unplaced) - 1} more)' if len(unplaced) > 1 else ''
        where = f" '{source}'" if source else ''
        raise UnplacedEntry(
            f'The checkpoint{where} was written by the reference implementation, but its '
            f"entry '{unplaced[0]}'{more} fits no parameter of this agent; run with the config "
            'of the run that wrote it, or load a subset with --run.from_checkpoint_regex.'
        )
    moved = sum(name not in expected for name in params)
    if not quiet:
        print(f'Renamed {moved} of the {len(params)} entries of a reference checkpoint.')
    return {**data, 'params': renamed}
