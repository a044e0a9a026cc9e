"""When an expert can be booked: weekly hours and date exceptions in the expert's own zone, minus
booked sessions with their buffers, the daily maximum and the minimum notice.

Pure arithmetic on aware datetimes, so daylight-saving changes are handled in one place: a slot
is a wall-clock time on a local date, turned into an instant only if that wall-clock time exists
(the hour skipped in spring has no slots; the hour repeated in autumn has two of each), and it
must end, on the wall clock, inside the range it started in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from concierge.hours import WEEKDAYS, TimeRange, WeeklyHours

STEP = timedelta(minutes=15)  # slots start on the quarter hour of the expert's clock


def zone_of(name: str) -> ZoneInfo:
    """The zone named, or UTC for a name the zone database does not know (never raises)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class Unavailable(StrEnum):
    """Why a start time cannot be booked, for the person who asked for it."""

    OUTSIDE_HOURS = "outside_hours"
    TOO_SOON = "too_soon"
    TAKEN = "taken"
    DAY_FULL = "day_full"


@dataclass(frozen=True, slots=True)
class Rules:
    hours: WeeklyHours
    zone: ZoneInfo
    length: timedelta
    # A date listed here replaces that day's weekly hours: () is a day off, ranges are the day's hours.
    exceptions: Mapping[date, tuple[TimeRange, ...]] = field(default_factory=dict)
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    max_per_day: int | None = None
    min_notice: timedelta = timedelta(0)

    @property
    def gap(self) -> timedelta:
        # Sessions are the only busy times here, so the buffer after one and the buffer before the
        # next both sit in the same gap: it is as long as the longer of the two.
        return max(self.buffer_before, self.buffer_after)

    def ranges_on(self, day: date) -> tuple[TimeRange, ...]:
        if day in self.exceptions:
            return self.exceptions[day]
        return self.hours.days.get(WEEKDAYS[day.weekday()], ())


@dataclass(frozen=True, slots=True)
class Booked:
    start: datetime
    end: datetime


def _instants(day: date, minutes: int, zone: ZoneInfo) -> list[datetime]:
    """The instants at which the wall clock in `zone` shows `minutes` past midnight on `day`:
    none in a spring gap, two in an autumn overlap."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minutes)
    found = []
    for fold in (0, 1):
        aware = naive.replace(tzinfo=zone, fold=fold)
        instant = aware.astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == naive and instant not in found:
            found.append(instant)
    return found


def _wall_minutes(instant: datetime, day: date, zone: ZoneInfo) -> int:
    """Minutes after `day`'s local midnight that the wall clock shows at `instant` (1440+ next day)."""
    local = instant.astimezone(zone).replace(tzinfo=None)
    return int((local - datetime.combine(day, time())).total_seconds() // 60)


def _steady_offset(day: date, zone: ZoneInfo) -> timedelta | None:
    """The zone's UTC offset all through `day` (and the next day's first hours, where a long
    slot may end), or None on a day the clocks change: those take the slow, exact path."""
    midnight = datetime.combine(day, time())
    offsets = {zone.utcoffset(midnight + timedelta(hours=h)) for h in (0, 12, 24, 36)}
    if len(offsets) != 1:
        return None
    return offsets.pop()


def _day_starts(rules: Rules, day: date) -> list[datetime]:
    """The day's bookable starts in the expert's hours, as UTC instants, in order."""
    zone, step = rules.zone, int(STEP.total_seconds() // 60)
    length = int(rules.length.total_seconds() // 60)
    offset = _steady_offset(day, zone)
    midnight = datetime.combine(day, time(), tzinfo=UTC)
    found: list[datetime] = []
    for span in rules.ranges_on(day):
        minute = -(-span.start // step) * step
        while minute < span.end:
            if offset is not None:  # most days: wall clock = UTC + a fixed offset
                if minute + length <= span.end:
                    found.append(midnight + timedelta(minutes=minute) - offset)
            else:
                for instant in _instants(day, minute, zone):
                    if _wall_minutes(instant + rules.length, day, zone) <= span.end:
                        found.append(instant)
            minute += step
    return sorted(found)


def candidates(rules: Rules, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every start inside the expert's hours between `start` and `end`, in order, ignoring bookings."""
    zone = rules.zone
    day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last_day:
        for instant in _day_starts(rules, day):
            if start <= instant < end:
                yield instant
        day += timedelta(days=1)


def _in_hours(rules: Rules, at: datetime) -> bool:
    """Whether `at` is one of the starts `candidates` would give, without listing a whole day:
    only the local day it falls on (and, for an autumn overlap, the day before) is looked at."""
    local_day = at.astimezone(rules.zone).date()
    return any(at in _day_starts(rules, day) for day in (local_day, local_day - timedelta(days=1)))


def check(rules: Rules, booked: Sequence[Booked], at: datetime, now: datetime) -> Unavailable | None:
    """None when a session starting `at` can be booked; otherwise why not."""
    at = at.astimezone(UTC)
    if at < now + rules.min_notice:
        return Unavailable.TOO_SOON
    if not _in_hours(rules, at):
        return Unavailable.OUTSIDE_HOURS
    return _conflict(rules, booked, at)


def _conflict(rules: Rules, booked: Sequence[Booked], at: datetime) -> Unavailable | None:
    end = at + rules.length
    if any(at < b.end + rules.gap and b.start < end + rules.gap for b in booked):
        return Unavailable.TAKEN
    if rules.max_per_day is not None:
        day = at.astimezone(rules.zone).date()
        same_day = sum(1 for b in booked if b.start.astimezone(rules.zone).date() == day)
        if same_day >= rules.max_per_day:
            return Unavailable.DAY_FULL
    return None


def free_slots(
    rules: Rules,
    booked: Sequence[Booked],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    limit: int | None = None,
) -> list[datetime]:
    """Bookable starts between `start` and `end` (UTC instants, earliest first)."""
    slots: list[datetime] = []
    for instant in candidates(rules, max(start, now + rules.min_notice), end):
        if _conflict(rules, booked, instant) is None:
            slots.append(instant)
            if limit is not None and len(slots) >= limit:
                break
    return slots


def spread(
    slots: Sequence[datetime], wanted: datetime | None, count: int, apart: timedelta
) -> list[datetime]:
    """A few slots worth offering: the wanted time when free, then the nearest ones, at least
    `apart` from each other so the choice is not four starts a quarter hour apart."""
    ordered = sorted(slots, key=lambda s: (abs((s - wanted).total_seconds()), s)) if wanted else list(slots)
    chosen: list[datetime] = []
    for slot in ordered:
        if all(abs(slot - other) >= apart for other in chosen):
            chosen.append(slot)
            if len(chosen) == count:
                break
    return sorted(chosen)


def parse_exceptions(raw: object) -> dict[date, tuple[TimeRange, ...]]:
    """`{"2026-12-24": [], "2026-12-27": ["10:00-12:00"]}`: days off and days with other hours."""
    if not isinstance(raw, Mapping):
        raise ValueError("exceptions must be an object keyed by date (YYYY-MM-DD)")
    parsed: dict[date, tuple[TimeRange, ...]] = {}
    for key, ranges in raw.items():
        try:
            day = date.fromisoformat(str(key))
        except ValueError:
            raise ValueError(f"{key!r} is not a date like 2026-12-24") from None
        if not isinstance(ranges, list):
            raise ValueError(f"hours for {key} must be a list of ranges")
        hours = WeeklyHours.parse({"mon": ranges})  # the same checks as weekly hours: no overlaps
        parsed[day] = hours.days.get("mon", ())
    return parsed


def exceptions_to_json(exceptions: Mapping[date, tuple[TimeRange, ...]]) -> dict[str, list[str]]:
    return {day.isoformat(): [str(r) for r in ranges] for day, ranges in sorted(exceptions.items())}
