"""What a claimed session will cost: the customer's maximum, the commission, the expert's payout;
and, once the room has ended, what the metered time actually costs.

Pure arithmetic on integer minor units. Per-minute sessions are quoted for an authorised
maximum of minutes (the hold a payment provider places); the metered amount captured at the end
can only be lower. The commission is rounded half-up to a whole minor unit and comes out of the
customer's price, so the customer never pays more than the quote says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

FREE = "free"
PER_SESSION = "per_session"
PER_MINUTE = "per_minute"
DEFAULT_MAX_MINUTES = 60


class QuoteError(ValueError):
    """A price or commission that cannot be quoted."""


class MinuteRounding(StrEnum):
    STARTED_MINUTE = "started_minute"  # 61 s cost two minutes
    SECOND = "second"  # 61 s cost 61/60 of the rate, rounded half-up to a minor unit


@dataclass(frozen=True, slots=True)
class ChargeRules:
    """How metered time becomes an amount: the first `minimum_minutes` are always charged once the
    call has started, then per started minute or per second."""

    minimum_minutes: int = 1
    rounding: MinuteRounding = MinuteRounding.STARTED_MINUTE

    def __post_init__(self) -> None:
        if self.minimum_minutes < 0:
            raise QuoteError("a minimum charge cannot be negative")


@dataclass(frozen=True, slots=True)
class Charge:
    """What a finished session costs: the customer's amount, the platform's share, the expert's."""

    amount: int
    commission: int
    currency: str

    @property
    def expert_payout(self) -> int:
        return self.amount - self.commission


@dataclass(frozen=True, slots=True)
class Quote:
    mode: str
    currency: str
    unit_price: int  # per session or per minute, minor units
    max_minutes: int | None  # the authorised maximum for per-minute sessions
    customer_max: int  # what the customer may be charged at most
    commission: int  # the platform's share of customer_max
    commission_percent: Decimal
    rules: ChargeRules = ChargeRules()

    @property
    def expert_payout(self) -> int:
        return self.customer_max - self.commission

    @property
    def free(self) -> bool:
        return self.mode == FREE

    def charge_for(self, billed_seconds: int) -> Charge:
        """The amount for `billed_seconds` of connected time, never above the authorised maximum."""
        if isinstance(billed_seconds, bool) or not isinstance(billed_seconds, int) or billed_seconds < 0:
            raise QuoteError(f"billed seconds are a whole, non-negative number, got {billed_seconds!r}")
        if self.mode == FREE or billed_seconds == 0:
            amount = 0
        elif self.mode == PER_SESSION:
            amount = self.unit_price
        elif self.rules.rounding is MinuteRounding.SECOND:
            amount = _half_up(Decimal(self.unit_price * billed_seconds) / 60)
        else:
            amount = self.unit_price * -(-billed_seconds // 60)
        if amount and self.mode == PER_MINUTE:
            amount = max(amount, self.unit_price * self.rules.minimum_minutes)
        amount = min(amount, self.customer_max)
        return Charge(amount, commission_of(amount, self.commission_percent), self.currency)


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def commission_of(amount: int, percent: Decimal) -> int:
    if not Decimal(0) <= percent <= Decimal(100):
        raise QuoteError(f"commission must be between 0 and 100 %, got {percent}")
    return _half_up(Decimal(amount) * percent / 100)


def refunded_commission(charge: Charge, refund: int) -> int:
    """The platform's share of a refund: the commission refunded in proportion, rounded half-up."""
    if not 0 <= refund <= charge.amount:
        raise QuoteError(f"a refund is between 0 and the charged {charge.amount}, got {refund}")
    if charge.amount == 0:
        return 0
    return _half_up(Decimal(charge.commission * refund) / charge.amount)


def commission_percent(
    default: Decimal,
    *,
    category: str | None = None,
    by_category: Mapping[str, Decimal] | None = None,
    business: Decimal | None = None,
) -> Decimal:
    """The commission for one session: a category's own rate (health: 0 %) wins over a business's
    override, which wins over the platform default."""
    if category is not None and by_category and category in by_category:
        return by_category[category]
    return business if business is not None else default


def parse_category_commissions(text: str) -> dict[str, Decimal]:
    """`"health=0 languages=12.5"` → {"health": 0, "languages": 12.5}; raises QuoteError."""
    rates: dict[str, Decimal] = {}
    for item in text.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise QuoteError(f"expected category=percent, got {item!r}")
        try:
            rate = Decimal(value)
        except ArithmeticError:
            raise QuoteError(f"{value!r} is not a percentage") from None
        if not rate.is_finite() or not Decimal(0) <= rate <= Decimal(100):
            raise QuoteError(f"commission for {name} must be between 0 and 100 %, got {value}")
        rates[name] = rate
    return rates


def quote(
    mode: str,
    unit_price: int,
    currency: str,
    commission_percent: Decimal,
    *,
    max_minutes: int = DEFAULT_MAX_MINUTES,
    rules: ChargeRules = ChargeRules(),
) -> Quote:
    if isinstance(unit_price, bool) or not isinstance(unit_price, int) or unit_price < 0:
        raise QuoteError(f"a price is a whole, non-negative number of minor units, got {unit_price!r}")
    if mode == FREE:
        return Quote(FREE, currency, 0, None, 0, 0, commission_percent, rules)
    if mode == PER_SESSION:
        total, minutes = unit_price, None
    elif mode == PER_MINUTE:
        if max_minutes < 1:
            raise QuoteError("a per-minute quote needs at least one minute")
        if rules.minimum_minutes > max_minutes:
            raise QuoteError("the minimum charge cannot exceed the authorised maximum")
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
        rules,
    )
