"""Wall-clock timers and the train-ratio schedule."""

import time
import types

import elements
import pytest

from embodied.core import clock

# numpy-only and version-sensitive: also runs under the reference pin in CI.
pytestmark = pytest.mark.pinned


@pytest.fixture
def fake_time(monkeypatch):
    """Replace the clock module's time source with a settable one."""
    now = [1000.0]
    monkeypatch.setattr(clock, 'time', types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


@pytest.mark.parametrize('every', [0, -1, -0.5])
def test_non_positive_period_never_fires(fake_time, every):
    should = clock.LocalClock(every, first=True)
    results = []
    for _ in range(5):
        results.append(should())
        fake_time[0] += 100
    assert results == [False] * 5


def test_first_call_and_period(fake_time):
    should = clock.LocalClock(10)
    calls = []
    for delta in [0, 5, 4.9, 0.1, 3, 7, 25, 1]:
        fake_time[0] += delta
        calls.append(should())
    # First call returns `first` (False by default) and starts the period; later calls fire
    # once 10 s have passed since the last True: at t=10, t=20 and t=45.
    assert calls == [False, False, False, True, False, True, True, False]
    assert clock.LocalClock(10, first=True)() is True


def test_clock_accepts_and_ignores_step(fake_time):
    should = clock.LocalClock(1, first=True)
    assert should(123) is True
    fake_time[0] += 1
    assert should(step=0) is True


def test_clock_uses_real_time():
    should = clock.LocalClock(0.05)
    assert not should()
    assert not should()
    time.sleep(0.06)
    assert should()


def test_ratio_is_elements_ratio_with_spec_semantics():
    assert clock.Ratio is elements.when.Ratio
    # First call returns 1; later ones floor((step - prev) * ratio) and advance prev by n/ratio.
    should = clock.Ratio(0.5)
    assert [should(step) for step in [0, 1, 2, 3, 10]] == [1, 0, 1, 0, 4]
    should = clock.Ratio(1 / 32)
    counts = [should(step) for step in range(0, 200, 10)]
    # prev advances 0 -> 32 (at 40) -> 64 (at 70) -> 96 -> 128 -> 160; at 190 only 30 steps
    # have passed since 160, so no update: 1 + floor(190 / 32) = 6 updates in all.
    assert counts == [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    assert sum(counts) == 6
