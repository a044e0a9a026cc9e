"""Time as the core sees it: the system clock in production, a clock tests move by hand.

Older parts take a `Callable[[], datetime]` (`utcnow` by default); `SystemClock().now` and
`FakeClock(...).now` are such callables, so one clock can drive both kinds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from concierge.model.base import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


class FakeClock:
    """A clock that stands still until told otherwise: due times are reached by `advance`,
    never by sleeping."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards: use set() on purpose")
        self._now += delta
        return self._now

    def set(self, at: datetime) -> None:
        self._now = _aware(at)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: a clock keeps aware UTC instants only")
    return moment.astimezone(UTC)
