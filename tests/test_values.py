"""Value objects: money in minor units, pricing, weekly hours, languages, Redis key names."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from concierge.hours import WEEKDAYS, TimeRange, WeeklyHours
from concierge.languages import check_language
from concierge.money import Money, format_money, minor_unit_digits
from concierge.pricing import Pricing, PricingMode
from concierge.redis_keys import channel_name, entity_key
from matcher.facets import Facets, weekly_slots
from matcher.listing import Listing


def test_zero_decimal_and_three_decimal_currencies() -> None:
    assert minor_unit_digits("EUR") == 2
    assert minor_unit_digits("JPY") == 0
    assert minor_unit_digits("KRW") == 0
    assert minor_unit_digits("BHD") == 3
    assert format_money(Money(1500, "JPY"), "en") == "¥1,500"
    assert format_money(Money(150, "EUR"), "en") == "€1.50"
    assert format_money(Money(150, "EUR"), "fr") == "1,50\u00a0€"
    assert format_money(Money(1234, "BHD"), "en") == "BHD1.234"


@pytest.mark.parametrize("amount", [1.5, "150", True, None])
def test_money_refuses_anything_but_integer_minor_units(amount: object) -> None:
    with pytest.raises(ValueError, match="integer"):
        Money(amount, "EUR")  # type: ignore[arg-type]


def test_money_never_mixes_currencies() -> None:
    assert Money(100, "EUR") + Money(50, "EUR") == Money(150, "EUR")
    assert -Money(100, "EUR") == Money(-100, "EUR")
    with pytest.raises(ValueError, match="cannot combine EUR with USD"):
        Money(100, "EUR") - Money(1, "USD")


@pytest.mark.parametrize(
    ("mode", "amount", "message"),
    [
        ("free", 100, "amount 0"),
        ("per_minute", 0, "positive"),
        ("per_session", -5, "positive"),
        ("hourly", 100, "hourly"),
    ],
)
def test_inconsistent_pricing_is_refused(mode: str, amount: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pricing(mode, amount, "EUR")  # type: ignore[arg-type]


def test_pricing_round_trips_to_json() -> None:
    pricing = Pricing(PricingMode.PER_MINUTE, 120, "JPY")
    assert pricing.to_json() == {"mode": "per_minute", "amount": 120, "currency": "JPY"}
    assert pricing.price == Money(120, "JPY")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"monday": ["09:00-17:00"]}, "unknown weekday"),
        ({"mon": "09:00-17:00"}, "list"),
        ({"mon": ["9-17"]}, "look like"),
        ({"mon": ["17:00-09:00"]}, "crossing midnight|ends before"),
        ({"mon": ["25:00-26:00"]}, "not a valid"),
        ({"mon": ["09:00-12:00", "11:00-13:00"]}, "overlap"),
        (["09:00-17:00"], "object"),
    ],
)
def test_bad_hours_are_refused_with_a_reason(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WeeklyHours.parse(raw)


def test_hours_decide_availability_in_the_experts_zone() -> None:
    hours = WeeklyHours.parse({"mon": ["14:00-18:00", "09:00-12:00"], "sat": ["22:00-24:00"]})
    assert hours.to_json() == {"mon": ["09:00-12:00", "14:00-18:00"], "sat": ["22:00-24:00"]}
    minutes = {day: [(r.start, r.end) for r in ranges] for day, ranges in hours.days.items()}
    assert weekly_slots(minutes).sum() * 15 == 3 * 60 + 4 * 60 + 2 * 60
    facets = Facets(["repair"])
    facets.set(
        0, Listing("x", "h", "", (), ("repair",), ("en",), "free", 0, "EUR", "Asia/Kathmandu", minutes)
    )

    def open_at(local: datetime) -> bool:
        return bool(facets.open_at(local.replace(tzinfo=ZoneInfo("Asia/Kathmandu")))[0])

    monday = datetime(2026, 11, 23)
    assert open_at(monday.replace(hour=9))
    assert not open_at(monday.replace(hour=12))
    assert not open_at(monday.replace(hour=13, minute=59))
    assert open_at(datetime(2026, 11, 28, 23, 59))
    assert not open_at(datetime(2026, 11, 24, 10))
    # The same instant in UTC: 03:15 UTC is 09:00 in Kathmandu (+05:45).
    assert bool(facets.open_at(datetime(2026, 11, 23, 3, 15, tzinfo=ZoneInfo("UTC")))[0])


@st.composite
def weekly_hours(draw: st.DrawFn) -> dict[str, list[str]]:
    result = {}
    for day in draw(st.lists(st.sampled_from(WEEKDAYS), unique=True)):
        cuts = sorted(draw(st.lists(st.integers(0, 1440), min_size=2, max_size=6, unique=True)))
        pairs = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
        if pairs:
            result[day] = [str(TimeRange(a, b)) for a, b in pairs]
    return result


@given(weekly_hours())
def test_hours_round_trip_through_json(raw: dict[str, list[str]]) -> None:
    parsed = WeeklyHours.parse(raw)
    assert WeeklyHours.parse(parsed.to_json()) == parsed
    assert parsed.to_json() == {day: raw[day] for day in WEEKDAYS if day in raw}


def test_languages_are_iso_639_1() -> None:
    assert check_language("ja") == "ja"
    for bad in ("JA", "jpn", "zz", "", "j1"):
        with pytest.raises(ValueError, match="language"):
            check_language(bad)


def test_redis_keys_are_namespaced_and_hash_tagged() -> None:
    assert entity_key("request", "req_1", "claim") == "concierge:{request:req_1}:claim"
    assert channel_name("lifecycle") == "concierge:events:lifecycle"
    for unsafe in ("a}b", "a:b", "", "a b", "x{y"):
        with pytest.raises(ValueError, match="unsafe"):
            entity_key("request", unsafe)
