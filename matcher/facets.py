"""Listing facts as columns aligned with index positions, so hard filters are array operations.

Availability uses a weekly bitmap per listing (15-minute slots in the expert's own zone): for a
moment in time each distinct zone is converted once, then every listing's slot bit is read in
one vectorised step, which keeps "who is free now" cheap for a million listings.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray

from matcher.listing import Listing

SLOT_MINUTES = 15
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
SLOTS_PER_WEEK = 7 * SLOTS_PER_DAY
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRICING_MODES = ("free", "per_session", "per_minute")


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def weekly_slots(hours: Mapping[str, Sequence[tuple[int, int]]]) -> NDArray[np.bool_]:
    """15-minute slots of the week (Monday 00:00 first) that fall within `hours`."""
    slots = np.zeros(SLOTS_PER_WEEK, dtype=bool)
    for day, ranges in hours.items():
        if day not in _WEEKDAYS:
            continue
        base = _WEEKDAYS.index(day) * SLOTS_PER_DAY
        for start, end in ranges:
            first = -(-start // SLOT_MINUTES)  # a slot counts when it starts inside the range
            last = -(-end // SLOT_MINUTES)
            slots[base + first : base + last] = True
    return slots


def next_opening(
    hours: Mapping[str, Sequence[tuple[int, int]]], zone: str, after: datetime
) -> datetime | None:
    """The first 15-minute slot at or after `after` that `hours` cover, within a week (DST-aware)."""
    slots = weekly_slots(hours)
    if not slots.any():
        return None
    tz = _zone(zone)
    local = after.astimezone(tz)
    minute = local.hour * 60 + local.minute
    start_of_slot = local.replace(minute=0, second=0, microsecond=0) + timedelta(
        minutes=(minute % 60) // SLOT_MINUTES * SLOT_MINUTES
    )
    # Walk wall-clock slots, re-localising each: a DST jump moves the clock, not the hours.
    for step in range(SLOTS_PER_WEEK + 1):
        candidate = (start_of_slot.replace(tzinfo=None) + timedelta(minutes=step * SLOT_MINUTES)).replace(
            tzinfo=tz
        )
        index = candidate.weekday() * SLOTS_PER_DAY + (candidate.hour * 60 + candidate.minute) // SLOT_MINUTES
        if slots[index]:
            return max(candidate, after.astimezone(tz))
    return None


# Column name → (dtype, fill value, per-row width or None).
_COLUMNS: dict[str, tuple[type, int, int | None]] = {
    "online": (np.bool_, 0, None),
    "busy": (np.bool_, 0, None),
    "zone": (np.int32, 0, None),
    "slots": (np.uint8, 0, SLOTS_PER_WEEK // 8),
    "category_bits": (np.uint32, 0, None),
    "mode": (np.int8, 0, None),
    "price": (np.int64, 0, None),
    "currency": (np.int32, 0, None),
    "rating_count": (np.int32, 0, None),
    "rating_total": (np.int64, 0, None),
    "accepted": (np.int32, 0, None),
    "answered": (np.int32, 0, None),
    "kept": (np.int32, 0, None),
    "no_shows": (np.int32, 0, None),
    "business": (np.int32, -1, None),
}


def _grown(old: NDArray[np.generic], capacity: int, fill: int) -> NDArray[np.generic]:
    new = np.full((capacity, *old.shape[1:]), fill, dtype=old.dtype)
    new[: old.shape[0]] = old
    return new


class Facets:
    """Grows with the index: row i describes index position i (tombstones keep stale rows)."""

    def __init__(self, categories: Collection[str], capacity: int = 1024) -> None:
        self.category_names = list(categories)
        self.zones: list[str] = []
        self.currencies: list[str] = []
        self.businesses: list[str] = []
        self.ids: list[str] = []
        self._capacity = capacity
        self._columns: dict[str, NDArray[np.generic]] = {
            name: np.full((capacity,) if width is None else (capacity, width), fill, dtype=dtype)
            for name, (dtype, fill, width) in _COLUMNS.items()
        }
        self._speaks: dict[str, NDArray[np.bool_]] = {}
        self._names_of_bits: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def languages(self) -> list[str]:
        return list(self._speaks)

    def _ensure(self, position: int) -> None:
        if position < self._capacity:
            return
        capacity = max(position + 1, self._capacity * 2)
        for name, (_, fill, _) in _COLUMNS.items():
            self._columns[name] = _grown(self._columns[name], capacity, fill)
        for language, column in self._speaks.items():
            self._speaks[language] = _grown(column, capacity, 0)  # type: ignore[assignment]
        self._capacity = capacity

    def extend_to(self, rows: int) -> None:
        """Make room for `rows` rows; new rows keep the column defaults."""
        if rows > 0:
            self._ensure(rows - 1)
        self.ids.extend([""] * (rows - len(self.ids)))

    @staticmethod
    def _code(table: list[str], value: str) -> int:
        if value not in table:
            table.append(value)
        return table.index(value)

    def set(self, position: int, listing: Listing) -> None:
        self._ensure(position)
        while len(self.ids) <= position:
            self.ids.append("")
        self.ids[position] = listing.id
        c = self._columns
        c["online"][position] = listing.online
        c["busy"][position] = listing.busy
        c["zone"][position] = self._code(self.zones, listing.timezone)
        c["slots"][position] = np.packbits(weekly_slots(listing.hours), bitorder="little")
        c["category_bits"][position] = sum(
            1 << self.category_names.index(name) for name in listing.categories if name in self.category_names
        )
        for column in self._speaks.values():
            column[position] = False
        for language in listing.languages:
            if language not in self._speaks:
                self._speaks[language] = np.zeros(self._capacity, dtype=bool)
            self._speaks[language][position] = True
        c["mode"][position] = PRICING_MODES.index(listing.pricing_mode)
        c["price"][position] = listing.price_amount
        c["currency"][position] = self._code(self.currencies, listing.currency)
        c["rating_count"][position] = listing.rating_count
        c["rating_total"][position] = listing.rating_total
        c["accepted"][position] = listing.offers_accepted
        c["answered"][position] = listing.offers_answered
        c["kept"][position] = listing.sessions_kept
        c["no_shows"][position] = listing.no_shows
        business = listing.business_id
        c["business"][position] = -1 if business is None else self._code(self.businesses, business)

    # ------------------------------------------------------------------ filters

    def open_at(self, moment: datetime) -> NDArray[np.bool_]:
        """Rows whose weekly hours cover `moment` in their own zone."""
        rows = len(self)
        zone_slot = np.empty(len(self.zones), dtype=np.int64)
        for i, name in enumerate(self.zones):
            local = moment.astimezone(_zone(name))
            zone_slot[i] = local.weekday() * SLOTS_PER_DAY + (local.hour * 60 + local.minute) // SLOT_MINUTES
        slot = zone_slot[self._columns["zone"][:rows]]
        byte = self._columns["slots"][np.arange(rows), slot >> 3]
        open_now: NDArray[np.bool_] = ((byte >> (slot & 7).astype(np.uint8)) & 1).astype(bool)
        return open_now

    def speaks(self, language: str) -> NDArray[np.bool_]:
        column = self._speaks.get(language)
        return np.zeros(len(self), dtype=bool) if column is None else column[: len(self)].copy()

    def in_business(self, business_id: str) -> NDArray[np.bool_]:
        if business_id not in self.businesses:
            return np.zeros(len(self), dtype=bool)
        ours: NDArray[np.bool_] = self._columns["business"][: len(self)] == self.businesses.index(business_id)
        return ours

    def column(self, name: str) -> NDArray[np.generic]:
        return self._columns[name][: len(self)]

    def categories_of(self, position: int) -> list[str]:
        bits = int(self._columns["category_bits"][position])
        names = self._names_of_bits.get(bits)
        if names is None:  # a handful of combinations, asked for by each request's neighbours
            names = self._names_of_bits[bits] = [
                name for i, name in enumerate(self.category_names) if bits >> i & 1
            ]
        return list(names)

    def languages_of(self, position: int) -> list[str]:
        return [language for language, column in self._speaks.items() if column[position]]
