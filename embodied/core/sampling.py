"""Replay selectors: which stored item to sample next.

Every selector supports `len(sel)`, `sel[key] = stepids` (insert an item with its (L, 20) uint8
step ids), `del sel[key]` and `sel() -> key`. Prioritized selectors also have
`prioritize(stepids, priorities)`.
"""

import collections
import random
from collections.abc import Hashable, Sequence

import numpy as np

Key = Hashable  # An item's key in the replay.


def _stepkeys(stepids):
    """Rows of a (N, 20) uint8 array as a list of 20-byte strings."""
    stepids = np.ascontiguousarray(np.asarray(stepids, np.uint8).reshape(-1, 20))
    return stepids.view('V20').ravel().tolist()


class SampleTree:
    """A `branching`-ary sum tree over non-negative leaf values, one leaf per key.

    Sampling descends from the root, choosing each child in proportion to its subtree sum. When
    the sum is infinite, only children holding infinite leaves are chosen; when it is zero, all
    existing children are. In both cases a child is weighted by its number of such leaves, so
    the result is uniform over the infinite (or all) items even where the tree is only partly
    filled.
    """

    def __init__(self, branching: int = 16, seed: int = 0):
        if branching < 2:
            raise ValueError(f'Tree branching must be at least 2, got {branching}.')
        self.branching = branching
        self.rng = np.random.default_rng(seed)
        self.keys = []
        self.slots = {}
        self.levels = [np.zeros(0)]
        self._allocate(branching)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: Key) -> bool:
        return key in self.slots

    def insert(self, key: Key, value: float) -> None:
        """Add a leaf for a new key."""
        if key in self.slots:
            raise KeyError(f'Key {key!r} is already in the tree; delete it first.')
        if len(self.keys) == len(self.levels[0]):
            self._allocate(2 * len(self.levels[0]))
        self.slots[key] = len(self.keys)
        self.keys.append(key)
        self._set(np.array([self.slots[key]]), np.array([value], np.float64))

    def remove(self, key: Key) -> None:
        """Remove a key's leaf by moving the last leaf into its slot."""
        slot = self.slots.pop(key)
        last = len(self.keys) - 1
        lastkey = self.keys.pop()
        if slot != last:
            self.keys[slot] = lastkey
            self.slots[lastkey] = slot
            self._set(np.array([slot, last]), np.array([self.levels[0][last], 0.0]))
        else:
            self._set(np.array([slot]), np.zeros(1))

    def update(self, keys: Sequence[Key], values: Sequence[float] | np.ndarray) -> None:
        """Set the leaf values of existing keys."""
        if not len(keys):
            return
        slots = np.fromiter((self.slots[k] for k in keys), np.int64, len(keys))
        self._set(slots, np.asarray(values, np.float64))

    def fill(self, values: Sequence[float] | np.ndarray) -> None:
        """Make a static tree whose keys are the indices of `values`."""
        values = np.asarray(values, np.float64).reshape(-1)
        self.keys = range(len(values))
        self.slots = None
        self.levels = [values]
        self._allocate(len(values))

    def sample(self) -> Key:
        """Descend from the root and return the key of the chosen leaf."""
        if not self.keys:
            raise ValueError('Cannot sample from an empty tree; insert items first.')
        b, size, index = self.branching, len(self.keys), 0
        for depth in reversed(range(len(self.levels))):
            start = index * b
            children = self.levels[depth][start : start + b]
            if np.isinf(children).any():
                weights = self.infs[depth][start : start + b]
            elif children.sum() > 0:
                weights = children
            else:
                # Leaves that exist below each child.
                width = b**depth
                weights = np.clip(size - (start + np.arange(b)) * width, 0, width)
            index = start + self._choose(weights)
        return self.keys[index]

    def _choose(self, weights):
        cdf = np.cumsum(weights, dtype=np.float64)
        index = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side='right'))
        index = min(index, len(weights) - 1)
        while weights[index] <= 0:  # guards against rounding at the upper end
            index -= 1
        return index

    def _allocate(self, capacity):
        b = self.branching
        leaves = np.zeros(-(-capacity // b) * b)
        old = self.levels[0][: len(leaves)]
        leaves[: len(old)] = old
        # Every level has a multiple of `b` entries; the last one holds the root's children.
        # `infs` mirrors the levels with the number of infinite leaves below each node.
        self.levels = [leaves]
        self.infs = [np.isinf(leaves).astype(np.float64)]
        while len(self.levels[-1]) > b:
            for levels in (self.levels, self.infs):
                sums = levels[-1].reshape(-1, b).sum(1)
                level = np.zeros(-(-len(sums) // b) * b)
                level[: len(sums)] = sums
                levels.append(level)

    def _set(self, slots, values):
        b = self.branching
        self.levels[0][slots] = values
        self.infs[0][slots] = np.isinf(values)
        if len(slots) == 1:  # the common single insert, without array set operations
            index = int(slots[0])
            for depth in range(1, len(self.levels)):
                index //= b
                lo = index * b
                self.levels[depth][index] = self.levels[depth - 1][lo : lo + b].sum()
                self.infs[depth][index] = self.infs[depth - 1][lo : lo + b].sum()
            return
        index = np.unique(slots)
        for depth in range(1, len(self.levels)):
            index = np.unique(index // b)
            # Recomputed from the children (not incremented), so inf never turns into nan.
            self.levels[depth][index] = self.levels[depth - 1].reshape(-1, b)[index].sum(1)
            self.infs[depth][index] = self.infs[depth - 1].reshape(-1, b)[index].sum(1)


class Uniform:
    """Samples every item with equal probability."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.keys = []
        self.indices = {}

    def __len__(self) -> int:
        return len(self.keys)

    def __call__(self) -> Key:
        """Key of the item to sample next."""
        return self.keys[self.rng.randrange(len(self.keys))]

    def __setitem__(self, key: Key, stepids: np.ndarray) -> None:
        self.indices[key] = len(self.keys)
        self.keys.append(key)

    def __delitem__(self, key: Key) -> None:
        index = self.indices.pop(key)
        last = self.keys.pop()
        if index != len(self.keys):
            self.keys[index] = last
            self.indices[last] = index


class Fifo:
    """Always returns the oldest item."""

    def __init__(self):
        self.queue = collections.deque()

    def __len__(self) -> int:
        return len(self.queue)

    def __call__(self) -> Key:
        """Key of the item to sample next."""
        return self.queue[0]

    def __setitem__(self, key: Key, stepids: np.ndarray) -> None:
        self.queue.append(key)

    def __delitem__(self, key: Key) -> None:
        if self.queue[0] == key:
            self.queue.popleft()
        else:
            self.queue.remove(key)


class Prioritized:
    """Samples items in proportion to an aggregate of their steps' priorities^exponent."""

    def __init__(
        self,
        exponent: float = 1.0,
        initial: float | str = 1.0,
        zero_on_sample: bool = False,
        maxfrac: float = 0.0,
        branching: int = 16,
        seed: int = 0,
    ):
        initial = float(initial)  # the config may spell infinity as the string 'inf'
        if not 0 <= maxfrac <= 1:
            raise ValueError(f'Prioritized maxfrac must be in [0, 1], got {maxfrac}.')
        if not initial >= 0:
            raise ValueError(f'Prioritized initial priority must be >= 0, got {initial}.')
        self.exponent = float(exponent)
        self.initial = initial
        self.zero_on_sample = zero_on_sample
        self.maxfrac = float(maxfrac)
        self.tree = SampleTree(branching, seed)
        self.items = {}  # key -> step slots (int array)
        self.stepslots = {}  # step id bytes -> slot
        self.stepitems = []  # slot -> keys of the items containing the step
        self.slotsteps = []  # slot -> step id bytes
        self.values = np.zeros(1024)  # slot -> priority ** exponent
        self.free = []

    def __len__(self) -> int:
        return len(self.items)

    def __call__(self) -> Key:
        """Key of the item to sample next."""
        key = self.tree.sample()
        if self.zero_on_sample:
            slots = self.items[key]
            self.values[slots] = 0.0
            self._refresh(slots)
        return key

    def __setitem__(self, key: Key, stepids: np.ndarray) -> None:
        if key in self.items:
            raise KeyError(f'Item {key!r} is already in the selector; delete it first.')
        keys = _stepkeys(stepids)
        slots = [self.stepslots.get(step) for step in keys]
        for i, slot in enumerate(slots):
            if slot is None:  # a step no stored item contains yet
                slot = slots[i] = self._newslot()
                self.stepslots[keys[i]] = slot
                self.slotsteps[slot] = keys[i]
                self.values[slot] = self.initial**self.exponent
            self.stepitems[slot].append(key)
        slots = np.array(slots, np.int64)
        self.items[key] = slots
        self.tree.insert(key, self._aggregate(slots[None])[0])

    def __delitem__(self, key: Key) -> None:
        slots = self.items.pop(key)
        self.tree.remove(key)
        for slot in slots.tolist():
            owners = self.stepitems[slot]
            owners.remove(key)
            if not owners:
                # Forget the step: late priorities for it (from a train step that sampled it
                # before the deletion) are then ignored instead of re-creating an entry.
                del self.stepslots[self.slotsteps[slot]]
                self.slotsteps[slot] = None
                self.values[slot] = 0.0
                self.free.append(slot)

    def prioritize(self, stepids: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priorities of known steps and refresh every item that contains one."""
        priorities = np.asarray(priorities, np.float64).reshape(-1)
        keys = _stepkeys(stepids)
        if len(keys) != len(priorities):
            raise ValueError(
                f'Got {len(keys)} step ids but {len(priorities)} priorities; pass one per step.'
            )
        if np.any(np.isnan(priorities)) or np.any(priorities < 0):
            raise ValueError(
                f'Priorities must be non-negative numbers, got {int(np.isnan(priorities).sum())} '
                f'NaNs and {int((priorities < 0).sum())} negatives; check the priority signal.'
            )
        slots, values = [], []
        for step, priority in zip(keys, priorities.tolist()):
            slot = self.stepslots.get(step)
            if slot is not None:  # unknown or evicted steps are ignored
                slots.append(slot)
                values.append(priority)
        if not slots:
            return
        slots = np.array(slots)
        self.values[slots] = np.array(values) ** self.exponent
        self._refresh(slots)

    def _refresh(self, slots):
        keys = set()
        for slot in np.unique(slots).tolist():
            keys.update(self.stepitems[slot])
        if not keys:
            return
        groups = collections.defaultdict(list)
        for key in keys:
            groups[len(self.items[key])].append(key)
        for group in groups.values():
            values = self._aggregate(np.stack([self.items[k] for k in group]))
            self.tree.update(group, values)

    def _aggregate(self, slots):
        values = self.values[slots]
        mean = values.mean(-1)
        if self.maxfrac == 0:
            return mean
        high = values.max(-1)
        mix = self.maxfrac * high + (1 - self.maxfrac) * mean
        # 0 * inf would be nan when maxfrac is 1; an item with an infinite step is infinite.
        return np.where(np.isinf(high), np.inf, mix)

    def _newslot(self):
        if self.free:
            return self.free.pop()
        slot = len(self.stepitems)
        self.stepitems.append([])
        self.slotsteps.append(None)
        if slot >= len(self.values):
            self.values = np.concatenate([self.values, np.zeros(len(self.values))])
        return slot


class Recency:
    """Samples items by age (0 = newest) with probabilities `uprobs[age]`."""

    def __init__(self, uprobs: Sequence[float] | np.ndarray, branching: int = 16, seed: int = 0):
        uprobs = np.asarray(uprobs, np.float64).reshape(-1)
        if not len(uprobs) or np.any(uprobs < 0) or not uprobs.sum() > 0:
            raise ValueError('Recency uprobs must be non-negative with a positive sum.')
        if np.any(np.diff(uprobs) > 0):
            raise ValueError(
                'Recency uprobs must be non-increasing with age (newest first), '
                f'got {uprobs[:5]}...; pass e.g. 1 / arange(1, capacity + 1) ** exponent.'
            )
        self.uprobs = uprobs
        self.tree = SampleTree(branching, seed)
        self.tree.fill(uprobs)
        self.steps = {}  # key -> insertion counter
        self.keys = {}  # insertion counter -> key
        self.counter = 0

    def __len__(self) -> int:
        return len(self.steps)

    def __call__(self) -> Key:
        """Key of the item to sample next."""
        n = len(self.steps)
        if not n:
            raise ValueError('Cannot sample from an empty Recency selector; insert items first.')
        for _ in range(100):
            age = self.tree.sample()
            if n < len(self.uprobs):
                age = int(age / len(self.uprobs) * n)
            key = self.keys.get(self.counter - 1 - age)
            if key is not None:
                return key
        raise RuntimeError(
            'Recency could not find an item of the sampled ages; it expects items to be '
            'deleted oldest first, as the replay does.'
        )

    def __setitem__(self, key: Key, stepids: np.ndarray) -> None:
        self.steps[key] = self.counter
        self.keys[self.counter] = key
        self.counter += 1

    def __delitem__(self, key: Key) -> None:
        del self.keys[self.steps.pop(key)]


class Mixture:
    """Picks one of several selectors per sample, by fixed fractions."""

    def __init__(self, selectors: dict[str, object], fractions: dict[str, float], seed: int = 0):
        if set(selectors) != set(fractions):
            raise KeyError(
                f'Mixture selectors {sorted(selectors)} and fractions {sorted(fractions)} '
                'must have the same names.'
            )
        total = sum(float(f) for f in fractions.values())
        if abs(total - 1) > 1e-6 or any(float(f) < 0 for f in fractions.values()):
            raise ValueError(
                f'Mixture fractions must be non-negative and sum to 1, got {dict(fractions)}.'
            )
        names = [k for k in selectors if float(fractions[k]) > 0]
        self.selectors = [selectors[k] for k in names]
        self.fractions = np.array([float(fractions[k]) for k in names])
        self.fractions /= self.fractions.sum()
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.selectors[0])

    def __call__(self) -> Key:
        """Key of the item to sample next."""
        index = self.rng.choice(len(self.selectors), p=self.fractions)
        return self.selectors[index]()

    def __setitem__(self, key: Key, stepids: np.ndarray) -> None:
        for selector in self.selectors:
            selector[key] = stepids

    def __delitem__(self, key: Key) -> None:
        for selector in self.selectors:
            del selector[key]

    def prioritize(self, stepids: np.ndarray, priorities: np.ndarray) -> None:
        """Forward priorities to the selectors that use them."""
        for selector in self.selectors:
            if hasattr(selector, 'prioritize'):
                selector.prioritize(stepids, priorities)
