"""An expert's weekly hours in their own time zone: `{"mon": ["09:00-12:00", "14:00-18:00"], ...}`.

Ranges are local wall-clock times on one day; a range never crosses midnight (write
"22:00-24:00" on one day and "00:00-02:00" on the next), which keeps daylight-saving
arithmetic in one place: the matcher's availability (`matcher.facets`) converts an instant to
the expert's zone first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True, slots=True, order=True)
class TimeRange:
    """Minutes since local midnight, `start` inclusive, `end` exclusive; `end` may be 1440."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        match = _RANGE.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"time range must look like 09:00-17:30, got {text!r}")
        sh, sm, eh, em = (int(part) for part in match.groups())
        if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em != 0):
            raise ValueError(f"{text!r} is not a valid time of day range")
        start, end = sh * 60 + sm, eh * 60 + em
        if end <= start:
            raise ValueError(f"{text!r} ends before it starts; split ranges that cross midnight")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    days: Mapping[str, tuple[TimeRange, ...]]

    @classmethod
    def parse(cls, raw: object) -> WeeklyHours:
        if not isinstance(raw, Mapping):
            raise ValueError("hours must be an object keyed by mon..sun")
        days: dict[str, tuple[TimeRange, ...]] = {}
        for day, ranges in raw.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r}; use one of {', '.join(WEEKDAYS)}")
            if not isinstance(ranges, list):
                raise ValueError(f"hours for {day} must be a list of ranges")
            parsed = sorted(TimeRange.parse(item) for item in ranges)
            for earlier, later in pairwise(parsed):
                if later.start < earlier.end:
                    raise ValueError(f"hours for {day} overlap: {earlier} and {later}")
            if parsed:
                days[day] = tuple(parsed)
        return cls({day: days[day] for day in WEEKDAYS if day in days})

    def to_json(self) -> dict[str, list[str]]:
        return {day: [str(r) for r in ranges] for day, ranges in self.days.items()}
