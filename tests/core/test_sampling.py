"""Replay selectors: uniform, FIFO, prioritized sum tree, recency and mixtures."""

import collections

import numpy as np
import pytest

from embodied.core import chunks as chunklib
from embodied.core import sampling

# numpy-only and version-sensitive: also runs under the reference pin in CI.
pytestmark = pytest.mark.pinned


def steps(*indices, chunk=1):
    """Step ids (N, 20) for the given step indices of one chunk."""
    uuid = chunklib.elements.UUID(chunk)
    return np.stack([chunklib.stepid(uuid, i) for i in indices])


def counts(selector, n):
    """How often each key is returned in n samples."""
    return collections.Counter(selector() for _ in range(n))


def chisquare(observed, probs, n):
    """Pearson's statistic of observed counts against expected probabilities."""
    probs = np.asarray(probs, np.float64)
    expected = n * probs
    observed = np.array([observed.get(i, 0) for i in range(len(probs))])
    keep = expected > 0
    assert observed[~keep].sum() == 0, 'a key with zero probability was sampled'
    return float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())


# Chi-square quantiles at 99.9 % for small degrees of freedom (hand-copied from tables).
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 7: 24.32, 9: 27.88}


def test_uniform_down_to_one_item_and_back():
    sel = sampling.Uniform(seed=0)
    sel['a'] = steps(0)
    assert len(sel) == 1 and sel() == 'a'
    del sel['a']  # the reference refused to delete the last item
    assert len(sel) == 0
    sel['b'] = steps(1)
    sel['c'] = steps(2)
    del sel['b']
    assert [sel() for _ in range(5)] == ['c'] * 5


def test_uniform_frequencies():
    sel = sampling.Uniform(seed=1)
    for key in range(6):
        sel[key] = steps(key)
    del sel[2]
    n = 6000
    observed = counts(sel, n)
    probs = [0.2, 0.2, 0.0, 0.2, 0.2, 0.2]
    assert chisquare(observed, probs, n) < CHI2_999[4]


def test_fifo_returns_oldest():
    sel = sampling.Fifo()
    for key in 'abc':
        sel[key] = steps(0)
    assert sel() == 'a'
    del sel['b']
    del sel['a']
    assert sel() == 'c' and len(sel) == 1


def test_prioritized_frequencies_follow_priorities():
    sel = sampling.Prioritized(exponent=1.0, initial=1.0, seed=0)
    for key in range(4):
        sel[key] = steps(key)
    sel.prioritize(steps(0, 1, 2, 3), [1.0, 2.0, 3.0, 4.0])
    n = 10000
    assert chisquare(counts(sel, n), [0.1, 0.2, 0.3, 0.4], n) < CHI2_999[3]


def test_prioritized_exponent():
    sel = sampling.Prioritized(exponent=0.5, initial=1.0, seed=1)
    for key in range(2):
        sel[key] = steps(key)
    sel.prioritize(steps(0, 1), [1.0, 9.0])  # sqrt: 1 and 3
    n = 8000
    assert chisquare(counts(sel, n), [0.25, 0.75], n) < CHI2_999[1]


def test_prioritized_item_aggregates_max_and_mean():
    # Item 0 has steps with priorities (0, 4): 0.5 * max 4 + 0.5 * mean 2 = 3.
    # Item 1 has steps (1, 1): 1. Hence P(item 0) = 3 / 4.
    sel = sampling.Prioritized(exponent=1.0, initial=1.0, maxfrac=0.5, seed=2)
    sel[0] = steps(0, 1)
    sel[1] = steps(2, 3)
    sel.prioritize(steps(0, 1), [0.0, 4.0])
    n = 8000
    assert chisquare(counts(sel, n), [0.75, 0.25], n) < CHI2_999[1]


def test_prioritized_shared_steps_refresh_every_item():
    # Items overlap like replay windows; zeroing the shared step changes both items.
    sel = sampling.Prioritized(exponent=1.0, initial=1.0, seed=3)
    sel[0] = steps(0, 1)
    sel[1] = steps(1, 2)
    sel[2] = steps(3, 4)
    sel.prioritize(steps(0, 1, 2), [0.0, 0.0, 0.0])
    assert set(counts(sel, 200)) == {2}


def test_prioritized_infinite_and_zero_sums():
    sel = sampling.Prioritized(exponent=0.8, initial='inf', seed=4)
    for key in range(40):  # more than one tree level
        sel[key] = steps(key)
    sel.prioritize(steps(*range(40)), [0.0] * 40)
    sel.prioritize(steps(5, 17, 33), [np.inf] * 3)
    n = 3000
    observed = counts(sel, n)
    assert set(observed) == {5, 17, 33}
    probs = np.zeros(40)
    probs[[5, 17, 33]] = 1 / 3
    assert chisquare(observed, probs, n) < CHI2_999[2]
    sel.prioritize(steps(5, 17, 33), [0.0] * 3)
    n = 8000
    # All zero: uniform over every item, also the 8 items in the partly filled last subtree.
    observed = counts(sel, n)
    assert chisquare(observed, np.full(40, 1 / 40), n) < 73.4  # 99.9 % quantile, 39 dof


def test_prioritized_infinite_items_uniform_in_unbalanced_tree():
    sel = sampling.Prioritized(exponent=1.0, initial=1.0, seed=7)
    for key in range(17):  # one full subtree of 16 and a subtree with a single leaf
        sel[key] = steps(key)
    sel.prioritize(steps(*range(17)), [np.inf] * 17)
    n = 6800
    observed = counts(sel, n)
    assert observed[16] < 2 * n / 17  # per-child uniformity would give it half the samples
    assert chisquare(observed, np.full(17, 1 / 17), n) < 39.25  # 99.9 % quantile, 16 dof


def test_prioritized_zero_on_sample_prefers_new_items():
    sel = sampling.Prioritized(exponent=0.8, initial=float('inf'), zero_on_sample=True, seed=5)
    for key in range(30):
        sel[key] = steps(key)
    first = [sel() for _ in range(30)]
    assert sorted(first) == list(range(30))  # each never-sampled item exactly once
    sel[30] = steps(30)
    assert sel() == 30
    assert set(counts(sel, 300)) == set(range(31))  # everything zero: uniform


def test_prioritized_ignores_unknown_and_evicted_steps():
    sel = sampling.Prioritized(exponent=1.0, initial=1.0, seed=6)
    sel[0] = steps(0, 1)
    sel[1] = steps(1, 2)
    del sel[0]
    assert len(sel.stepslots) == 2  # step 0 belonged only to the deleted item
    sel.prioritize(steps(0, 7, chunk=1), [5.0, 5.0])
    sel.prioritize(steps(0, chunk=9), [5.0])
    assert len(sel.stepslots) == 2 and len(sel) == 1 and sel() == 1


def test_prioritized_rejects_invalid_priorities():
    sel = sampling.Prioritized(exponent=1.0, initial=1.0)
    sel[0] = steps(0)
    with pytest.raises(ValueError, match='non-negative'):
        sel.prioritize(steps(0), [np.nan])
    with pytest.raises(ValueError, match='one per step'):
        sel.prioritize(steps(0), [1.0, 2.0])


def test_sample_tree_stays_consistent_under_churn():
    rng = np.random.default_rng(0)
    tree = sampling.SampleTree(branching=4, seed=0)
    values = {}
    for step in range(600):
        if values and rng.random() < 0.4:
            key = list(values)[rng.integers(len(values))]
            tree.remove(key)
            del values[key]
        else:
            values[step] = float(rng.random())
            tree.insert(step, values[step])
        if values and step % 50 == 0:
            key = list(values)[0]
            values[key] = 5.0
            tree.update([key], [5.0])
    # Every level sums to the same total, and every leaf holds its key's value.
    total = sum(values.values())
    for level in tree.levels:
        assert level.sum() == pytest.approx(total)
    for key, value in values.items():
        assert tree.levels[0][tree.slots[key]] == value
    keys = list(values)
    n = 20000
    observed = collections.Counter(tree.sample() for _ in range(n))
    probs = np.array([values[k] for k in keys]) / total
    observed = collections.Counter({keys.index(k): c for k, c in observed.items()})
    dof = len(keys) - 1
    # Normal approximation of the 99.9 % chi-square quantile for many degrees of freedom.
    assert chisquare(observed, probs, n) < dof + 3.1 * np.sqrt(2 * dof)


def test_recency_follows_uprobs():
    uprobs = np.array([0.4, 0.3, 0.2, 0.1])
    sel = sampling.Recency(uprobs, seed=0)
    for key in range(4):
        sel[key] = steps(key)
    n = 8000  # first sample works (the reference raised here)
    observed = counts(sel, n)
    # Age 0 is the newest item, key 3.
    assert chisquare(observed, uprobs[::-1], n) < CHI2_999[3]


def test_recency_many_levels_and_rescaling():
    capacity = 400
    uprobs = 1 / np.arange(1, capacity + 1) ** 1.0
    sel = sampling.Recency(uprobs, seed=1)
    for key in range(100):  # fewer items than uprobs: ages are rescaled
        sel[key] = steps(key)
    for key in range(50):
        del sel[key]  # oldest first, like the replay
    observed = counts(sel, 4000)
    assert set(observed) <= set(range(50, 100))
    assert observed[99] > observed[90] > observed[70] > 0


def test_recency_rejects_increasing_uprobs():
    with pytest.raises(ValueError, match='non-increasing'):
        sampling.Recency([0.1, 0.2])


def test_mixture_fractions_len_and_prioritize():
    newest = np.zeros(64)
    newest[0] = 1.0
    sel = sampling.Mixture(
        {
            'fifo': sampling.Fifo(),
            'newest': sampling.Recency(newest, seed=0),
            'prio': sampling.Prioritized(initial=1.0, seed=0),
            'unused': sampling.Uniform(0),
        },
        {'fifo': 0.3, 'newest': 0.5, 'prio': 0.2, 'unused': 0.0},
        seed=0,
    )
    assert len(sel) == 0 and len(sel.selectors) == 3  # zero-fraction selector dropped
    for key in range(5):
        sel[key] = steps(key)
    assert len(sel) == 5
    sel.prioritize(steps(0, 1, 2, 3, 4), [0, 0, 1, 0, 0])  # prio always returns key 2
    n = 5000
    observed = counts(sel, n)
    assert set(observed) == {0, 2, 4}
    assert chisquare(observed, [0.3, 0, 0.2, 0, 0.5], n) < CHI2_999[2]
    del sel[0]
    assert len(sel) == 4 and len(sel.selectors[0]) == 4


def test_mixture_rejects_bad_fractions():
    with pytest.raises(ValueError, match='sum to 1'):
        sampling.Mixture({'a': sampling.Uniform(), 'b': sampling.Fifo()}, {'a': 0.5, 'b': 0.4})
    with pytest.raises(KeyError, match='same names'):
        sampling.Mixture({'a': sampling.Uniform()}, {'b': 1.0})
