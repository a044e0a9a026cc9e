"""Calendar files read back with icalendar: the local times a calendar shows on the days clocks
change and in zones with odd offsets, the same instants as asked for, and a 10-minute alarm."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import pytest
from icalendar import Calendar, Timezone

from concierge.calendar_file import ics_for


def make(start: datetime, zone: str, minutes: int = 60, **extra: Any) -> Calendar:
    options: dict[str, Any] = {
        "uid": "bk_1@concierge",
        "summary": "Tax help with Ana",
        "description": "Your video session",
        "url": "https://help.example/r/abc",
        "organizer_name": "Concierge",
    } | extra
    data = ics_for(start=start, end=start + timedelta(minutes=minutes), zone=zone, **options)
    return Calendar.from_ical(data)


def event_of(calendar: Calendar) -> Any:
    [event] = calendar.walk("VEVENT")
    return event


def file_zone(calendar: Calendar) -> tzinfo:
    """The zone as the file itself defines it (its VTIMEZONE), not this machine's zone database."""
    [zone] = calendar.walk("VTIMEZONE")
    assert isinstance(zone, Timezone)
    made: tzinfo = zone.to_tz()
    return made


def shown(calendar: Calendar, name: str) -> tuple[str, datetime]:
    """(TZID or 'UTC', the instant a calendar using the file's VTIMEZONE places it at)."""
    prop = event_of(calendar)[name]
    value = prop.dt
    tzid = prop.params.get("TZID")
    if tzid is None:
        assert value.utcoffset() == timedelta(0)
        return "UTC", value.astimezone(UTC)
    wall = value.replace(tzinfo=None)
    return str(tzid), wall.replace(tzinfo=file_zone(calendar)).astimezone(UTC)


def wall(calendar: Calendar, name: str) -> str:
    value = event_of(calendar)[name].dt
    return f"{value:%Y-%m-%d %H:%M}"


@pytest.mark.parametrize(
    ("zone", "start_utc", "local_start", "local_end"),
    [
        # Berlin springs forward at 01:00 UTC on 29 March 2026: 01:30 CET, then 03:30 CEST.
        ("Europe/Berlin", datetime(2026, 3, 29, 0, 30, tzinfo=UTC), "2026-03-29 01:30", "2026-03-29 03:30"),
        # New York springs forward at 07:00 UTC on 8 March 2026.
        ("America/New_York", datetime(2026, 3, 8, 6, 30, tzinfo=UTC), "2026-03-08 01:30", "2026-03-08 03:30"),
        # New York falls back at 06:00 UTC on 1 November 2026: this hour ends at the first 01:30 (EDT).
        (
            "America/New_York",
            datetime(2026, 11, 1, 4, 30, tzinfo=UTC),
            "2026-11-01 00:30",
            "2026-11-01 01:30",
        ),
        ("Asia/Kathmandu", datetime(2026, 6, 1, 4, 0, tzinfo=UTC), "2026-06-01 09:45", "2026-06-01 10:45"),
        # Adelaide: +10:30 in its summer, +09:30 in its winter; forward at 16:30 UTC on 3 October 2026.
        (
            "Australia/Adelaide",
            datetime(2026, 1, 15, 0, 0, tzinfo=UTC),
            "2026-01-15 10:30",
            "2026-01-15 11:30",
        ),
        (
            "Australia/Adelaide",
            datetime(2026, 6, 15, 0, 0, tzinfo=UTC),
            "2026-06-15 09:30",
            "2026-06-15 10:30",
        ),
        (
            "Australia/Adelaide",
            datetime(2026, 10, 3, 16, 0, tzinfo=UTC),
            "2026-10-04 01:30",
            "2026-10-04 03:30",
        ),
    ],
)
def test_local_times_and_instants(zone: str, start_utc: datetime, local_start: str, local_end: str) -> None:
    calendar = make(start_utc, zone)
    assert (wall(calendar, "DTSTART"), wall(calendar, "DTEND")) == (local_start, local_end)
    assert shown(calendar, "DTSTART") == (zone, start_utc)
    assert shown(calendar, "DTEND") == (zone, start_utc + timedelta(hours=1))
    assert str(calendar["METHOD"]) == "PUBLISH"
    [vtimezone] = calendar.walk("VTIMEZONE")
    assert str(vtimezone["TZID"]) == zone


def test_the_repeated_hour_when_clocks_go_back_keeps_the_right_instant() -> None:
    # Berlin, 25 October 2026: 02:00-03:00 happens twice; 01:30 UTC is the second 02:30.
    start = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    calendar = make(start, "Europe/Berlin")
    assert shown(calendar, "DTSTART") == ("Europe/Berlin", start)
    assert wall(calendar, "DTSTART") == "2026-10-25 02:30"
    # Its end, 01:30 UTC, is the second 02:30: a TZID time would mean the first, so it is UTC.
    assert shown(calendar, "DTEND") == ("UTC", start + timedelta(hours=1))


def test_alarm_link_organizer_and_uid() -> None:
    calendar = make(datetime(2026, 5, 4, 8, 0, tzinfo=UTC), "Europe/Berlin", sequence=2)
    event = event_of(calendar)
    [alarm] = event.walk("VALARM")
    assert alarm["TRIGGER"].dt == timedelta(minutes=-10)
    assert str(event["URL"]) == "https://help.example/r/abc"
    assert str(event["UID"]) == "bk_1@concierge"
    assert event["SEQUENCE"] == 2
    assert event["ORGANIZER"].params["CN"] == "Concierge"
    assert str(event["STATUS"]) == "CONFIRMED"


def test_a_cancelled_appointment() -> None:
    calendar = make(
        datetime(2026, 5, 4, 8, 0, tzinfo=UTC), "Asia/Kathmandu", sequence=3, cancelled=True, url=None
    )
    event = event_of(calendar)
    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert event["SEQUENCE"] == 3
    assert event.walk("VALARM") == []
    assert "URL" not in event


@pytest.mark.parametrize(
    ("problem", "change"),
    [
        ("naive", {"start": datetime(2026, 5, 4, 8, 0)}),
        ("backwards", {"end": datetime(2026, 5, 4, 7, 0, tzinfo=UTC)}),
        ("zone", {"zone": "Mars/Olympus_Mons"}),
    ],
)
def test_bad_input_is_refused(problem: str, change: dict[str, Any]) -> None:
    options: dict[str, Any] = {
        "uid": "u",
        "summary": "s",
        "description": "d",
        "start": datetime(2026, 5, 4, 8, 0, tzinfo=UTC),
        "end": datetime(2026, 5, 4, 9, 0, tzinfo=UTC),
        "zone": "Europe/Berlin",
        "url": None,
        "organizer_name": None,
    } | change
    with pytest.raises((ValueError, KeyError)):
        ics_for(**options)
