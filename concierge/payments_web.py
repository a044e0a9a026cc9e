"""Payments in the aiohttp app: the cashier and its provider created and closed with the app, the
settlement sweep, the Stripe webhook endpoint, and the receipt and payment landing pages."""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from billing.errors import BillingError, WebhookRejected
from billing.invoice import InvoiceProvider
from billing.providers import PaymentProvider
from billing.stripe_provider import StripeProvider
from concierge.appkeys import SESSIONS, SETTINGS
from concierge.calendar_web import CALENDAR_LINKS, CalendarLinks, calendar_file
from concierge.config import Settings
from concierge.errors import NotFound
from concierge.payments import Cashier
from concierge.receipts import ReceiptLinks, receipt_facts, render_receipt
from knowledge.i18n import load_catalogues, negotiate

log = structlog.get_logger("concierge.payments")

CASHIER = web.AppKey("cashier", Cashier)
RECEIPTS = web.AppKey("receipt_links", ReceiptLinks)

SETTLE_EVERY_SECONDS = 2.0
MAX_WEBHOOK_BYTES = 256 * 1024  # Stripe's events are a few KiB; anything near this is not one
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def payment_provider(settings: Settings) -> PaymentProvider:
    if settings.stripe_api_key is None:
        return InvoiceProvider()
    assert settings.stripe_webhook_secret is not None  # the settings refuse one without the other
    return StripeProvider(
        settings.stripe_api_key.get_secret_value(),
        settings.stripe_webhook_secret.get_secret_value().replace(",", " ").split(),
        api_base=settings.stripe_api_base,
    )


async def payments_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    provider = payment_provider(settings)
    cashier = Cashier(settings, app[SESSIONS], provider)
    app[CASHIER] = cashier
    app[RECEIPTS] = ReceiptLinks(settings.signing_key, settings.base_url)
    app[CALENDAR_LINKS] = CalendarLinks(settings.signing_key, settings.base_url)
    log.info("payments", provider=provider.name)
    stop = asyncio.Event()
    task = asyncio.create_task(_settle_forever(cashier, stop), name="settlement")
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await provider.close()


async def _settle_forever(cashier: Cashier, stop: asyncio.Event) -> None:
    # Ended sessions are settled here rather than inside the room-event consumer, so a provider
    # that is slow or down delays settlement, never the lifecycle; a failure is retried next round.
    while not stop.is_set():
        try:
            await cashier.settle_due()
        except Exception as exc:
            log.warning("settlement sweep failed", error=repr(exc))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), SETTLE_EVERY_SECONDS)


async def stripe_webhook(request: web.Request) -> web.Response:
    cashier = request.app[CASHIER]
    if cashier.provider.name != "stripe":
        return web.json_response({"error": "Stripe is not configured"}, status=404)
    if request.content_length is not None and request.content_length > MAX_WEBHOOK_BYTES:
        return web.json_response({"error": "too large"}, status=413)
    body = await request.content.read(MAX_WEBHOOK_BYTES + 1)
    if len(body) > MAX_WEBHOOK_BYTES:
        return web.json_response({"error": "too large"}, status=413)
    try:
        event = cashier.provider.verify_webhook(body, request.headers.get("Stripe-Signature"))
    except WebhookRejected as exc:
        log.warning("webhook rejected", reason=exc.reason)
        return web.json_response({"error": exc.reason}, status=exc.status)
    outcome = await cashier.on_event(event, cashier.provider.name)
    return web.json_response({"received": True, "outcome": outcome})


def _page(language: str, title: str, text: str, status: int = 200) -> web.Response:
    page = (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{html.escape(title)}</title></head><body style="font-family:system-ui,sans-serif;'
        f'max-width:34rem;margin:2rem auto;padding:0 1rem"><h1>{html.escape(title)}</h1>'
        f"<p>{html.escape(text)}</p></body></html>"
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS)


def _language(request: web.Request) -> str:
    header = request.headers.get("Accept-Language", "")
    return negotiate(part.split(";")[0] for part in header.split(","))


async def receipt_page(request: web.Request) -> web.Response:
    t = load_catalogues()
    claims = request.app[RECEIPTS].verify(request.match_info["token"])
    if claims is None:
        language = _language(request)
        return _page(
            language, t.text("receipt.refused", language), t.text("receipt.refused_text", language), 403
        )
    session_id, role, language = claims
    try:
        facts = await receipt_facts(request.app[SESSIONS], session_id, role)
    except NotFound:
        return _page(
            language, t.text("receipt.refused", language), t.text("receipt.refused_text", language), 404
        )
    return web.Response(
        text=render_receipt(facts, role, language, t),
        content_type="text/html",
        charset="utf-8",
        headers=_HEADERS,
    )


async def paid_page(request: web.Request) -> web.Response:
    t, language = load_catalogues(), _language(request)
    if request.query.get("cancelled"):
        return _page(language, t.text("pay.cancelled", language), t.text("pay.back_to_chat", language))
    return _page(language, t.text("pay.thanks", language), t.text("pay.back_to_chat", language))


async def payouts_page(request: web.Request) -> web.Response:
    t, language = load_catalogues(), _language(request)
    return _page(language, t.text("payouts.page", language), t.text("pay.back_to_chat", language))


async def payouts_again(request: web.Request) -> web.Response:
    """Where Stripe sends an expert whose onboarding link expired: straight on to a fresh one."""
    cashier = request.app[CASHIER]
    expert_id = cashier.expert_of_payout_token(request.match_info["token"])
    if expert_id is None:
        t, language = load_catalogues(), _language(request)
        return _page(language, t.text("receipt.refused", language), t.text("pay.back_to_chat", language), 403)
    try:
        link = await cashier.payout_link(expert_id)
    except (BillingError, NotFound):
        link = None
    if link is None:
        return await payouts_page(request)
    raise web.HTTPFound(link)


def install(app: web.Application) -> None:
    app.cleanup_ctx.append(payments_ctx)
    app.router.add_post("/webhooks/stripe", stripe_webhook)
    app.router.add_get("/receipts/{token}", receipt_page)
    app.router.add_get("/calendar/{token}", calendar_file)
    app.router.add_get("/paid/{session_id}", paid_page)
    app.router.add_get("/payouts/done", payouts_page)
    app.router.add_get("/payouts/again/{token}", payouts_again)
