"""Reading what people type into a chat: birth dates, prices, hours, language lists.

Pure functions; each returns None (or raises ValueError with a reason) for input it cannot
read, so the dialogue can ask again instead of guessing.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from concierge.hours import WEEKDAYS, TimeRange
from concierge.money import check_currency, minor_unit_digits

_ISO = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_DAY_FIRST = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")
_CJK = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日?$")
_PRICE = re.compile(r"^(?:([A-Za-z]{3})\s*)?(\d+(?:[.,]\d{1,3})?)\s*([A-Za-z]{3})?$")
_DAY_SPAN = re.compile(r"^([a-z]{3})(?:-([a-z]{3}))?$")


def parse_birth_date(text: str) -> date | None:
    """2001-04-30, 30.04.2001, 30/04/2001 or 2001年4月30日; None when it is not a real date."""
    cleaned = text.strip().replace(" ", "")
    for pattern, order in ((_ISO, (0, 1, 2)), (_CJK, (0, 1, 2)), (_DAY_FIRST, (2, 1, 0))):
        match = pattern.match(cleaned)
        if match:
            parts = [int(p) for p in match.groups()]
            try:
                return date(parts[order[0]], parts[order[1]], parts[order[2]])
            except ValueError:
                return None
    return None


def parse_price(text: str, default_currency: str) -> tuple[int, str]:
    """ "25 EUR", "EUR 25", "0.50", "1500 JPY" → (minor units, currency)."""
    match = _PRICE.match(text.strip())
    if match is None:
        raise ValueError("write an amount and a currency, such as 25 EUR")
    before, number, after = match.groups()
    if before and after:
        raise ValueError("write the currency once")
    currency = (before or after or default_currency).upper()
    check_currency(currency)
    digits = minor_unit_digits(currency)
    try:
        value = Decimal(number.replace(",", "."))
    except InvalidOperation:
        raise ValueError("that is not an amount") from None
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value():
        raise ValueError(f"{currency} has {digits} decimal places")
    if minor <= 0:
        raise ValueError("a price must be more than zero")
    return int(minor), currency


def parse_hours(text: str) -> dict[str, list[str]]:
    """ "mon-fri 09:00-17:00; sat 10:00-12:00" → {"mon": ["09:00-17:00"], …}."""
    hours: dict[str, list[str]] = {}
    parts = [part.strip() for part in re.split(r"[;\n]", text.lower()) if part.strip()]
    if not parts:
        raise ValueError("write days and times, such as mon-fri 09:00-17:00")
    for part in parts:
        days_text, _, ranges_text = part.partition(" ")
        days = _days(days_text)
        ranges = [r for r in re.split(r"[,\s]+", ranges_text.strip()) if r]
        if not ranges:
            raise ValueError(f"{part!r} names no times; write them as 09:00-17:00")
        for r in ranges:
            TimeRange.parse(r)  # raises with the reason
        for day in days:
            hours.setdefault(day, []).extend(ranges)
    return hours


def _days(text: str) -> list[str]:
    selected: list[str] = []
    for span in text.split(","):
        match = _DAY_SPAN.match(span.strip())
        if match is None or match.group(1) not in WEEKDAYS or (match.group(2) or "mon") not in WEEKDAYS:
            raise ValueError(f"{span!r} is not a day; use mon, tue, wed, thu, fri, sat, sun")
        first = WEEKDAYS.index(match.group(1))
        last = WEEKDAYS.index(match.group(2)) if match.group(2) else first
        if last < first:
            raise ValueError(f"{span!r} runs backwards")
        selected += WEEKDAYS[first : last + 1]
    return selected


def parse_list(text: str) -> list[str]:
    return [item.strip().lower() for item in re.split(r"[,;\s]+", text) if item.strip()]
