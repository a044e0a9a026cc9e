"""What the core hands the dialogue engine: plain, frozen facts, never ORM rows.

The engine turns these into messages; it never sees a database session, so it can neither
lazy-load by accident nor write anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billing.quotes import Quote
from concierge.lifecycle import State
from concierge.people import AgeGate
from concierge.pricing import Pricing
from concierge.reach import Reach
from video_gateway.opening import RoomLinks


@dataclass(frozen=True, slots=True)
class ExpertView:
    id: str
    published: bool
    online: bool
    headline: str
    bio: str
    categories: tuple[str, ...]
    languages: tuple[str, ...]
    pricing: Pricing
    time_zone: str
    hours: dict[str, Any]
    missing: tuple[str, ...]  # what publication still needs
    business_id: str | None


@dataclass(frozen=True, slots=True)
class PersonView:
    id: str
    name: str
    locale: str
    time_zone: str
    gate: AgeGate
    reach: Reach | None
    expert: ExpertView | None = None
    # False only where the lookup that made the view found no block either way: a request
    # then needs no lookup of its own for experts it must not be matched with.
    in_blocks: bool = True
    muted_until: datetime | None = None  # muted until then
    muted_reason: str | None = None  # flooding, abuse, operator


@dataclass(frozen=True, slots=True)
class ExpertCard:
    expert_id: str
    name: str
    headline: str
    languages: tuple[str, ...]
    rating: float | None  # Bayesian average of the stars (pulled towards the prior while few)
    rating_count: int
    pricing: Pricing
    available_now: bool
    next_free: datetime | None
    reasons: tuple[str, ...]  # the strongest ranking factors, best first
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Proposal:
    """Experts the customer can pick from."""

    request_id: str
    cards: tuple[ExpertCard, ...]
    language: str | None
    offset: int = 0  # where these cards start among all experts shown for the request
    scheduled: bool = False  # asked for a later time: picking an expert means picking a time


@dataclass(frozen=True, slots=True)
class Queued:
    """Everyone suitable is busy: the customer waits in line."""

    request_id: str
    place: int


@dataclass(frozen=True, slots=True)
class NoMatch:
    reason: str  # "cannot_understand" | "no_experts"
    request_id: str | None = None


AskOutcome = Proposal | Queued | NoMatch


@dataclass(frozen=True, slots=True)
class SelfHelp:
    """A self-help article that closely matches a new request, offered before any expert."""

    request_id: str
    article_id: str
    title: str
    body: str
    reading: str  # the language of the title and body
    language: str | None  # the request's language


@dataclass(frozen=True, slots=True)
class OfferNotice:
    """An expert is asked to take a request."""

    request_id: str
    expert: PersonView
    text: str
    language: str | None
    pricing: Pricing
    deadline: datetime


@dataclass(frozen=True, slots=True)
class Round:
    """What happened to a request's offers: who is asked now, whose offer lapsed, and whether
    the customer now waits in line or nobody is left."""

    request_id: str
    customer: PersonView
    notices: tuple[OfferNotice, ...] = ()
    lapsed: tuple[PersonView, ...] = ()
    queued_place: int | None = None
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    request_id: str
    session_id: str
    state: State
    customer: PersonView
    expert: PersonView
    text: str
    quote: Quote
    taken: tuple[PersonView, ...]  # the other experts, whose notification now says "taken"
    room: RoomLinks | None = None  # once the session is ready: each party's own link
    checkout_url: str | None = None  # while the customer still has to pay the hold
    sponsor: str | None = None  # the business paying instead of the customer
    refused: str | None = None  # why the payment could not be prepared (the session is then off)


@dataclass(frozen=True, slots=True)
class PaymentNotice:
    """News about a session's money for both parties: paid (room links follow), payment expired,
    settled (receipt and payout statement), refunded, paid out."""

    kind: str  # "paid" | "payment_expired" | "settled" | "refund" | "paid_out"
    session_id: str
    customer: PersonView
    expert: PersonView
    currency: str
    amount: int = 0  # charged, refunded or paid out, in minor units
    fee: int = 0
    room: RoomLinks | None = None
    receipt_url: str | None = None
    statement_url: str | None = None
    payout_link: str | None = None  # the expert's payout onboarding, while payouts are blocked
    note: str | None = None  # the operators' reasons, when they refused money back
    # Bookings: reminders and what happened to the booking.
    starts_at: datetime | None = None
    minutes: int | None = None  # how long before the start a reminder goes out
    last: bool = False  # the last reminder: the room links come with it
    outcome: str | None = None
    url: str | None = None  # a payment page to open
    calendar_urls: tuple[str, str] | None = None  # .ics for the customer, for the expert


@dataclass(frozen=True, slots=True)
class Cancelled:
    request_id: str
    told: tuple[PersonView, ...]  # experts whose pending notification should say so


@dataclass(frozen=True, slots=True)
class SessionLine:
    session_id: str
    state: State
    role: str  # "customer" | "expert"
    other: str  # the other party's name
    text: str
    created_at: datetime
    pricing: Pricing
    room_link: str | None = None  # the reader's own link while the session can be joined
    pay_link: str | None = None  # the customer's payment page while the hold is awaited
    receipt_link: str | None = None  # the receipt or payout statement once settled
