"""An expert's booking settings, changed one at a time from any channel with `/schedule`.

Weekly hours stay with the listing (`/edit hours`); these are what the booking rules add:
date exceptions, session length, buffers, a daily maximum, minimum notice, confirmation and
the cancellation policy. Existing bookings keep their time and policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge import availability
from concierge.availability import zone_of
from concierge.errors import NotFound, Refused
from concierge.hours import WEEKDAYS, WeeklyHours
from concierge.model import CancellationPolicy, Expert


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """An expert's booking settings as they stand, for `/schedule`."""

    time_zone: str
    hours: dict[str, list[str]]
    exceptions: dict[str, list[str]]
    booking_minutes: int
    buffer_before: int
    buffer_after: int
    max_per_day: int | None
    min_notice: int
    auto_confirm: bool
    policy: CancellationPolicy


class ScheduleRefused(Refused):
    """A schedule change that cannot be read or is out of range; `reason` names the message."""


def schedule_of(expert: Expert) -> ScheduleView:
    return ScheduleView(
        expert.time_zone,
        dict(expert.hours_json or {}),
        dict(sorted((expert.hours_exceptions or {}).items())),
        expert.booking_minutes,
        expert.buffer_before_minutes,
        expert.buffer_after_minutes,
        expert.max_sessions_per_day,
        expert.min_notice_minutes,
        expert.auto_confirm,
        expert.cancellation_policy,
    )


def _number(text: str, low: int, high: int, code: str) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ScheduleRefused(code, f"give a whole number from {low} to {high}")
    return int(text)


def apply_schedule_command(expert: Expert, words: list[str], today: date, max_minutes: int) -> None:
    """One `/schedule` change, validated; ScheduleRefused names what was wrong.

    off DATE | extra DATE HH:MM-HH:MM | clear DATE | length MIN | buffer BEFORE AFTER | max N|none |
    notice MIN | confirm auto|manual | policy flexible|moderate|strict
    """
    if not words:
        raise ScheduleRefused("usage", "nothing to change")
    verb, args = words[0].lower(), words[1:]
    if verb in {"off", "extra", "clear"}:
        if not args:
            raise ScheduleRefused("date", "give a date like 2026-12-24")
        try:
            day = date.fromisoformat(args[0])
        except ValueError:
            raise ScheduleRefused("date", "give a date like 2026-12-24") from None
        if day < today:
            raise ScheduleRefused("past", "that date has passed")
        exceptions = dict(expert.hours_exceptions or {})
        if verb == "off":
            exceptions[day.isoformat()] = []
        elif verb == "clear":
            exceptions.pop(day.isoformat(), None)
        else:
            weekly = WeeklyHours.parse(expert.hours_json).days.get(WEEKDAYS[day.weekday()], ())
            current = exceptions.get(day.isoformat(), [str(r) for r in weekly])
            try:
                merged = availability.parse_exceptions({day.isoformat(): [*current, *args[1:]]})
            except ValueError as exc:
                raise ScheduleRefused("hours", str(exc)) from None
            if not args[1:]:
                raise ScheduleRefused("hours", "give the extra hours like 10:00-12:00")
            exceptions[day.isoformat()] = [str(r) for r in merged[day]]
        # Past dates are dropped as we go, so the list stays short.
        expert.hours_exceptions = {k: v for k, v in exceptions.items() if date.fromisoformat(k) >= today}
    elif verb == "length" and len(args) == 1:
        expert.booking_minutes = _number(args[0], 15, min(480, max_minutes), "length")
    elif verb == "buffer" and len(args) in (1, 2):
        expert.buffer_before_minutes = _number(args[0], 0, 240, "buffer")
        expert.buffer_after_minutes = _number(args[-1], 0, 240, "buffer")
    elif verb == "max" and len(args) == 1:
        expert.max_sessions_per_day = None if args[0].lower() == "none" else _number(args[0], 1, 48, "max")
    elif verb == "notice" and len(args) == 1:
        expert.min_notice_minutes = _number(args[0], 0, 43200, "notice")
    elif verb == "confirm" and len(args) == 1 and args[0].lower() in {"auto", "manual"}:
        expert.auto_confirm = args[0].lower() == "auto"
    elif verb == "policy" and len(args) == 1 and args[0].lower() in {p.value for p in CancellationPolicy}:
        expert.cancellation_policy = CancellationPolicy(args[0].lower())
    else:
        raise ScheduleRefused("usage", f"cannot read {' '.join(words)[:60]!r}")
    expert.updated_at = datetime.now(UTC)


class ExpertSchedules:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, max_minutes: int, clock: Callable[[], datetime]
    ) -> None:
        self._sessions = sessions
        self._max_minutes = max_minutes  # a booked session cannot be longer than a card hold covers
        self._clock = clock

    async def show(self, expert_id: str) -> ScheduleView:
        async with self._sessions() as db:
            expert = await db.get(Expert, expert_id)
        if expert is None:
            raise NotFound("expert", expert_id)
        return schedule_of(expert)

    async def change(self, expert_id: str, words: list[str]) -> ScheduleView:
        async with self._sessions.begin() as db:
            expert = await db.get(Expert, expert_id)
            if expert is None:
                raise NotFound("expert", expert_id)
            today = self._clock().astimezone(zone_of(expert.time_zone)).date()
            apply_schedule_command(expert, words, today, self._max_minutes)
            return schedule_of(expert)
