"""The pure parts around the dialogue: chat input parsing, quotes, state, tokens, limits."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis

from billing.quotes import QuoteError, commission_of, quote
from bots.conversation import Conversation
from bots.events import Button, Incoming, Kind
from bots.parsing import parse_birth_date, parse_hours, parse_list, parse_price
from bots.rate_limit import RateLimiter, Verdict
from bots.web import VisitorTokens
from concierge.model import Channel
from concierge.reach import Reach
from matcher.facets import next_opening


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2001-04-30", date(2001, 4, 30)),
        ("30.04.2001", date(2001, 4, 30)),
        ("30/04/2001", date(2001, 4, 30)),
        ("2001年4月30日", date(2001, 4, 30)),
        (" 2001-4-3 ", date(2001, 4, 3)),
        ("2001-02-30", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_birth_dates(text: str, expected: date | None) -> None:
    assert parse_birth_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25 EUR", (2500, "EUR")),
        ("EUR 25", (2500, "EUR")),
        ("0,50 eur", (50, "EUR")),
        ("1500 JPY", (1500, "JPY")),
        ("12.5", (1250, "EUR")),
        ("1.250 BHD", (1250, "BHD")),
    ],
)
def test_prices_become_minor_units(text: str, expected: tuple[int, str]) -> None:
    assert parse_price(text, "EUR") == expected


@pytest.mark.parametrize("text", ["1.5 JPY", "0 EUR", "EUR 5 USD", "five euros", "5 XXQ", "-3 EUR"])
def test_prices_that_cannot_be_read_say_why(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_price(text, "EUR")


def test_hours_and_lists() -> None:
    assert parse_hours("mon-wed 09:00-12:00, 14:00-18:00; sat 10:00-12:00") == {
        "mon": ["09:00-12:00", "14:00-18:00"],
        "tue": ["09:00-12:00", "14:00-18:00"],
        "wed": ["09:00-12:00", "14:00-18:00"],
        "sat": ["10:00-12:00"],
    }
    for bad in ("fri-mon 09:00-10:00", "someday 09:00-10:00", "mon", "mon 18:00-09:00", ""):
        with pytest.raises(ValueError, match=r".+"):
            parse_hours(bad)
    assert parse_list("EN, fr;de  es") == ["en", "fr", "de", "es"]


def test_quotes_keep_the_customer_total_and_split_it() -> None:
    free = quote("free", 0, "EUR", Decimal(20))
    assert (free.customer_max, free.commission, free.expert_payout) == (0, 0, 0)
    session = quote("per_session", 2500, "EUR", Decimal(20))
    assert (session.customer_max, session.commission, session.expert_payout) == (2500, 500, 2000)
    minute = quote("per_minute", 75, "JPY", Decimal("12.5"), max_minutes=30)
    assert (minute.customer_max, minute.commission, minute.expert_payout) == (2250, 281, 1969)
    assert commission_of(5, Decimal(10)) == 1  # half up: 0.5 → 1
    with pytest.raises(QuoteError):
        quote("per_minute", 100, "EUR", Decimal(20), max_minutes=0)
    with pytest.raises(QuoteError):
        quote("barter", 100, "EUR", Decimal(20))
    with pytest.raises(QuoteError):
        commission_of(100, Decimal(101))


def test_next_opening_in_the_experts_zone_across_a_dst_change() -> None:
    hours = {"sun": [(9 * 60, 10 * 60)]}
    # Saturday 28 March 2026, 12:00 UTC; Paris springs forward that night (UTC+1 → UTC+2).
    after = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    opening = next_opening(hours, "Europe/Paris", after)
    assert opening is not None
    assert opening.astimezone(UTC) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    inside = datetime(2026, 3, 29, 7, 20, tzinfo=UTC)
    assert next_opening(hours, "Europe/Paris", inside) == inside
    assert next_opening({}, "Europe/Paris", after) is None


def test_conversation_state_round_trips_and_survives_garbage() -> None:
    state = Conversation(step="setup:hours", request_id="req_1", categories=["repair"], setup=True)
    assert Conversation.from_json(state.to_json()) == state
    assert Conversation.from_json(b"{not json") == Conversation()
    assert Conversation.from_json('{"step": "idle", "unknown_field": 1}') == Conversation()


def test_events_and_buttons() -> None:
    event = Incoming(Channel.TELEGRAM, "42", "Ana", Kind.COMMAND, "/Expert@concierge_bot  ABCDE-12345 ")
    assert event.command == ("expert", "ABCDE-12345")
    assert event.reach == Reach(Channel.TELEGRAM, "42")
    with pytest.raises(ValueError, match="longer than 64"):
        Button("x", "a" * 65)
    with pytest.raises(ValueError, match="either"):
        Button("x", "a", "https://example.org")


def test_visitor_tokens_refuse_forgeries() -> None:
    tokens = VisitorTokens(b"k" * 32)
    visitor, token = tokens.issue()
    assert tokens.verify(token) == visitor
    assert VisitorTokens(b"j" * 32).verify(token) is None
    assert tokens.verify(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    other, _ = tokens.issue()
    assert tokens.verify(f"{other}.{token.split('.')[1]}") is None
    for junk in (None, 42, "", "v" * 500, "../etc.passwd"):
        assert tokens.verify(junk) is None


async def test_rate_limit_warns_once_then_drops(redis_url: str) -> None:
    redis: Any = aioredis.Redis.from_url(redis_url)
    try:
        reach = Reach(Channel.WEB, f"vlimit{datetime.now(UTC).timestamp():.0f}")
        limiter = RateLimiter(redis, per_minute=3)
        now = 1_000_000.0
        verdicts = [await limiter.check(reach, now) for _ in range(5)]
        assert verdicts == [Verdict.ALLOW] * 3 + [Verdict.WARN, Verdict.DROP]
        assert await limiter.check(reach, now + 60) is Verdict.ALLOW  # a new minute
    finally:
        await redis.aclose()
