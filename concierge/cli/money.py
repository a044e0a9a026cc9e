"""`concierge ledger check` and `concierge payments`: the books and money-back for operators."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from sqlalchemy import func, select

from billing.errors import ProviderError
from concierge.cli.commands import main
from concierge.cli.common import database, run, settings_or_exit
from concierge.ledger_check import check_ledger
from concierge.model import Business, LedgerEntry, MoneyBackStatus, Payment, Session
from concierge.money_back import MoneyBack, MoneyBackRefused, MoneyBackView
from concierge.payments import Cashier, PaymentRefused
from concierge.payments_web import payment_provider
from concierge.reviews import Reviews


@main.group()
def ledger() -> None:
    """The double-entry ledger of every money movement."""


@ledger.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print {ok, violations} as JSON.")
def ledger_check(as_json: bool) -> None:
    """Verify the books; exits 1 naming every violation."""
    settings = settings_or_exit()

    async def run_command() -> tuple[list[str], int]:
        async with database(settings) as sessions:
            violations = await check_ledger(sessions)
            async with sessions() as db:
                entries = len(list(await db.scalars(select(LedgerEntry.id))))
        return [str(v) for v in violations], entries

    violations, entries = run(run_command)
    if as_json:
        click.echo(json.dumps({"ok": not violations, "entries": entries, "violations": violations}))
    else:
        for violation in violations:
            click.echo(f"violation: {violation}", err=True)
        if not violations:
            click.echo(f"ledger balanced: {entries} entries checked")
    sys.exit(1 if violations else 0)


@ledger.command("receivables")
@click.option("--json", "as_json", is_flag=True)
def ledger_receivables(as_json: bool) -> None:
    """What each payer owes for invoiced sessions (the basis of the monthly invoices)."""
    settings = settings_or_exit()

    async def run_command() -> list[dict[str, Any]]:
        async with database(settings) as sessions, sessions() as db:
            rows = list(
                await db.execute(
                    select(LedgerEntry.account, LedgerEntry.currency, func.sum(LedgerEntry.amount))
                    .where(LedgerEntry.account.startswith("payer:"))
                    .group_by(LedgerEntry.account, LedgerEntry.currency)
                    .having(func.sum(LedgerEntry.amount) > 0)
                    .order_by(LedgerEntry.account)
                )
            )
            names = dict(list(await db.execute(select(Business.id, Business.name))))
        owed = []
        for account, currency, total in rows:
            kind, ident = account.split(":")[1:3]
            owed.append(
                {
                    "payer": account,
                    "name": names.get(ident) if kind == "sponsor" else None,
                    "amount": int(total),
                    "currency": currency,
                }
            )
        return owed

    owed = run(run_command)
    if as_json:
        click.echo(json.dumps(owed))
        return
    for line in owed:
        click.echo(f"{line['name'] or line['payer']}: {line['amount']} {line['currency']}")
    if not owed:
        click.echo("nothing is owed")


@main.group()
def payments() -> None:
    """Payments of sessions: show them, give money back."""


@payments.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True)
def payments_show(session_id: str, as_json: bool) -> None:
    """A session's state, payments and ledger entries."""
    settings = settings_or_exit()

    async def run_command() -> dict[str, Any]:
        async with database(settings) as sessions, sessions() as db:
            session = await db.get(Session, session_id)
            if session is None:
                raise click.ClickException(f"no session {session_id}")
            rows = list(await db.scalars(select(Payment).where(Payment.session_id == session_id)))
            entries = list(await db.scalars(select(LedgerEntry).where(LedgerEntry.session_id == session_id)))
        return {
            "session": session_id,
            "state": session.state.value,
            "billed_seconds": session.billed_seconds,
            "payments": [
                {
                    "kind": p.kind.value,
                    "status": p.status.value,
                    "provider": p.provider,
                    "amount": p.amount,
                    "fee": p.fee,
                    "currency": p.currency,
                    "payer": p.payer,
                }
                for p in sorted(rows, key=lambda p: p.created_at)
            ],
            "ledger": [
                {"kind": e.kind, "account": e.account, "amount": e.amount, "currency": e.currency}
                for e in sorted(entries, key=lambda e: e.id)
            ],
        }

    shown = run(run_command)
    if as_json:
        click.echo(json.dumps(shown))
        return
    click.echo(f"session {shown['session']}: {shown['state']}, {shown['billed_seconds']} s billed")
    for p in shown["payments"]:
        click.echo(
            f"  {p['kind']} {p['status']} {p['amount']} {p['currency']} (fee {p['fee']}) via {p['provider']}"
        )


@payments.command("refund")
@click.argument("session_id")
@click.option(
    "--amount", type=click.IntRange(1), default=None, help="Minor units; the whole rest by default."
)
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.option("--json", "as_json", is_flag=True)
def payments_refund(session_id: str, amount: int | None, reason: str, as_json: bool) -> None:
    """Give money back for a settled session (within the refund window)."""
    settings = settings_or_exit()

    async def run_command() -> dict[str, Any]:
        provider = payment_provider(settings)
        try:
            async with database(settings) as sessions:
                cashier = Cashier(settings, sessions, provider)
                done = await cashier.refund(session_id, amount, reason)
        except PaymentRefused as exc:
            raise click.ClickException(str(exc)) from exc
        except ProviderError as exc:
            raise click.ClickException(f"the refund failed: {exc}") from exc
        finally:
            await provider.close()
        return {"session": session_id, "refunded": done.amount, "fee": done.fee, "currency": done.currency}

    done = run(run_command)
    click.echo(json.dumps(done) if as_json else f"refunded {done['refunded']} {done['currency']}")


@main.group()
def reviews() -> None:
    """Reviews people gave each other."""


@reviews.command("hide")
@click.argument("review_id")
@click.option("--reason", required=True, help="Why, kept with the review for the audit.")
def reviews_hide(review_id: str, reason: str) -> None:
    """Hide an abusive review: it stays in the database, out of view and out of the rating."""
    settings = settings_or_exit()

    async def run_command() -> None:
        async with database(settings) as sessions:
            await Reviews(sessions).hide(review_id, reason)

    run(run_command)
    click.echo(f"review {review_id} hidden")


@main.group("moneyback")
def money_back() -> None:
    """Money-back requests: what experts declined and customers escalated, for the operators."""


def _request_json(view: MoneyBackView) -> dict[str, Any]:
    return {
        "id": view.id,
        "session": view.session_id,
        "status": view.status.value,
        "reason": view.reason,
        "amount": view.amount,
        "currency": view.currency,
        "granted": view.granted_amount,
    }


@money_back.command("list")
@click.option("--status", type=click.Choice([s.value for s in MoneyBackStatus]), default=None)
@click.option("--json", "as_json", is_flag=True)
def money_back_list(status: str | None, as_json: bool) -> None:
    """Requests, oldest first (all, or with one status such as `escalated`)."""
    settings = settings_or_exit()

    async def run_command() -> list[dict[str, Any]]:
        provider = payment_provider(settings)
        try:
            async with database(settings) as sessions:
                desk = MoneyBack(sessions, Cashier(settings, sessions, provider))
                views = await desk.listed(MoneyBackStatus(status) if status else None)
        finally:
            await provider.close()
        return [_request_json(view) for view in views]

    listed = run(run_command)
    if as_json:
        click.echo(json.dumps(listed))
        return
    for line in listed:
        click.echo(f"{line['id']} {line['status']} {line['amount']} {line['currency']}: {line['reason']}")


@money_back.command("show")
@click.argument("request_id")
def money_back_show(request_id: str) -> None:
    """The facts to decide on (times, billed seconds, connection events, recording, payments) as JSON."""
    settings = settings_or_exit()

    async def run_command() -> dict[str, Any]:
        provider = payment_provider(settings)
        try:
            async with database(settings) as sessions:
                return await MoneyBack(sessions, Cashier(settings, sessions, provider)).facts(request_id)
        finally:
            await provider.close()

    click.echo(json.dumps(run(run_command), indent=2))


@money_back.command("decide")
@click.argument("request_id")
@click.option("--amount", type=click.IntRange(1), default=None, help="Minor units to refund (default: all).")
@click.option("--refuse", is_flag=True, help="Refund nothing; the customer is told, with the note.")
@click.option("--note", required=True, help="The reasons, kept and (when refusing) sent to the customer.")
def money_back_decide(request_id: str, amount: int | None, refuse: bool, note: str) -> None:
    """Decide an escalated request: refund (all or --amount) or --refuse."""
    if refuse and amount is not None:
        raise click.UsageError("--refuse and --amount exclude each other")
    settings = settings_or_exit()

    async def run_command() -> dict[str, Any]:
        provider = payment_provider(settings)
        try:
            async with database(settings) as sessions:
                desk = MoneyBack(sessions, Cashier(settings, sessions, provider))
                view = await desk.decide(request_id, 0 if refuse else amount, note)
        except MoneyBackRefused as exc:
            raise click.ClickException(f"cannot decide: {exc.reason}") from exc
        except ProviderError as exc:
            raise click.ClickException(f"the refund failed: {exc}") from exc
        finally:
            await provider.close()
        return _request_json(view)

    click.echo(json.dumps(run(run_command)))
