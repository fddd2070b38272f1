"""A replay that lives on the device: one ring buffer per environment, pure functions.

It keeps the semantics of the host replay (`embodied/core/replay.py`) for environments that step
in lockstep:

- An item is `length` consecutive steps of one environment; environment e holds the items that
  start at steps `t - length + 1 - n` to `t - length` after `t` steps, with `n` at most `items`
  (the host's capacity in items, split evenly over the environments). The ring holds
  `items + length - 1` steps per environment, so every item's steps are in it.
- `sample` draws items uniformly; with `online`, the non-overlapping items the host queues as
  they arrive (those that start at steps 1, length + 1, 2 length + 1, ...) are drawn first, once
  each, in the order they arrived. A sampled row starts with `is_first`, and an episode cut off
  without `is_last` is closed where the next one starts.
- `write` puts values back by position (the replay context the train step recomputes).

Step ids are not stored: `sample` makes them from the environment and step of each row, which
is all the model does with them (it hands them back with its outputs).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Layout(NamedTuple):
    """The static sizes of a device replay."""

    envs: int
    length: int  # steps per item
    items: int  # items per environment
    online: bool

    @property
    def steps(self) -> int:
        """Ring capacity per environment."""
        return self.items + self.length - 1

    @property
    def queue(self) -> int:
        """Capacity of the online queue: every queued item the ring still holds."""
        return self.envs * (self.items // self.length + 2)


def layout(envs: int, length: int, capacity: int, online: bool) -> Layout:
    """The layout for `capacity` items in all (the host's `replay.size`)."""
    items = max(1, int(capacity) // int(envs))
    return Layout(int(envs), int(length), items, bool(online))


def nbytes(spaces: dict, lay: Layout) -> int:
    """Bytes of the ring buffers for these stored spaces."""
    per_step = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in spaces.values())
    return per_step * lay.envs * lay.steps


def init(spaces: dict, lay: Layout) -> dict:
    """An empty replay for steps with these spaces."""
    data = {k: jnp.zeros((lay.envs, lay.steps, *s.shape), s.dtype) for k, s in spaces.items()}
    return {
        'data': data,
        'queue': jnp.zeros((lay.queue, 2), jnp.int32),
        'head': jnp.int32(0),
        'tail': jnp.int32(0),
    }


def count(lay: Layout, steps) -> jnp.ndarray:
    """Items per environment after `steps` steps."""
    return jnp.clip(steps - lay.length + 1, 0, lay.items)


def add(replay: dict, lay: Layout, index, step: dict) -> dict:
    """Store step `index` (0-based, the same for every environment) of each environment."""
    position = index % lay.steps
    data = {k: v.at[:, position].set(step[k].astype(v.dtype)) for k, v in replay['data'].items()}
    replay = {**replay, 'data': data}
    if lay.online:
        # The host queues the item that the step completes when its index is a multiple of L.
        envs = jnp.arange(lay.envs, dtype=jnp.int32)
        start = jnp.full((lay.envs,), index - lay.length + 1, jnp.int32)
        entries = jnp.stack([envs, start], 1)
        slots = (replay['tail'] + envs) % lay.queue
        queued = (index % lay.length == 0) & (index >= lay.length - 1)
        queue = jnp.where(queued, replay['queue'].at[slots].set(entries), replay['queue'])
        tail = replay['tail'] + jnp.where(queued, lay.envs, 0)
        # A full queue drops its oldest entries.
        head = jnp.maximum(replay['head'], tail - lay.queue)
        replay = {**replay, 'queue': queue, 'tail': tail, 'head': head}
    return replay


def sample(replay: dict, lay: Layout, steps, key, batch: int, first_env=0):
    """`batch` items after `steps` steps: (replay, (env, start) per row, dict of (B, L, ...)).

    `first_env` is the number of the replay's first environment in the step ids.
    """
    available = count(lay, steps)
    first = steps - lay.length + 1 - available
    ekey, skey = jax.random.split(key)
    envs = jax.random.randint(ekey, (batch,), 0, lay.envs, jnp.int32)
    starts = first + jax.random.randint(skey, (batch,), 0, jnp.maximum(available, 1), jnp.int32)
    if lay.online:
        queue, head, tail = replay['queue'], replay['head'], replay['tail']
        # Entries are in the order their items arrived; those evicted since are skipped.
        slots = jnp.arange(lay.queue)
        live = ((slots - head) % lay.queue) < (tail - head)
        stale = live & (queue[:, 1] < first)
        head = head + stale.sum(dtype=jnp.int32)
        take = jnp.minimum(batch, tail - head)
        rows = jnp.arange(batch)
        entries = queue[(head + rows) % lay.queue]
        online = rows < take
        envs = jnp.where(online, entries[:, 0], envs)
        starts = jnp.where(online, entries[:, 1], starts)
        replay = {**replay, 'head': head + take}
    offsets = jnp.arange(lay.length)
    positions = (starts[:, None] + offsets[None]) % lay.steps
    window = {k: v[envs[:, None], positions] for k, v in replay['data'].items()}
    if 'is_first' in window:
        window['is_first'] = window['is_first'].at[:, 0].set(True)
        if 'is_last' in window:
            window['is_last'] = (
                window['is_last']
                .at[:, :-1]
                .set(window['is_last'][:, :-1] | window['is_first'][:, 1:])
            )
    window['stepid'] = stepids(envs + first_env, starts[:, None] + offsets[None])
    return replay, (envs, starts), window


def write(replay: dict, lay: Layout, rows, offset: int, values: dict) -> dict:
    """Put (B, T, ...) values back at steps `start + offset ...` of each row's environment."""
    envs, starts = rows
    length = next(iter(values.values())).shape[1]
    positions = (starts[:, None] + offset + jnp.arange(length)[None]) % lay.steps
    data = dict(replay['data'])
    for key, value in values.items():
        data[key] = data[key].at[envs[:, None], positions].set(value.astype(data[key].dtype))
    return {**replay, 'data': data}


def stepids(envs, steps) -> jnp.ndarray:
    """uint8[20] ids of (environment, step): the environment in bytes 0-3, the step in 16-19."""
    envs = jnp.broadcast_to(envs[:, None], steps.shape).astype(jnp.uint32)
    steps = steps.astype(jnp.uint32)
    shifts = jnp.array([24, 16, 8, 0], jnp.uint32)
    head = ((envs[..., None] >> shifts) & 0xFF).astype(jnp.uint8)
    tail = ((steps[..., None] >> shifts) & 0xFF).astype(jnp.uint8)
    zeros = jnp.zeros((*steps.shape, 12), jnp.uint8)
    return jnp.concatenate([head, zeros, tail], -1)
