"""The replay's memory at capacity, estimated from the agent's spaces before any step is stored.

A replay holds, per step, one row of every array a batch is cut from: the observations, the
actions, the agent's stored outputs and the step id. A run whose replay cannot fit into memory
is killed once the replay fills up, often days in; the estimate says so at the start.
"""

import math

import elements
import numpy as np
import psutil

# Batch keys that the stream adds when it cuts sequences; the replay does not store them.
STREAM_KEYS = ('consec',)
# Share of the available memory a suggested replay size may fill; the rest is left for the
# model, the environments and the other buffers of the process.
BUDGET = 0.8


def stored_spaces(agent) -> dict:
    """The spaces of the arrays a replay stores per step for `agent`."""
    spaces = getattr(agent, 'spaces', None)
    if spaces is None:
        spaces = {**agent.obs_space, **agent.act_space}
    return {k: v for k, v in spaces.items() if k not in STREAM_KEYS and not k.startswith('log/')}


def step_bytes(spaces: dict) -> int:
    """Bytes of one stored step: the sum of the spaces' array sizes."""
    return sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in spaces.values())


def suggest_size(stepbytes: int, available: int, share: float = 1.0) -> int:
    """A round replay size (two significant digits, rounded down) that fits `available` bytes.

    `share` is the part of the replay memory that one unit of `replay.size` accounts for, e.g.
    1.1 when an evaluation replay of a tenth of the size comes on top.
    """
    steps = int(BUDGET * available / (stepbytes * share))
    if steps < 100:
        return max(steps, 1)
    unit = 10 ** (len(str(steps)) - 2)
    return steps // unit * unit


def report(agent, *replays, available: int | None = None) -> int:
    """Print the memory of `replays` at capacity; warn with the fix when it exceeds the RAM.

    The first replay's capacity is `replay.size`; the others (an evaluation replay) scale with
    it. Returns the estimated bytes.
    """
    capacities = [r.capacity for r in replays if r.capacity is not None]
    if not capacities:
        return 0
    stepbytes = step_bytes(stored_spaces(agent))
    needed = stepbytes * sum(capacities)
    if available is None:
        available = psutil.virtual_memory().available
    print(
        f'Replay memory at capacity: {_size(needed)} ({stepbytes:,} bytes per step x '
        f'{sum(capacities):,} steps); {_size(available)} of memory available.'
    )
    if needed > available:
        size = suggest_size(stepbytes, available, sum(capacities) / capacities[0])
        elements.print(
            f'Warning: the replay needs about {_size(needed)} when full but only '
            f'{_size(available)} of memory are available, so the run would run out of memory '
            f'once the replay fills up. Pass --replay.size {size} (about '
            f'{BUDGET:.0%} of the available memory) or train on a machine with more memory.',
            color='yellow',
        )
    return needed


def _size(nbytes: int) -> str:
    if nbytes < 2**30:
        return f'{nbytes / 2**20:.1f} MiB'
    return f'{nbytes / 2**30:.1f} GiB'
