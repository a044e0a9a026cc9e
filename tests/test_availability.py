"""Availability in the expert's zone, shown in the customer's: DST days, odd offsets, buffers, limits."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concierge.availability import (
    Booked,
    Rules,
    Unavailable,
    check,
    free_slots,
    parse_exceptions,
    spread,
)
from concierge.hours import WeeklyHours

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def rules(zone: str, hours: dict[str, list[str]], **kw: object) -> Rules:
    return Rules(
        hours=WeeklyHours.parse(hours),
        zone=ZoneInfo(zone),
        length=kw.pop("length", timedelta(minutes=60)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def local(slots: list[datetime], zone: str) -> list[str]:
    return [s.astimezone(ZoneInfo(zone)).strftime("%H:%M%z") for s in slots]


def day_window(day: date, zone: str) -> tuple[datetime, datetime]:
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    nxt = day + timedelta(days=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)


# 2027-03-28: Europe/Berlin springs forward at 02:00 → 03:00 (a Sunday).
def test_spring_forward_in_berlin_skips_the_missing_hour_and_keeps_wall_clock_hours() -> None:
    r = rules("Europe/Berlin", {"sun": ["01:00-05:00"]}, length=timedelta(minutes=60))
    slots = free_slots(r, [], *day_window(date(2027, 3, 28), "Europe/Berlin"), LONG_AGO)
    shown = local(slots, "Europe/Berlin")
    # Nothing starts in 02:00-02:59 (it does not exist); 01:00-01:45 starts end after the jump,
    # so an hour-long call from 01:30 ends at 03:30 on the clock: still inside 05:00.
    assert not any(s.startswith("02:") for s in shown)
    assert shown[0] == "01:00+0100"
    assert "03:00+0200" in shown
    assert shown[-1] == "04:00+0200"  # 04:00 + 1 h = 05:00 on the clock: the last start
    assert all((b - a) >= timedelta(minutes=15) for a, b in itertools.pairwise(slots))


# 2026-11-01: America/New_York falls back at 02:00 → 01:00 (a Sunday).
def test_fall_back_in_new_york_offers_the_repeated_hour_twice() -> None:
    r = rules("America/New_York", {"sun": ["00:00-03:00"]}, length=timedelta(minutes=30))
    slots = free_slots(r, [], *day_window(date(2026, 11, 1), "America/New_York"), LONG_AGO)
    shown = local(slots, "America/New_York")
    assert shown.count("01:30-0400") == 1
    assert shown.count("01:30-0500") == 1
    assert len(slots) == len(set(slots))
    assert slots == sorted(slots)
    # The day has 25 hours: 3 wall-clock hours of half-hour calls in 15-minute steps, plus the
    # repeated hour's four extra starts. A start whose end crosses back (01:45 EDT + 30 min is
    # 01:15 EST) still ends before 03:00 on the clock.
    assert len(slots) == 11 + 4


def test_half_and_three_quarter_hour_zones_convert_exactly() -> None:
    kathmandu = rules("Asia/Kathmandu", {"mon": ["09:00-10:00"]}, length=timedelta(minutes=30))
    slots = free_slots(kathmandu, [], *day_window(date(2026, 11, 30), "Asia/Kathmandu"), LONG_AGO)
    assert [s.strftime("%H:%M") for s in slots] == ["03:15", "03:30", "03:45"]  # UTC+05:45
    # Shown to a customer in Adelaide (+10:30 in summer) and St John's (-03:30).
    assert local(slots[:1], "Australia/Adelaide") == ["13:45+1030"]
    assert local(slots[:1], "America/St_Johns") == ["23:45-0330"]


# 2027-04-04: Australia/Adelaide ends daylight saving at 03:00 → 02:00 (+10:30 → +09:30).
def test_adelaide_autumn_change_with_a_half_hour_offset() -> None:
    r = rules("Australia/Adelaide", {"sun": ["09:00-10:00"]}, length=timedelta(minutes=60))
    before = free_slots(r, [], *day_window(date(2027, 3, 28), "Australia/Adelaide"), LONG_AGO)
    after = free_slots(r, [], *day_window(date(2027, 4, 4), "Australia/Adelaide"), LONG_AGO)
    assert local(before, "Australia/Adelaide") == ["09:00+1030"]
    assert local(after, "Australia/Adelaide") == ["09:00+0930"]
    assert after[0] - before[0] == timedelta(days=7, hours=1)  # same wall clock, one more real hour


def test_buffers_keep_a_gap_around_booked_sessions() -> None:
    r = rules(
        "UTC",
        {"mon": ["09:00-13:00"]},
        length=timedelta(minutes=60),
        buffer_before=timedelta(minutes=15),
        buffer_after=timedelta(minutes=30),
    )
    booked = [Booked(datetime(2026, 11, 30, 10, tzinfo=UTC), datetime(2026, 11, 30, 11, tzinfo=UTC))]
    slots = free_slots(r, booked, *day_window(date(2026, 11, 30), "UTC"), LONG_AGO)
    assert local(slots, "UTC") == ["11:30+0000", "11:45+0000", "12:00+0000"]
    at_nine = datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert check(r, booked, at_nine, LONG_AGO) is Unavailable.TAKEN  # ends 10:00: no gap before
    assert check(r, booked, at_nine - timedelta(minutes=30), LONG_AGO) is Unavailable.OUTSIDE_HOURS


def test_daily_maximum_is_counted_in_the_experts_own_day() -> None:
    # 23:00 UTC Monday is already Tuesday in Tokyo: it counts against Tuesday there.
    r = rules("Asia/Tokyo", {"tue": ["08:00-12:00"]}, length=timedelta(minutes=30), max_per_day=1)
    monday_late_utc = datetime(2026, 11, 30, 23, tzinfo=UTC)  # Tue 08:00 in Tokyo
    booked = [Booked(monday_late_utc, monday_late_utc + timedelta(minutes=30))]
    later = monday_late_utc + timedelta(hours=2)
    assert check(r, booked, later, LONG_AGO) is Unavailable.DAY_FULL
    assert free_slots(r, booked, *day_window(date(2026, 12, 1), "Asia/Tokyo"), LONG_AGO) == []


def test_minimum_notice_and_exceptions() -> None:
    exceptions = parse_exceptions({"2026-12-24": [], "2026-12-27": ["10:00-11:00"]})
    r = rules(
        "Europe/Paris",
        {"thu": ["09:00-17:00"], "sun": []},
        length=timedelta(minutes=30),
        exceptions=exceptions,
        min_notice=timedelta(hours=2),
    )
    assert free_slots(r, [], *day_window(date(2026, 12, 24), "Europe/Paris"), LONG_AGO) == []  # day off
    sunday = free_slots(r, [], *day_window(date(2026, 12, 27), "Europe/Paris"), LONG_AGO)
    assert local(sunday, "Europe/Paris") == ["10:00+0100", "10:15+0100", "10:30+0100"]  # extra hours
    now = datetime(2026, 12, 31, 8, tzinfo=UTC)  # 09:00 in Paris
    first = free_slots(r, [], now, now + timedelta(days=1), now, limit=1)
    assert local(first, "Europe/Paris") == ["11:00+0100"]
    assert check(r, [], now + timedelta(minutes=60), now) is Unavailable.TOO_SOON


@pytest.mark.parametrize(
    "raw",
    [{"24-12-2026": []}, {"2026-12-24": ["10:00-09:00"]}, {"2026-12-24": "10:00-11:00"}, ["2026-12-24"]],
)
def test_bad_exceptions_are_refused(raw: object) -> None:
    with pytest.raises(ValueError, match=r"date|must|ends before"):
        parse_exceptions(raw)


def test_spread_puts_the_wanted_time_first_and_keeps_choices_apart() -> None:
    base = datetime(2026, 12, 1, 9, tzinfo=UTC)
    slots = [base + timedelta(minutes=15 * i) for i in range(20)]
    wanted = base + timedelta(hours=2)
    chosen = spread(slots, wanted, 3, timedelta(minutes=60))
    assert wanted in chosen
    assert len(chosen) == 3
    assert all(abs(a - b) >= timedelta(minutes=60) for a in chosen for b in chosen if a != b)


ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Australia/Adelaide", "Pacific/Chatham"]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    day=st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
    start_quarter=st.integers(min_value=0, max_value=90),
    length_quarters=st.integers(min_value=1, max_value=8),
)
def test_every_slot_starts_and_ends_inside_the_hours_on_the_experts_clock(
    zone: str, day: date, start_quarter: int, length_quarters: int
) -> None:
    start = start_quarter * 15
    end = min(start + 6 * 60, 24 * 60)
    span = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day.weekday()]
    length = timedelta(minutes=15 * length_quarters)
    r = rules(zone, {weekday: [span]}, length=length)
    tz = ZoneInfo(zone)
    for slot in free_slots(r, [], *day_window(day, zone), LONG_AGO):
        begin = slot.astimezone(tz)
        finish = (slot + length).astimezone(tz)
        assert begin.date() == day
        assert start <= begin.hour * 60 + begin.minute
        finish_minutes = (finish.date() - day).days * 1440 + finish.hour * 60 + finish.minute
        assert finish_minutes <= end
        assert check(r, [], slot, LONG_AGO) is None


def _exact_starts(r: Rules, day: date) -> list[datetime]:
    """The slow, obviously right way: every wall-clock start turned into instants one by one."""
    from concierge.availability import _instants, _wall_minutes

    found = []
    for span in r.ranges_on(day):
        minute = -(-span.start // 15) * 15
        while minute < span.end:
            found += [
                i
                for i in _instants(day, minute, r.zone)
                if _wall_minutes(i + r.length, day, r.zone) <= span.end
            ]
            minute += 15
    return sorted(found)


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from([*ZONES, "Europe/London", "America/Santiago", "Australia/Lord_Howe", "UTC"]),
    day=st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
    start_quarter=st.integers(min_value=0, max_value=95),
    hours=st.integers(min_value=1, max_value=24),
    length_quarters=st.integers(min_value=1, max_value=32),
)
def test_the_fast_path_gives_the_same_starts_as_converting_each_one(
    zone: str, day: date, start_quarter: int, hours: int, length_quarters: int
) -> None:
    start = start_quarter * 15
    end = min(start + hours * 60, 24 * 60)
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day.weekday()]
    span = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    r = rules(zone, {weekday: [span]}, length=timedelta(minutes=15 * length_quarters))
    window = day_window(day, zone)
    fast = free_slots(r, [], *window, LONG_AGO)
    assert fast == [s for s in _exact_starts(r, day) if window[0] <= s < window[1]]
    for slot in fast:
        assert check(r, [], slot, LONG_AGO) is None
        assert check(r, [], slot + timedelta(minutes=5), LONG_AGO) is Unavailable.OUTSIDE_HOURS
