"""Double-entry bookkeeping for every money movement, as pure values.

Amounts are signed minor units: a debit is positive, a credit negative, and the legs of one
posting sum to zero in each currency. Accounts are named strings so any store can keep them:

    payer:<kind>:<id>      who pays: a customer (`payer:customer:per_…`) or a sponsoring business
                           (`payer:sponsor:biz_…`); a debit balance is money owed (a receivable)
    expert:<id>            what the platform owes an expert (credit) until it is paid out
    platform:fees          the commission earned (credit)
    provider:<name>        money held at the payment provider for the platform (debit)
    hold:payer:…           memorandum pair for authorisations: a hold is no money yet, but it is
    hold:provider:<name>   booked so that every hold is visibly released or used

A session's lifecycle in postings: `hold` at authorisation; at settlement `release` of the whole
hold, `charge` (payer → fee + expert), `collect` (provider → payer) when the provider captured
money, `payout` (expert → provider) when the expert's share was transferred; `refund` reverses a
charge in proportion, `refund_collect` and `payout_reversal` move the money back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

PLATFORM_FEES = "platform:fees"


class PostingKind(StrEnum):
    HOLD = "hold"
    RELEASE = "release"
    CHARGE = "charge"
    COLLECT = "collect"
    PAYOUT = "payout"
    REFUND = "refund"
    REFUND_COLLECT = "refund_collect"
    PAYOUT_REVERSAL = "payout_reversal"


class LedgerError(ValueError):
    """A posting that does not balance or names no account."""


@dataclass(frozen=True, slots=True)
class Leg:
    account: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class Posting:
    kind: PostingKind
    legs: tuple[Leg, ...]

    def __post_init__(self) -> None:
        if not self.legs:
            raise LedgerError("a posting has legs")
        for leg in self.legs:
            if isinstance(leg.amount, bool) or not isinstance(leg.amount, int) or leg.amount == 0:
                raise LedgerError(f"a leg is a non-zero whole number of minor units, got {leg.amount!r}")
            if not leg.account:
                raise LedgerError("a leg names its account")
        unbalanced = imbalances(self.legs)
        if unbalanced:
            raise LedgerError(f"{self.kind} does not balance: {unbalanced}")


def imbalances(legs: Iterable[Leg]) -> dict[str, int]:
    """Per currency, what the legs sum to when that is not zero."""
    sums: dict[str, int] = defaultdict(int)
    for leg in legs:
        sums[leg.currency] += leg.amount
    return {currency: total for currency, total in sums.items() if total}


def payer_account(kind: str, ident: str) -> str:
    if kind not in {"customer", "sponsor"}:
        raise LedgerError(f"a payer is a customer or a sponsor, not {kind!r}")
    return f"payer:{kind}:{ident}"


def expert_account(expert_id: str) -> str:
    return f"expert:{expert_id}"


def provider_account(provider: str) -> str:
    return f"provider:{provider}"


def _posting(kind: PostingKind, currency: str, *pairs: tuple[str, int]) -> Posting | None:
    legs = tuple(Leg(account, amount, currency) for account, amount in pairs if amount)
    return Posting(kind, legs) if legs else None


def hold(payer: str, provider: str, amount: int, currency: str) -> Posting | None:
    return _posting(PostingKind.HOLD, currency, (f"hold:{payer}", amount), (f"hold:{provider}", -amount))


def release(payer: str, provider: str, amount: int, currency: str) -> Posting | None:
    return _posting(PostingKind.RELEASE, currency, (f"hold:{payer}", -amount), (f"hold:{provider}", amount))


def charge(payer: str, expert: str, amount: int, fee: int, currency: str) -> Posting | None:
    if not 0 <= fee <= amount:
        raise LedgerError(f"a fee is between 0 and the amount {amount}, got {fee}")
    return _posting(
        PostingKind.CHARGE, currency, (payer, amount), (PLATFORM_FEES, -fee), (expert, -(amount - fee))
    )


def collect(payer: str, provider: str, amount: int, currency: str) -> Posting | None:
    return _posting(PostingKind.COLLECT, currency, (provider, amount), (payer, -amount))


def payout(expert: str, provider: str, amount: int, currency: str) -> Posting | None:
    return _posting(PostingKind.PAYOUT, currency, (expert, amount), (provider, -amount))


def refund(payer: str, expert: str, amount: int, fee: int, currency: str) -> Posting | None:
    if not 0 <= fee <= amount:
        raise LedgerError(f"a refunded fee is between 0 and the refund {amount}, got {fee}")
    return _posting(
        PostingKind.REFUND, currency, (PLATFORM_FEES, fee), (expert, amount - fee), (payer, -amount)
    )


def refund_collect(payer: str, provider: str, amount: int, currency: str) -> Posting | None:
    return _posting(PostingKind.REFUND_COLLECT, currency, (payer, amount), (provider, -amount))


def payout_reversal(expert: str, provider: str, amount: int, currency: str) -> Posting | None:
    return _posting(PostingKind.PAYOUT_REVERSAL, currency, (provider, amount), (expert, -amount))


def balances(legs: Iterable[Leg]) -> dict[tuple[str, str], int]:
    """(account, currency) → balance."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for leg in legs:
        totals[(leg.account, leg.currency)] += leg.amount
    return dict(totals)
