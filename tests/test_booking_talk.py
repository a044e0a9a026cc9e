"""Every booking message the engine can send renders in all six languages: each notice kind and
outcome, each refusal reason, each status, with the placeholders the code fills in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bots.booking_talk import BookingTalk
from bots.texts import Texts
from concierge.availability import Unavailable
from concierge.model import BookingStatus, CancellationPolicy, Channel, Outcome
from concierge.people import AgeGate
from concierge.reach import Reach
from concierge.views import PaymentNotice, PersonView
from knowledge.i18n import LANGUAGES, load_catalogues
from video_gateway.opening import RoomLinks

TEXTS = Texts(load_catalogues())
START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def person(name: str, language: str, zone: str, user: str) -> PersonView:
    return PersonView(f"p-{user}", name, language, zone, AgeGate.ADULT, Reach(Channel.WEB, user))


def notice(kind: str, language: str, **fields: Any) -> PaymentNotice:
    return PaymentNotice(
        kind,
        "ses_1",
        person("", language, "America/New_York", "c"),  # a web visitor without a name
        person("Tomás", language, "Asia/Kathmandu", "e"),
        "EUR",
        starts_at=START,
        **fields,
    )


NOTICES = [
    ("reminder", {"minutes": 1440}),
    ("reminder", {"minutes": 10, "last": True, "calendar_urls": ("https://x/c", "https://x/e")}),
    ("booking_confirmed", {}),
    ("booking_declined", {}),
    ("booking_cancelled_by_customer", {"outcome": "cancelled_free"}),
    ("booking_cancelled_by_expert", {"outcome": "expert_cancelled"}),
    *[
        ("booking_cancelled_by_system", {"outcome": o})
        for o in ("unpaid", "expert_no_show", "cancelled_free", "customer_no_show")
    ],
    ("booking_forfeit", {"outcome": "cancelled_late"}),
    ("booking_moved", {}),
    ("booking_pay", {"url": "https://pay.example/1"}),
    ("pay_again", {"url": "https://pay.example/2"}),
]


@pytest.mark.parametrize("language", sorted(LANGUAGES))
@pytest.mark.parametrize(("kind", "fields"), NOTICES)
def test_every_booking_notice_renders(language: str, kind: str, fields: dict[str, Any]) -> None:
    talk = BookingTalk(None, TEXTS)  # type: ignore[arg-type]  # notices need no core
    replies = talk.notice(notice(kind, language, **fields))
    assert replies, kind
    for reply in replies:
        assert "{" not in reply.text, reply.text
        assert reply.text.strip()
    if fields.get("last"):
        labels = [b.label for row in replies[0].buttons for b in row]
        assert TEXTS("bot.booking.calendar", language) in labels


def test_the_last_reminder_carries_each_partys_own_room_link() -> None:
    room = RoomLinks("room-1", "https://x/r/customer", "https://x/r/expert")
    replies = BookingTalk(None, TEXTS).notice(  # type: ignore[arg-type]
        notice("reminder", "fr", minutes=10, last=True, room=room)
    )
    links = [[b.url for row in r.buttons for b in row] for r in replies]
    assert "https://x/r/customer" in links[0]
    assert "https://x/r/expert" in links[1]
    assert "10 minutes" in replies[0].text  # in words, in French: "dans 10 minutes"


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_reason_status_and_policy_has_words(language: str) -> None:
    keys = [f"bot.booking.unavailable.{r.value}" for r in Unavailable]
    keys += [f"bot.booking.refused.{s.value}" for s in BookingStatus]
    keys += [f"bot.booking.refused.{c}" for c in ("closed", "too_late", "too_often", "hold_window")]
    keys += [f"bot.booking.status.{s.value}" for s in (BookingStatus.PENDING, BookingStatus.CONFIRMED)]
    keys += [f"bot.booking.policy.{p.value}" for p in CancellationPolicy]
    keys += [
        f"bot.schedule.refused.{c}"
        for c in ("usage", "date", "past", "hours", "length", "buffer", "max", "notice")
    ]
    keys += [
        f"bot.booking.called_off.{o.value}"
        for o in (Outcome.UNPAID, Outcome.EXPERT_NO_SHOW, Outcome.CANCELLED_FREE, Outcome.CUSTOMER_NO_SHOW)
    ]
    for key in keys:
        assert TEXTS(key, language, name="X", when="Y", reason="Z").strip(), key
