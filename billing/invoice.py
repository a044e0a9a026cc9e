"""The `invoice` provider: no card processing. Sessions are priced, metered and booked as
receivables; the money is settled outside (a monthly invoice to a business, a community that
handles money itself). The default when no Stripe key is configured."""

from __future__ import annotations

from datetime import timedelta

from billing.errors import WebhookRejected
from billing.providers import Captured, Hold, HoldRequest, ProviderEvent, Refunded

INVOICE = "invoice"


class InvoiceProvider:
    name = INVOICE
    hold_window: timedelta | None = None  # nothing is held on a card, so nothing lapses

    async def hold(self, request: HoldRequest, idempotency_key: str) -> Hold:
        return Hold(ref=f"inv_{request.session_id}", authorised=True)

    async def capture(
        self, hold: Hold, payment_ref: str | None, amount: int, fee: int, idempotency_key: str
    ) -> Captured:
        # Owed rather than collected; the expert's share is paid when the invoice is settled.
        return Captured(ref=hold.ref, amount=amount, fee=fee, collected=False, paid_out=False)

    async def cancel(self, hold: Hold, payment_ref: str | None, idempotency_key: str) -> None:
        return None

    async def refund(self, payment_ref: str, amount: int, fee: int, idempotency_key: str) -> Refunded:
        # A credit note: the receivable shrinks, nothing comes back from an expert's account.
        return Refunded(ref=f"cn_{idempotency_key}", amount=amount, fee=fee, payout_reversed=False)

    async def create_payout_account(self, expert_id: str, email: str | None, idempotency_key: str) -> str:
        return f"inv_{expert_id}"

    async def onboarding_link(self, account_id: str, return_url: str, refresh_url: str) -> str:
        return return_url

    async def transfer(
        self, account_id: str, amount: int, currency: str, session_id: str, idempotency_key: str
    ) -> str:
        return f"inv_tr_{idempotency_key}"

    def verify_webhook(self, body: bytes, signature: str | None) -> ProviderEvent:
        raise WebhookRejected("the invoice provider receives no webhooks", status=404)

    async def close(self) -> None:
        return None
