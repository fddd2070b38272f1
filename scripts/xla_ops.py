"""Time per XLA operation of a compiled program, read from a JAX profiler trace.

`profile_train.py --ops N` uses this to list, for each stage, the N operations that took the
most time, with their output shape and the JAX operation they came from (the HLO metadata).
Times are summed over the runtime's threads, so on a multi-core CPU they add up to more than
the wall-clock time of a call.
"""

import collections
import pathlib
import re
import tempfile

import jax

# Control flow ops' events span the ops of their bodies, which are counted on their own.
_NESTING = re.compile(r'(?<![\w-])(while|conditional|call)\(')
_OP = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = (\S+) (.*)$', re.M)
_SOURCE = re.compile(r'op_name="([^"]*)"')


def op_table(compiled, args, repeats: int) -> list[dict]:
    """Per-op milliseconds per call of `compiled(*args)`, most expensive first."""
    meta = {}
    for match in _OP.finditer(compiled.as_text()):
        if _NESTING.search(match.group(3)):
            continue
        source = _SOURCE.search(match.group(3))
        meta[match.group(1)] = (match.group(2), source.group(1) if source else '')
    with tempfile.TemporaryDirectory() as logdir:
        jax.profiler.start_trace(logdir)
        try:
            for _ in range(repeats):
                jax.block_until_ready(compiled(*args))
        finally:
            jax.profiler.stop_trace()
        (trace,) = pathlib.Path(logdir).rglob('*.xplane.pb')
        profile = jax.profiler.ProfileData.from_file(str(trace))
        totals, counts = collections.Counter(), collections.Counter()
        for plane in profile.planes:
            for line in plane.lines:
                for event in line.events:
                    # Runtime events (executor, thread pool) carry no HLO op name and drop out.
                    if event.name in meta:
                        totals[event.name] += event.duration_ns
                        counts[event.name] += 1
    rows = []
    for name, total in totals.most_common():
        shape, source = meta[name]
        rows.append(
            dict(
                op=name,
                ms=total / 1e6 / repeats,
                calls=counts[name] / repeats,
                shape=shape,
                source=source,
            )
        )
    return rows


def format_ops(rows: list[dict], top: int) -> str:
    """Markdown table of the `top` most expensive ops."""
    total = sum(r['ms'] for r in rows) or 1.0
    lines = ['| op | ms | share | runs | shape | from |', '|---|---:|---:|---:|---|---|']
    for r in rows[:top]:
        source = r['source'].replace('jit(program)/', '').replace('while/body/closed_call/', '')
        lines.append(
            f'| {r["op"]} | {r["ms"]:.2f} | {100 * r["ms"] / total:.1f} % | {r["calls"]:g} | '
            f'`{r["shape"]}` | {source[-80:]} |'
        )
    return '\n'.join(lines)
