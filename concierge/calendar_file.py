"""A calendar file (.ics) for one appointment, in the zone of the person who receives it.

DTSTART and DTEND carry the local wall-clock time with the zone's TZID, and the file carries
that zone's VTIMEZONE (its offsets and DST switches around the appointment), so any calendar
shows the right local time, including on the days the clocks change, without trusting its own
copy of the zone database. Pure: bytes in, bytes out.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event, Timezone, vCalAddress, vText

PRODUCT_ID = "-//Concierge//Appointments//EN"
ALARM_BEFORE = timedelta(minutes=10)
# VTIMEZONE observances for this many days either side of the appointment: enough for any
# calendar to place it, small enough to keep the file short.
_ZONE_MARGIN = timedelta(days=400)


def ics_for(
    *,
    uid: str,
    summary: str,
    description: str,
    start: datetime,
    end: datetime,
    zone: str,
    url: str | None,
    organizer_name: str | None,
    sequence: int = 0,
    cancelled: bool = False,
) -> bytes:
    """One VEVENT: METHOD:PUBLISH, or CANCEL (same uid, a higher `sequence`) when cancelled.

    A rescheduled appointment keeps its `uid` and raises `sequence`, so calendars update the
    entry they have instead of adding a second one."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware datetimes")
    if end <= start:
        raise ValueError("end must be after start")
    if sequence < 0:
        raise ValueError("sequence cannot be negative")
    local = ZoneInfo(zone)  # an unknown zone raises here, not in someone's calendar
    calendar = Calendar()
    calendar.add("prodid", PRODUCT_ID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "CANCEL" if cancelled else "PUBLISH")
    calendar.add_component(
        Timezone.from_tzid(
            zone,
            first_date=_day(start - _ZONE_MARGIN, local),
            last_date=_day(end + _ZONE_MARGIN, local),
        )
    )
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", datetime.now(UTC))
    event.add("sequence", sequence)
    event.add("dtstart", _wall_time(start, local))
    event.add("dtend", _wall_time(end, local))
    event.add("summary", summary)
    event.add("description", description)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    if url is not None:
        event.add("url", url)
        event.add("location", url)  # what most calendars show and make clickable
    if organizer_name is not None:
        organizer = vCalAddress("mailto:noreply@invalid")
        organizer.params["cn"] = vText(organizer_name)
        event.add("organizer", organizer)
    if not cancelled:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", summary)
        alarm.add("trigger", -ALARM_BEFORE)
        event.add_component(alarm)
    calendar.add_component(event)
    return bytes(calendar.to_ical())


def _wall_time(moment: datetime, zone: ZoneInfo) -> datetime:
    """Local time with the zone, except in the hour that repeats when clocks go back: a local
    time there means its first occurrence to a calendar, so the second is written in UTC."""
    local = moment.astimezone(zone)
    if local.fold and local.replace(fold=0).utcoffset() != local.utcoffset():
        return moment.astimezone(UTC)
    return local


def _day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()
