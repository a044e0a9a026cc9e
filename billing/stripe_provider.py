"""The `stripe` provider: Checkout with a manual-capture hold, Connect Express payouts, webhooks.

The official `stripe` library is confined to this module, one `StripeClient` per provider (never
the global `stripe.api_key`), over httpx on the caller's event loop. Its errors become
`ProviderError`s here, marked retryable when the outcome is unknown; every call that moves money
carries the idempotency key the core derived from the session and the step, so a retry after a
lost answer replays Stripe's first answer instead of moving money twice.

Destination charges: when the expert's connected account can take payouts, the hold is made with
`transfer_data.destination` and the capture carries the commission as `application_fee_amount`,
so Stripe moves the expert's share with the capture. Otherwise the platform collects everything
and the core transfers the expert's share once onboarding is complete.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from billing.errors import ProviderError, WebhookRejected
from billing.providers import Captured, EventKind, Hold, HoldRequest, ProviderEvent, Refunded

STRIPE = "stripe"
WEBHOOK_TOLERANCE_SECONDS = 300
# A card authorisation lapses after 7 days; a session that would end later cannot be held now.
HOLD_WINDOW = timedelta(days=7)
# Checkout's own bounds for expires_at: 30 minutes to 24 hours from creation.
CHECKOUT_MIN = timedelta(minutes=30)
CHECKOUT_MAX = timedelta(hours=24)
_CHECKOUT_LOCALES = frozenset({"en", "fr", "de", "es", "ja", "zh"})
_RETRYABLE = (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)


class StripeProvider:
    name = STRIPE
    hold_window: timedelta | None = HOLD_WINDOW

    def __init__(
        self,
        api_key: str,
        webhook_secrets: Sequence[str],
        *,
        api_base: str | None = None,
        timeout: float = 30.0,
        network_retries: int = 2,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not api_key:
            raise ValueError("a Stripe API key is needed")
        if not webhook_secrets:
            raise ValueError("a webhook signing secret is needed")
        # Stripe signs platform and Connect endpoints with different secrets; both may point here.
        self._secrets = tuple(webhook_secrets)
        self._clock = clock  # Checkout's expiry bounds count from Stripe's now (tests move it)
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=network_retries,
            http_client=self._http,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def hold(self, request: HoldRequest, idempotency_key: str) -> Hold:
        now = self._clock()
        expires = min(max(request.expires_at, now + CHECKOUT_MIN), now + CHECKOUT_MAX)
        intent: dict[str, Any] = {
            "capture_method": "manual",
            "description": request.description,
            "metadata": {"session_id": request.session_id},
        }
        if request.payout_account:
            intent["transfer_data"] = {"destination": request.payout_account}
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": request.currency.lower(),
                        "unit_amount": request.amount,
                        "product_data": {"name": request.description},
                    },
                    "quantity": 1,
                }
            ],
            "payment_intent_data": intent,
            "metadata": {"session_id": request.session_id},
            "client_reference_id": request.session_id,
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "expires_at": int(expires.timestamp()),
        }
        if request.locale in _CHECKOUT_LOCALES:
            params["locale"] = request.locale
        checkout = await self._call(
            self._client.v1.checkout.sessions.create_async, params, idempotency_key=idempotency_key
        )
        return Hold(ref=checkout.id, authorised=False, url=checkout.url)

    async def _intent_of(self, hold: Hold, payment_ref: str | None) -> Any:
        if payment_ref is None:
            checkout = await self._call(self._client.v1.checkout.sessions.retrieve_async, hold.ref)
            payment_ref = checkout.payment_intent
            if payment_ref is None:
                return None
        return await self._call(self._client.v1.payment_intents.retrieve_async, payment_ref)

    async def capture(
        self, hold: Hold, payment_ref: str | None, amount: int, fee: int, idempotency_key: str
    ) -> Captured:
        intent = await self._intent_of(hold, payment_ref)
        if intent is None:
            raise ProviderError(f"checkout {hold.ref} was never paid", retryable=False, code="not_paid")
        destination = intent.transfer_data is not None
        params: dict[str, Any] = {"amount_to_capture": amount}
        if destination:
            params["application_fee_amount"] = fee
        captured = await self._call(
            self._client.v1.payment_intents.capture_async, intent.id, params, idempotency_key=idempotency_key
        )
        return Captured(
            ref=captured.id, amount=captured.amount_received, fee=fee, collected=True, paid_out=destination
        )

    async def cancel(self, hold: Hold, payment_ref: str | None, idempotency_key: str) -> None:
        if payment_ref is None:
            checkout = await self._call(self._client.v1.checkout.sessions.retrieve_async, hold.ref)
            if checkout.status == "open":
                # Not paid yet: expiring the page means it can never be paid later (and cancels an
                # intent a declined card left behind, which Stripe will not cancel on its own).
                await self._call(
                    self._client.v1.checkout.sessions.expire_async, hold.ref, idempotency_key=idempotency_key
                )
                return
            payment_ref = checkout.payment_intent
            if payment_ref is None:
                return
        intent = await self._call(self._client.v1.payment_intents.retrieve_async, payment_ref)
        if intent.status in ("canceled", "succeeded"):
            return
        await self._call(
            self._client.v1.payment_intents.cancel_async,
            intent.id,
            {"cancellation_reason": "abandoned"},
            idempotency_key=idempotency_key,
        )

    async def refund(self, payment_ref: str, amount: int, fee: int, idempotency_key: str) -> Refunded:
        intent = await self._call(self._client.v1.payment_intents.retrieve_async, payment_ref)
        destination = intent.transfer_data is not None
        params: dict[str, Any] = {"payment_intent": payment_ref, "amount": amount}
        if destination:
            params |= {"refund_application_fee": True, "reverse_transfer": True}
        refund = await self._call(
            self._client.v1.refunds.create_async, params, idempotency_key=idempotency_key
        )
        return Refunded(ref=refund.id, amount=refund.amount, fee=fee, payout_reversed=destination)

    async def create_payout_account(self, expert_id: str, email: str | None, idempotency_key: str) -> str:
        params: dict[str, Any] = {
            "type": "express",
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
            "metadata": {"expert_id": expert_id},
        }
        if email:
            params["email"] = email
        account = await self._call(
            self._client.v1.accounts.create_async, params, idempotency_key=idempotency_key
        )
        return str(account.id)

    async def onboarding_link(self, account_id: str, return_url: str, refresh_url: str) -> str:
        link = await self._call(
            self._client.v1.account_links.create_async,
            {
                "account": account_id,
                "refresh_url": refresh_url,
                "return_url": return_url,
                "type": "account_onboarding",
            },
        )
        return str(link.url)

    async def transfer(
        self, account_id: str, amount: int, currency: str, session_id: str, idempotency_key: str
    ) -> str:
        transfer = await self._call(
            self._client.v1.transfers.create_async,
            {
                "amount": amount,
                "currency": currency.lower(),
                "destination": account_id,
                "transfer_group": session_id,
                "metadata": {"session_id": session_id},
            },
            idempotency_key=idempotency_key,
        )
        return str(transfer.id)

    async def _call(self, method: Any, *args: Any, idempotency_key: str | None = None) -> Any:
        options = {"idempotency_key": idempotency_key} if idempotency_key else None
        try:
            return await method(*args, options=options)
        except _RETRYABLE as exc:
            raise ProviderError(f"Stripe did not answer: {exc.user_message or exc}", retryable=True) from exc
        except stripe.StripeError as exc:
            raise ProviderError(
                f"Stripe refused: {exc.user_message or exc}", retryable=False, code=exc.code
            ) from exc

    def verify_webhook(self, body: bytes, signature: str | None) -> ProviderEvent:
        if not signature:
            raise WebhookRejected("no Stripe-Signature header")
        rejection: stripe.SignatureVerificationError | None = None
        for secret in self._secrets:
            try:
                stripe.Webhook.construct_event(body, signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS)
            except stripe.SignatureVerificationError as exc:
                rejection = exc
                continue
            except ValueError as exc:
                raise WebhookRejected("not a JSON event") from exc
            break
        else:
            assert rejection is not None
            raise WebhookRejected(f"signature rejected: {rejection.user_message or rejection}") from rejection
        try:
            return _event(json.loads(body))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WebhookRejected("malformed event") from exc


def _event(raw: dict[str, Any]) -> ProviderEvent:
    kind_of = raw["type"]
    obj = raw["data"]["object"]
    if not isinstance(obj, dict):
        raise TypeError("data.object is not an object")
    common: dict[str, Any] = {
        "event_id": str(raw["id"]),
        "type": str(kind_of),
        "created": datetime.fromtimestamp(int(raw.get("created") or 0), UTC),
    }
    metadata = obj.get("metadata") or {}
    session_id = metadata.get("session_id")
    if kind_of == "checkout.session.completed":
        if obj.get("status") != "complete" or obj.get("payment_intent") is None:
            return ProviderEvent(kind=EventKind.IGNORED, **common)
        return ProviderEvent(
            kind=EventKind.AUTHORISED,
            session_id=session_id or obj.get("client_reference_id"),
            hold_ref=obj["id"],
            payment_ref=obj["payment_intent"],
            amount=obj.get("amount_total"),
            **common,
        )
    if kind_of == "payment_intent.amount_capturable_updated":
        return ProviderEvent(
            kind=EventKind.AUTHORISED,
            session_id=session_id,
            payment_ref=obj["id"],
            amount=obj.get("amount_capturable"),
            **common,
        )
    if kind_of == "checkout.session.expired":
        return ProviderEvent(kind=EventKind.HOLD_EXPIRED, session_id=session_id, hold_ref=obj["id"], **common)
    if kind_of == "payment_intent.canceled":
        return ProviderEvent(
            kind=EventKind.HOLD_CANCELLED, session_id=session_id, payment_ref=obj["id"], **common
        )
    if kind_of == "payment_intent.succeeded":
        return ProviderEvent(
            kind=EventKind.CAPTURED,
            session_id=session_id,
            payment_ref=obj["id"],
            amount=obj.get("amount_received"),
            **common,
        )
    if kind_of == "charge.refunded":
        return ProviderEvent(
            kind=EventKind.REFUNDED,
            session_id=session_id,
            payment_ref=obj.get("payment_intent"),
            amount=obj.get("amount_refunded"),
            **common,
        )
    if kind_of == "account.updated":
        ready = bool(obj.get("charges_enabled") and obj.get("payouts_enabled"))
        return ProviderEvent(
            kind=EventKind.ACCOUNT_UPDATED, account_id=obj["id"], payouts_enabled=ready, **common
        )
    return ProviderEvent(kind=EventKind.IGNORED, **common)
