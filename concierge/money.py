"""Money as integer minor units plus an ISO 4217 currency; never a float."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from babel.numbers import format_currency, get_currency_precision, list_currencies


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def check_currency(code: str) -> str:
    """Return `code` if it is an ISO 4217 currency code Babel knows, else raise ValueError."""
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha() or not code.isupper():
        raise ValueError(f"currency must be a three-letter upper-case ISO 4217 code, got {code!r}")
    if code not in _known_currencies():
        raise ValueError(f"unknown currency {code!r}")
    return code


def minor_unit_digits(currency: str) -> int:
    """Digits after the decimal point in `currency`: 2 for EUR, 0 for JPY, 3 for BHD."""
    return int(get_currency_precision(check_currency(currency)))


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        # bool is an int subclass; True euros is a bug, not an amount.
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise ValueError(f"amount must be an integer number of minor units, got {self.amount!r}")
        check_currency(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")


def format_money(money: Money, locale: str = "en") -> str:
    """`Money(150, "EUR")` → "€1.50" in English, "1,50 €" in French; JPY has no decimals."""
    value = Decimal(money.amount).scaleb(-minor_unit_digits(money.currency))
    return str(format_currency(value, money.currency, locale=locale))
