"""SamplesPerInsert rate limiting and the blocking wait helper."""

import itertools

import pytest

from embodied.core import limiters

# numpy-only and version-sensitive: also runs under the reference pin in CI.
pytestmark = pytest.mark.pinned


def state(limiter):
    return (limiter.size, limiter.avail, limiter.want_insert(), limiter.want_sample())


def test_samples_per_insert_hand_computed_sequence():
    limiter = limiters.SamplesPerInsert(samples_per_insert=2, tolerance=1, minsize=3)
    # (size, avail, want_insert, want_sample); avail starts at -minsize.
    assert state(limiter) == (0, -3, True, False)
    limiter.insert()
    limiter.insert()
    assert state(limiter) == (2, -3, True, False)
    limiter.insert()  # size reaches minsize: avail += 2
    assert state(limiter) == (3, -1, True, False)  # sampling needs avail > -tolerance = -1
    limiter.insert()
    assert state(limiter) == (4, 1, True, True)
    limiter.insert()  # inserting needs avail < tolerance * samples_per_insert = 2
    assert state(limiter) == (5, 3, False, True)
    for _ in range(3):
        limiter.sample()
    assert state(limiter) == (5, 0, True, True)
    limiter.sample()
    assert state(limiter) == (5, -1, True, False)


def test_samples_per_insert_fractional_ratio():
    limiter = limiters.SamplesPerInsert(samples_per_insert=0.5, tolerance=2, minsize=1)
    limiter.insert()  # avail = -1 + 0.5
    assert state(limiter) == (1, -0.5, True, True)
    limiter.insert()
    limiter.insert()
    assert state(limiter) == (3, 0.5, True, True)
    limiter.insert()
    limiter.insert()  # avail = 1.5: not below tolerance * 0.5 = 1
    assert state(limiter) == (5, 1.5, False, True)
    for _ in range(3):
        limiter.sample()
    assert state(limiter) == (5, -1.5, True, True)
    limiter.sample()  # avail = -2.5: not above -tolerance = -2
    assert state(limiter) == (5, -2.5, True, False)


def test_non_positive_ratio_disables_limits():
    limiter = limiters.SamplesPerInsert(samples_per_insert=0, tolerance=1, minsize=2)
    limiter.insert()
    assert state(limiter) == (1, -2, True, False)  # minsize still gates sampling
    limiter.insert()
    for _ in range(10):
        limiter.sample()
    assert limiter.want_insert() and limiter.want_sample()


def test_save_and_load_round_trip():
    limiter = limiters.SamplesPerInsert(2, 1, 3)
    for _ in range(4):
        limiter.insert()
    limiter.sample()
    data = limiter.save()
    assert data == {'size': 4, 'avail': 0}
    other = limiters.SamplesPerInsert(2, 1, 3)
    other.load(data)
    assert state(other) == state(limiter)


def test_negative_minsize_is_rejected():
    with pytest.raises(ValueError, match='minsize=-1'):
        limiters.SamplesPerInsert(1, 1, -1)


def test_wait_returns_immediately_when_ready():
    assert limiters.wait(lambda: True, 'never printed') == 0


def test_wait_blocks_until_predicate_and_notifies(capsys):
    calls = itertools.count()
    duration = limiters.wait(
        lambda: next(calls) >= 8, 'Waiting for inserts', sleep=0.01, notify=0.02
    )
    assert next(calls) == 9  # the predicate was polled until it held
    assert 0.05 < duration < 2
    out = capsys.readouterr().out
    assert 'Waiting for inserts' in out
