"""The port every payment provider implements, and the provider-neutral values it speaks.

The core never sees a provider's SDK: it asks for a hold and gets a `Hold` (authorised at once,
or a hosted page the customer must visit), captures, cancels and refunds by reference with an
idempotency key it derives from the session and the step, and gets verified webhooks as
`ProviderEvent`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True, slots=True)
class HoldRequest:
    session_id: str
    amount: int
    currency: str
    description: str
    success_url: str
    cancel_url: str
    expires_at: datetime
    locale: str = "en"
    payout_account: str | None = None  # the expert's connected account, when payouts can go there


@dataclass(frozen=True, slots=True)
class Hold:
    ref: str  # the provider's handle for this authorisation (a Checkout Session, an invoice line)
    authorised: bool  # True: money is held (or owed) now; False: the customer must pay at `url`
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Captured:
    ref: str  # what was captured (a PaymentIntent), for refunds later
    amount: int
    fee: int
    collected: bool  # True: the provider holds the money; False: it is owed (an invoice)
    paid_out: bool  # True: the expert's share went to their account with the capture


@dataclass(frozen=True, slots=True)
class Refunded:
    ref: str
    amount: int
    fee: int
    payout_reversed: bool


class EventKind(StrEnum):
    AUTHORISED = "authorised"  # the customer paid: the hold is in place
    HOLD_EXPIRED = "hold_expired"  # the hosted page expired unpaid
    HOLD_CANCELLED = "hold_cancelled"
    CAPTURED = "captured"
    REFUNDED = "refunded"
    ACCOUNT_UPDATED = "account_updated"
    IGNORED = "ignored"  # authentic, but nothing we act on


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    event_id: str
    kind: EventKind
    type: str  # the provider's own name for it, for the log
    session_id: str | None = None
    hold_ref: str | None = None
    payment_ref: str | None = None
    amount: int | None = None
    account_id: str | None = None
    payouts_enabled: bool = False
    created: datetime | None = None


class PaymentProvider(Protocol):
    name: str
    # How long a card hold stays valid; a session ending later cannot be held at booking time.
    hold_window: timedelta | None

    async def hold(self, request: HoldRequest, idempotency_key: str) -> Hold: ...

    async def capture(
        self, hold: Hold, payment_ref: str | None, amount: int, fee: int, idempotency_key: str
    ) -> Captured: ...

    async def cancel(self, hold: Hold, payment_ref: str | None, idempotency_key: str) -> None: ...

    async def refund(self, payment_ref: str, amount: int, fee: int, idempotency_key: str) -> Refunded: ...

    async def create_payout_account(self, expert_id: str, email: str | None, idempotency_key: str) -> str: ...

    async def onboarding_link(self, account_id: str, return_url: str, refresh_url: str) -> str: ...

    async def transfer(
        self, account_id: str, amount: int, currency: str, session_id: str, idempotency_key: str
    ) -> str: ...

    def verify_webhook(self, body: bytes, signature: str | None) -> ProviderEvent: ...

    async def close(self) -> None: ...
