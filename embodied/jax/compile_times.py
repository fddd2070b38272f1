"""Compile times of earlier runs, so that a run can say how long its compilation usually takes.

Compiling the train step of a large model takes minutes and prints nothing meanwhile; a user
who has seen the same model compile before is told how long it took then. Times are kept per
step name, device kind, JAX version and a digest of the argument shapes and dtypes, in one small
JSON file shared by all runs of a user (`jax.compile_times`, '' turns it off).
"""

import hashlib
import json
import os
import statistics
import tempfile

import jax

# How many measurements per key the file keeps; the median of them is reported.
KEEP = 5


def signature(name: str, args) -> str:
    """The key for compiling step `name` with arguments shaped like the pytree `args`."""
    leaves = [
        (str(path), tuple(leaf.shape), str(leaf.dtype))
        for path, leaf in jax.tree_util.tree_leaves_with_path(args)
        if hasattr(leaf, 'shape')
    ]
    digest = hashlib.sha1(repr(leaves).encode()).hexdigest()[:16]
    device = jax.devices()[0].device_kind
    return f'{name}|{device}|jax {jax.__version__}|{digest}'


class CompileTimes:
    """The compile-time record at `path` (nothing is read or written when `path` is '')."""

    def __init__(self, path: str):
        self.path = os.path.expanduser(path) if path else ''

    def usual(self, key: str) -> float | None:
        """The median of the recorded compile times of `key`, or None when there are none."""
        times = self._read().get(key)
        return statistics.median(times) if times else None

    def record(self, key: str, seconds: float) -> None:
        """Add one measurement; a file that cannot be written is left as it is."""
        if not self.path:
            return
        records = self._read()
        records[key] = (records.get(key, []) + [round(float(seconds), 2)])[-KEEP:]
        try:
            folder = os.path.dirname(self.path) or '.'
            os.makedirs(folder, exist_ok=True)
            # Written atomically: runs that finish compiling at once must not mix their writes.
            with tempfile.NamedTemporaryFile('w', dir=folder, delete=False) as f:
                json.dump(records, f, indent=1, sort_keys=True)
            os.replace(f.name, self.path)
        except OSError:
            pass

    def announce(self, key: str, what: str) -> str:
        """The line that says a compilation starts, with its usual duration if known."""
        usual = self.usual(key)
        if usual is None:
            return f'Compiling the {what}...'
        return f'Compiling the {what}, usually {usual:.0f} s on this device (less if cached)...'

    def _read(self) -> dict:
        if not self.path:
            return {}
        try:
            with open(self.path) as f:
                records = json.load(f)
        except (OSError, ValueError):
            return {}
        return records if isinstance(records, dict) else {}
