"""The clocks: aware UTC instants only; the fake one moves only when told, and fits the
`Callable[[], datetime]` clocks the older parts take."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from concierge.clock import Clock, FakeClock, SystemClock


def test_the_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    assert clock.now() == clock.now()
    clock.advance(timedelta(minutes=90))
    assert clock.now() == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    clock.set(datetime(2026, 1, 1, tzinfo=UTC))  # backwards only on purpose
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="naive"):
        clock.set(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        FakeClock(datetime(2026, 1, 1))


def older_part(clock: Callable[[], datetime]) -> datetime:
    """How Reviews, MoneyBack, Cashier and Concierge take their clock."""
    return clock()


def test_the_system_clock_is_aware_utc_and_both_fit_the_older_callable_clocks() -> None:
    before = datetime.now(UTC)
    system: Clock = SystemClock()
    now = system.now()
    assert now.tzinfo is not None
    assert before <= now <= datetime.now(UTC)
    assert before <= older_part(system.now) <= datetime.now(UTC)
    fake = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    fake.advance(timedelta(days=1))
    assert older_part(fake.now) == datetime(2026, 1, 2, tzinfo=UTC)
