"""What a claimed session will cost: the customer's maximum, the commission, the expert's payout.

Pure arithmetic on integer minor units. Per-minute sessions are quoted for an authorised
maximum of minutes (the hold a payment provider places); the metered amount captured at the end
can only be lower. The commission is rounded half-up to a whole minor unit and comes out of the
customer's price, so the customer never pays more than the quote says.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

FREE = "free"
PER_SESSION = "per_session"
PER_MINUTE = "per_minute"
DEFAULT_MAX_MINUTES = 60


class QuoteError(ValueError):
    """A price or commission that cannot be quoted."""


@dataclass(frozen=True, slots=True)
class Quote:
    mode: str
    currency: str
    unit_price: int  # per session or per minute, minor units
    max_minutes: int | None  # the authorised maximum for per-minute sessions
    customer_max: int  # what the customer may be charged at most
    commission: int  # the platform's share of customer_max
    commission_percent: Decimal

    @property
    def expert_payout(self) -> int:
        return self.customer_max - self.commission

    @property
    def free(self) -> bool:
        return self.mode == FREE


def commission_of(amount: int, percent: Decimal) -> int:
    if not Decimal(0) <= percent <= Decimal(100):
        raise QuoteError(f"commission must be between 0 and 100 %, got {percent}")
    return int((Decimal(amount) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def quote(
    mode: str,
    unit_price: int,
    currency: str,
    commission_percent: Decimal,
    *,
    max_minutes: int = DEFAULT_MAX_MINUTES,
) -> Quote:
    if isinstance(unit_price, bool) or not isinstance(unit_price, int) or unit_price < 0:
        raise QuoteError(f"a price is a whole, non-negative number of minor units, got {unit_price!r}")
    if mode == FREE:
        return Quote(FREE, currency, 0, None, 0, 0, commission_percent)
    if mode == PER_SESSION:
        total, minutes = unit_price, None
    elif mode == PER_MINUTE:
        if max_minutes < 1:
            raise QuoteError("a per-minute quote needs at least one minute")
        total, minutes = unit_price * max_minutes, max_minutes
    else:
        raise QuoteError(f"unknown pricing mode {mode!r}")
    return Quote(
        mode,
        currency,
        unit_price,
        minutes,
        total,
        commission_of(total, commission_percent),
        commission_percent,
    )
