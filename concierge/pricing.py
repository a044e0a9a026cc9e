"""How an expert charges: free, a fixed price per session, or a rate per minute."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from concierge.money import Money, check_currency


class PricingMode(StrEnum):
    FREE = "free"
    PER_SESSION = "per_session"
    PER_MINUTE = "per_minute"


@dataclass(frozen=True, slots=True)
class Pricing:
    """`amount` is in minor units of `currency`: per session or per minute, 0 when free."""

    mode: PricingMode
    amount: int
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", PricingMode(self.mode))
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise ValueError(f"amount must be an integer number of minor units, got {self.amount!r}")
        check_currency(self.currency)
        if self.mode is PricingMode.FREE and self.amount != 0:
            raise ValueError("a free listing has amount 0")
        if self.mode is not PricingMode.FREE and self.amount <= 0:
            raise ValueError(f"a {self.mode.value} price must be a positive amount")

    @property
    def price(self) -> Money:
        return Money(self.amount, self.currency)

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode.value, "amount": self.amount, "currency": self.currency}
