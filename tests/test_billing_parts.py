"""Quotes, charges, commissions and ledger postings: pure money arithmetic in minor units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import ledger
from billing.quotes import (
    Charge,
    ChargeRules,
    MinuteRounding,
    QuoteError,
    commission_of,
    commission_percent,
    parse_category_commissions,
    quote,
    refunded_commission,
)

SECOND = ChargeRules(minimum_minutes=0, rounding=MinuteRounding.SECOND)


def test_per_minute_charges_started_minutes_with_a_minimum_and_never_above_the_hold() -> None:
    q = quote("per_minute", 150, "EUR", Decimal(20), max_minutes=30, rules=ChargeRules(minimum_minutes=5))
    assert q.customer_max == 4500
    assert q.charge_for(0).amount == 0  # never connected: nothing
    assert q.charge_for(1).amount == 750  # the first five minutes are the minimum
    assert q.charge_for(5 * 60 + 1).amount == 900  # 5 min 1 s: six started minutes
    assert q.charge_for(30 * 60).amount == 4500
    assert q.charge_for(45 * 60).amount == 4500  # capped at what was authorised
    charge = q.charge_for(5 * 60 + 1)
    assert (charge.commission, charge.expert_payout) == (180, 720)


def test_per_second_rounds_half_up_to_a_minor_unit() -> None:
    q = quote("per_minute", 100, "EUR", Decimal(20), max_minutes=10, rules=SECOND)
    assert q.charge_for(61).amount == 102  # 101.67 → 102
    assert q.charge_for(3).amount == 5  # 5.0
    assert q.charge_for(1).amount == 2  # 1.67 → 2


def test_zero_decimal_currencies_stay_whole_yen() -> None:
    q = quote("per_minute", 75, "JPY", Decimal("12.5"), max_minutes=30)
    charge = q.charge_for(90)
    assert (charge.amount, charge.commission, charge.currency) == (150, 19, "JPY")  # 18.75 → 19


def test_per_session_is_the_price_once_the_call_happened_and_free_is_nothing() -> None:
    session = quote("per_session", 2500, "USD", Decimal(20))
    assert session.charge_for(0).amount == 0
    assert session.charge_for(1).amount == 2500
    assert session.charge_for(7200).amount == 2500
    assert quote("free", 0, "EUR", Decimal(20)).charge_for(600) == Charge(0, 0, "EUR")


@pytest.mark.parametrize("seconds", [-1, 1.5, True, "60"])
def test_billed_seconds_must_be_a_whole_non_negative_number(seconds: object) -> None:
    q = quote("per_minute", 100, "EUR", Decimal(20))
    with pytest.raises(QuoteError):
        q.charge_for(seconds)  # type: ignore[arg-type]


def test_a_minimum_above_the_authorised_maximum_cannot_be_quoted() -> None:
    with pytest.raises(QuoteError, match="minimum"):
        quote("per_minute", 100, "EUR", Decimal(20), max_minutes=3, rules=ChargeRules(minimum_minutes=5))


@given(
    rate=st.integers(1, 100_000),
    minutes=st.integers(1, 480),
    seconds=st.integers(0, 10 * 3600),
    percent=st.decimals(0, 100, places=2),
    minimum=st.integers(0, 10),
    per_second=st.booleans(),
)
def test_a_charge_never_exceeds_the_hold_and_its_parts_add_up(
    rate: int, minutes: int, seconds: int, percent: Decimal, minimum: int, per_second: bool
) -> None:
    rules = ChargeRules(
        min(minimum, minutes), MinuteRounding.SECOND if per_second else MinuteRounding.STARTED_MINUTE
    )
    q = quote("per_minute", rate, "EUR", percent, max_minutes=minutes, rules=rules)
    charge = q.charge_for(seconds)
    assert 0 <= charge.amount <= q.customer_max
    assert 0 <= charge.commission <= charge.amount
    assert charge.commission + charge.expert_payout == charge.amount
    if seconds == 0:
        assert charge.amount == 0
    # More time never costs less.
    assert q.charge_for(seconds + 1).amount >= charge.amount


@settings(deadline=None)
@given(amount=st.integers(1, 10**9), percent=st.decimals(0, 100, places=2), data=st.data())
def test_partial_refunds_give_back_exactly_the_commission_in_total(
    amount: int, percent: Decimal, data: st.DataObject
) -> None:
    charge = Charge(amount, commission_of(amount, percent), "EUR")
    refunded = fees = 0
    for step in range(6):
        if refunded == amount:
            break
        last = step == 5
        part = amount - refunded if last else data.draw(st.integers(1, amount - refunded))
        fee = refunded_commission(charge, refunded + part) - fees
        assert 0 <= fee <= part
        refunded, fees = refunded + part, fees + fee
    assert fees == charge.commission


def test_a_category_rate_wins_over_a_business_which_wins_over_the_default() -> None:
    rates = parse_category_commissions("health=0, languages=12.5")
    assert commission_percent(Decimal(20), category="health", by_category=rates, business=Decimal(10)) == 0
    assert commission_percent(Decimal(20), category="repair", by_category=rates, business=Decimal(10)) == 10
    assert commission_percent(Decimal(20), category="repair", by_category=rates) == 20
    assert commission_percent(Decimal(20), category="languages", by_category=rates) == Decimal("12.5")


@pytest.mark.parametrize("text", ["health", "health=x", "health=101", "=5", "health=-1", "health=NaN"])
def test_malformed_category_commissions_are_refused(text: str) -> None:
    with pytest.raises(QuoteError):
        parse_category_commissions(text)


def test_every_posting_balances_and_a_lopsided_one_cannot_be_made() -> None:
    payer, expert, provider = "payer:customer:p1", "expert:e1", "provider:stripe"
    postings = [
        ledger.hold(payer, provider, 4500, "EUR"),
        ledger.release(payer, provider, 4500, "EUR"),
        ledger.charge(payer, expert, 900, 180, "EUR"),
        ledger.collect(payer, provider, 900, "EUR"),
        ledger.payout(expert, provider, 720, "EUR"),
        ledger.refund(payer, expert, 300, 60, "EUR"),
        ledger.refund_collect(payer, provider, 300, "EUR"),
        ledger.payout_reversal(expert, provider, 240, "EUR"),
    ]
    legs = [leg for posting in postings if posting for leg in posting.legs]
    assert ledger.imbalances(legs) == {}
    balances = ledger.balances(legs)
    assert balances[(ledger.PLATFORM_FEES, "EUR")] == -120  # 180 earned, 60 refunded
    assert balances[(expert, "EUR")] == 0  # paid 720, 240 reversed against 240 refunded
    assert balances[(payer, "EUR")] == 0  # charged 600 net, paid 600 net
    assert balances[(provider, "EUR")] == 120  # the platform's commission, still at the provider
    assert balances[(f"hold:{payer}", "EUR")] == 0
    with pytest.raises(ledger.LedgerError, match="balance"):
        ledger.Posting(
            ledger.PostingKind.CHARGE, (ledger.Leg(payer, 100, "EUR"), ledger.Leg(expert, -99, "EUR"))
        )
    with pytest.raises(ledger.LedgerError):
        ledger.charge(payer, expert, 100, 101, "EUR")
    with pytest.raises(ledger.LedgerError, match="customer or a sponsor"):
        ledger.payer_account("expert", "x")
    assert ledger.charge(payer, expert, 0, 0, "EUR") is None  # nothing moved, nothing booked
