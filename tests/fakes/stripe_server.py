"""A local stand-in for the Stripe API (v1), driven by the unmodified stripe-python library.

``FakeStripe`` is an aiohttp server bound to 127.0.0.1 on a free port.  Point the real library at it
with ``stripe.StripeClient(fake.api_key, base_addresses={"api": fake.base_url}, max_network_retries=0)``
and the calls a Connect marketplace makes (Express accounts, onboarding links, Checkout Sessions with a
manual-capture hold, captures with an application fee, cancellations, refunds, events) are answered
the way Stripe answers them: form-encoded parameters in, JSON objects with an ``object`` field out,
errors as ``{"error": {"type", "code", "message", "param"}}`` with Stripe's HTTP status, so the library
raises the same exceptions (InvalidRequestError for 400/404, AuthenticationError for 401, IdempotencyError,
APIError for 5xx).  Webhooks are POSTed to registered endpoints, signed exactly like Stripe signs them, so
``stripe.Webhook.construct_event`` accepts them.  The hosted pages (Checkout's payment page, Connect
onboarding) are tiny HTML forms a test drives over HTTP (``pay``, ``complete_onboarding``).

Why not ``localstripe`` (PyPI): it has customers, PaymentIntents and refunds but no Connect accounts,
Account Links, Checkout Sessions, application fees, transfers or ``transfer_data`` -- the whole
marketplace half this project needs.

Usage::

    async with FakeStripe() as fake:
        client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.base_url},
                                     max_network_retries=0)
        secret = fake.add_webhook("http://127.0.0.1:8000/stripe/webhook")
        account = await client.v1.accounts.create_async({"type": "express", "country": "DE"})
        await fake.complete_onboarding(account.id)
        session = await client.v1.checkout.sessions.create_async({...})
        intent_id = await fake.pay(session.id)              # the customer pays on the hosted page
        await client.v1.payment_intents.capture_async(intent_id, {"amount_to_capture": 900,
                                                                  "application_fee_amount": 180})
        await fake.wait_delivered()
        assert fake.balance[account.id]["eur"] == 720

Everything runs on the caller's event loop and nothing sleeps: webhook deliveries run in one background
task, in emission order, and ``wait_delivered()`` / ``wait_until()`` wait on events of the fake.  The
synchronous helpers that emit events (``expire_session``, ``expire_authorization``) must be called from
code running on that loop.  ``reset()`` forgets all objects and records but keeps the key and endpoints.

What it emulates
    * Auth: every ``/v1`` call needs ``Authorization: Bearer <api_key>`` (or HTTP Basic with the key as
      user name); anything else is 401 ``invalid_request_error`` "Invalid API Key provided" (the type
      Stripe really sends; stripe-python raises AuthenticationError on the status).
    * Parameters as stripe-python encodes them: ``a[b][c]=v``, arrays ``a[0][b]=v`` (and ``a[]=v``),
      booleans ``true``/``false``; integers and booleans are checked ("Invalid integer: x").  Each
      endpoint accepts only the parameters it emulates: any other is refused like Stripe refuses an
      unknown one (400 ``parameter_unknown``), so a request relying on something the fake ignores fails
      loudly instead of passing here and behaving differently there.  ``expand`` works on every
      endpoint for the references listed in ``_EXPANDABLE`` (nested paths such as
      ``payment_intent.latest_charge``); anything else is "This property cannot be expanded".
      ``metadata`` follows Stripe's limits (50 keys, keys up to 40 characters, values up to 500).
    * Idempotency: a POST's ``Idempotency-Key`` (stripe-python sends one on every POST) is remembered
      per API key with the response; the same key and parameters again replays the stored status and
      body byte for byte with ``Idempotent-Replayed: true`` and changes nothing; other parameters or
      another endpoint with the same key is 400 ``idempotency_error``.  As on Stripe, responses to
      requests that failed validation (bad or missing parameters, unknown objects) are not stored;
      successes and state errors (``payment_intent_unexpected_state``...) are.
    * Connect Express accounts: create (type, country, email, business_type, capabilities, metadata),
      retrieve, update (email, metadata), login links once onboarded; Account Links
      (``account_onboarding``) whose URL opens the fake's onboarding page; submitting it (what the
      browser does when the expert finishes; ``complete_onboarding``) turns on ``charges_enabled``,
      ``payouts_enabled``, ``details_submitted``, marks the requested capabilities active and emits
      ``account.updated`` with ``previous_attributes`` and ``"account": acct_id`` -- an event *of the
      connected account*, so, as on Stripe, only endpoints registered with ``connect=True`` receive it.
      The page redirects to the link's ``return_url``; an expired or already used link redirects to
      its ``refresh_url``.
    * Checkout Sessions, ``mode=payment`` with ``line_items[n][price_data]`` (currency, unit_amount,
      product_data[name|description]), quantity, ``payment_intent_data`` (capture_method,
      transfer_data[destination], application_fee_amount, metadata, description), metadata,
      client_reference_id, success_url, cancel_url, customer_email, locale (Stripe's list: ``uk`` is
      refused, as there), expires_at (30 minutes to 24 hours ahead), payment_method_types=[card],
      submit_type.  All line items in one currency; the total at least Stripe's minimum charge for the
      currency (50 for usd/eur/jpy..., 30 for gbp) and at most 99,999,999; amounts in minor units,
      zero-decimal currencies (JPY...) as plain integers.  A destination must exist and have finished
      onboarding (``insufficient_capabilities_for_transfer`` otherwise); an application fee needs a
      destination.  Retrieve (``expand[]=payment_intent``), ``/line_items``, ``/expire`` (only when
      open: emits ``checkout.session.expired`` and cancels a PaymentIntent left by a declined attempt).
      ``url`` is null once the session is no longer open, as on Stripe.
    * The hosted payment page ``GET/POST /checkout/pay/{id}`` (form field ``card``): 4242424242424242
      and 5555555555554444 succeed; 4000000000000002 (generic_decline), 4000000000009995
      (insufficient_funds), 4000000000000069 (expired_card), 4000000000000127 (incorrect_cvc) and
      4000000000000119 (processing_error) are declined; other numbers are "incorrect".  As on Stripe
      (API versions since 2022-08-01) the PaymentIntent is created when the customer first submits;
      the session then references it.  Success with manual capture: PaymentIntent
      ``requires_capture`` with ``amount_capturable``, an uncaptured charge, the session ``complete``
      with ``payment_status`` ``unpaid``; automatic capture goes straight to ``succeeded`` (session
      ``paid``) with the transfer and fee below.  A decline leaves the session open with the
      PaymentIntent in ``requires_payment_method`` (``last_payment_error`` with the decline code) and
      a failed charge; the next attempt reuses the PaymentIntent.  On success the page redirects to
      ``success_url`` with ``{CHECKOUT_SESSION_ID}`` filled in.
    * PaymentIntents: retrieve; capture (``amount_to_capture`` defaulting to all of
      ``amount_capturable``, ``application_fee_amount`` defaulting to the intent's) only from
      ``requires_capture``; the rest of the hold is released (counted in the charge's
      ``amount_refunded``, as Stripe does).  With a destination, the *whole* captured amount is
      transferred (``fake.transfers``) and the application fee is then collected from the connected
      account (``fake.application_fees``), which is how Stripe moves money for destination charges;
      the connected account nets captured - fee (``fake.balance``).  Cancel (cancellation_reason) from
      requires_payment_method / requires_capture / requires_confirmation / requires_action; not while
      the intent belongs to an open Checkout Session ("Expire the Checkout Session instead", Stripe's
      rule).
    * Separate transfers (``POST /v1/transfers``: amount, currency, destination, transfer_group,
      metadata) from the platform's balance to an onboarded connected account, refused with
      ``balance_insufficient`` when the platform's balance does not cover them; ``transfer.created``.
    * Refunds by ``payment_intent`` or ``charge``: amount (default: what is left), reason, metadata,
      ``refund_application_fee`` (the fee is refunded in proportion, rounded half up on the running total,
      so the parts of successive refunds add up to the whole fee) and
      ``reverse_transfer`` (the transfer is reversed in proportion, the same way); only for succeeded
      intents; more than what is left is ``amount_too_large``, nothing left ``charge_already_refunded``.
    * Events for every state change (listed per action below), kept in ``fake.events`` and served by
      ``GET /v1/events/{id}`` and ``GET /v1/events`` (type, limit, starting_after; newest first).
      ``request`` carries the request id and idempotency key of the API call that caused the event,
      nulls for the hosted pages and test helpers.
    * Webhooks (``add_webhook``): each event is POSTed as JSON to every endpoint that subscribes to it,
      with ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.payload")>``; one delivery at
      a time, in emission order; each recorded in ``fake.deliveries`` (status 0 when the connection
      failed).  Test controls: ``hold_webhooks`` / ``release_webhooks(order=..., seed=...)``,
      ``redeliver`` (same event, fresh signature), ``deliver_stale`` (old timestamp),
      ``retry_failed`` (Stripe's later retries, only when asked), ``wait_delivered``.
    * Faults: ``fail_before`` (the next matching POSTs fail and do nothing) and ``fail_after`` (they do
      the work, store the response for the idempotency key, then answer an error as if the answer was
      lost, so a retry with the same key replays the stored success).  Unknown routes answer 404
      "Unrecognized request URL" and are recorded in ``fake.unknown_routes``; a crash inside the fake
      answers 500 ``api_error`` and is recorded in ``fake.server_errors`` (tests should assert both
      stay empty).
    * Balances (``fake.balance[account][currency]``, the platform under ``"platform"``): captures credit
      the platform, transfers and fees move money to and from connected accounts, refunds debit the
      platform, reversals and fee refunds move it back.

Events per action
    account create: none (Stripe sends account.updated to Connect endpoints only on changes).
    account update: account.updated.  Onboarding submitted: account.updated.
    checkout create: none.  Checkout expire: payment_intent.canceled (if a declined attempt left an
    intent), checkout.session.expired.
    payment, manual capture: payment_intent.created (first attempt), charge.succeeded,
    checkout.session.completed, payment_intent.amount_capturable_updated.
    payment, automatic capture: payment_intent.created, charge.succeeded, payment_intent.succeeded,
    transfer.created, application_fee.created (those two with a destination / a fee),
    checkout.session.completed.
    payment declined: payment_intent.created (first attempt), charge.failed, payment_intent.payment_failed.
    capture: payment_intent.succeeded, charge.captured, transfer.created, application_fee.created.
    cancel: payment_intent.canceled.  ``expire_authorization``: charge.expired, payment_intent.canceled.
    refund: charge.refunded, refund.created, application_fee.refunded (with refund_application_fee),
    transfer.reversed (with reverse_transfer).

What it does not emulate
    Stripe's own processing fees (balances move by exactly the amounts above), balance transactions as
    objects (``balance_transaction`` ids are placeholders), payouts, disputes, customers, payment
    methods as objects, PaymentIntents created directly (only through Checkout), Checkout modes other
    than ``payment``, prices and products as objects (``price_data`` only), ``transfer_data[amount]``,
    ``on_behalf_of``, the ``Stripe-Account`` header (refused with 400), other account types than
    Express, three-decimal currencies' rules, 3-D Secure, the 7-day authorization expiry and the 24-hour
    session expiry on their own (call ``expire_authorization`` / ``expire_session``), list endpoints
    other than events, automatic webhook retries, rate limits (inject them with ``fail_before(...,
    status=429)``), test clocks, API-version-dependent shapes (objects have the current shape whatever
    ``Stripe-Version`` says; events carry the version the client sent).  One deliberate difference:
    Stripe silently caps an application fee at the captured amount; the fake refuses a larger fee with
    400 so that a commission bug surfaces.  Amounts in error messages are formatted "12.34 EUR", not
    "€12.34".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import html
import json
import random
import re
import secrets
import socket
import string
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web

__all__ = ["Call", "Delivery", "FakeStripe", "HostedPageError", "WebhookEndpoint", "sign_payload"]

JSONDict = dict[str, Any]

DEFAULT_API_KEY = "sk_test_concierge"
# What stripe-python 16 pins; events carry the Stripe-Version of the latest request instead when known.
DEFAULT_API_VERSION = "2026-10-28.endive"
PLATFORM = "platform"

# https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
# Minimum charge amounts in minor units (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts);
# the other supported currencies use 50.
MINIMUM_CHARGE = {
    "usd": 50, "eur": 50, "gbp": 30, "chf": 50, "cad": 50, "aud": 50, "nzd": 50, "sgd": 50, "brl": 50,
    "inr": 50, "jpy": 50, "sek": 300, "nok": 300, "dkk": 250, "pln": 200, "czk": 1500, "huf": 17500,
    "mxn": 1000, "hkd": 400, "ron": 200, "bgn": 100, "thb": 1000, "aed": 200, "myr": 200, "krw": 100,
}  # fmt: skip
SUPPORTED_CURRENCIES = frozenset(MINIMUM_CHARGE) | ZERO_DECIMAL_CURRENCIES
MAXIMUM_AMOUNT = 99_999_999
# A new account's default currency by country (the others: eur).
COUNTRY_CURRENCY = {
    "US": "usd", "GB": "gbp", "CH": "chf", "JP": "jpy", "CA": "cad", "AU": "aud", "SE": "sek", "NO": "nok",
    "DK": "dkk", "PL": "pln", "CZ": "czk", "HU": "huf", "MX": "mxn", "BR": "brl", "IN": "inr", "SG": "sgd",
}  # fmt: skip
CHECKOUT_LOCALES = frozenset(
    {
        "auto", "bg", "cs", "da", "de", "el", "en", "en-GB", "es", "es-419", "et", "fi", "fil", "fr", "fr-CA",
        "hr", "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "mt", "nb", "nl", "pl", "pt", "pt-BR", "ro",
        "ru", "sk", "sl", "sv", "th", "tr", "vi", "zh", "zh-HK", "zh-TW",
    }
)  # fmt: skip

# card number -> None (succeeds) or (error code, decline code, message)
TEST_CARDS: dict[str, tuple[str, str, str] | None] = {
    "4242424242424242": None,
    "5555555555554444": None,
    "4000000000000002": ("card_declined", "generic_decline", "Your card was declined."),
    "4000000000009995": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "4000000000000069": ("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "4000000000000119": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}

# Which fields of which objects ``expand`` may replace by the object they reference.
_EXPANDABLE: dict[str, frozenset[str]] = {
    "checkout.session": frozenset({"payment_intent"}),
    "payment_intent": frozenset({"latest_charge"}),
    "charge": frozenset({"payment_intent", "application_fee", "transfer"}),
    "refund": frozenset({"charge", "payment_intent"}),
    "application_fee": frozenset({"charge", "account"}),
    "transfer": frozenset({"destination", "source_transaction"}),
}
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")

_ANY = True  # schema leaf: any value (checked by the handler itself)
_METADATA = "metadata"  # schema leaf: Stripe's metadata rules


# -- errors -------------------------------------------------------------------------------------------


class _StripeError(Exception):
    """An error answer; ``stored`` says whether it is remembered for the idempotency key (Stripe does not
    store answers to requests that failed validation, it does store those of requests that ran)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        stored: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.stored = stored

    def body(self) -> JSONDict:
        error: JSONDict = {"type": self.type, "message": self.message}
        for key in ("code", "param", "decline_code"):
            if getattr(self, key) is not None:
                error[key] = getattr(self, key)
        return {"error": error}


def _invalid(message: str, param: str | None = None, code: str | None = None) -> _StripeError:
    return _StripeError(400, message, param=param, code=code, stored=False)


def _missing_param(param: str) -> _StripeError:
    return _invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def _no_such(kind: str, object_id: str, param: str = "id") -> _StripeError:
    return _StripeError(
        404, f"No such {kind}: '{object_id}'", param=param, code="resource_missing", stored=False
    )


def _unexpected_state(message: str) -> _StripeError:
    return _StripeError(400, message, code="payment_intent_unexpected_state")


class HostedPageError(RuntimeError):
    """A hosted page (payment, onboarding) refused what a test helper submitted."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"hosted page answered {status}: {_page_text(text)}")
        self.status = status
        self.text = text


# -- records ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request to the ``/v1`` API, as the fake saw and answered it."""

    method: str
    path: str
    params: JSONDict
    idempotency_key: str | None
    replayed: bool
    status: int
    request_id: str
    error_code: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One webhook POST.  ``kind``: "live" (as emitted), "redelivery", "stale" or "retry"."""

    event_id: str
    event_type: str
    url: str
    status: int  # 0: the connection failed
    kind: str
    signed_at: int
    error: str | None = None


@dataclass
class WebhookEndpoint:
    url: str
    secret: str
    enabled_events: tuple[str, ...] = ("*",)
    connect: bool = False

    def wants(self, event: JSONDict) -> bool:
        if ("account" in event) != self.connect:
            return False
        return "*" in self.enabled_events or event["type"] in self.enabled_events


@dataclass
class _Fault:
    when: str  # "before" | "after"
    pattern: re.Pattern[str]
    remaining: int
    status: int


@dataclass
class _Stored:
    method: str
    path: str
    fingerprint: str
    status: int
    body: str


@dataclass
class _Context:
    """Who caused a state change: an API request (ids for the event's ``request``) or the fake itself."""

    request_id: str | None = None
    idempotency_key: str | None = None


@dataclass
class _SessionExtra:
    """What a Checkout Session keeps that the API does not show."""

    line_items: list[JSONDict]
    capture_method: str
    destination: str | None
    application_fee_amount: int | None
    pi_metadata: dict[str, str]
    pi_description: str | None


@dataclass
class _AccountLink:
    account: str
    refresh_url: str
    return_url: str
    expires_at: int
    used: bool = False


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., JSONDict]
    schema: dict[str, Any] = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------------------

_ID_ALPHABET = string.ascii_letters + string.digits


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _now() -> int:
    return int(time.time())


def sign_payload(payload: str, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value Stripe sends for ``payload`` signed at ``timestamp``."""
    signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def _format_amount(amount: int, currency: str) -> str:
    if currency in ZERO_DECIMAL_CURRENCIES:
        return f"{amount} {currency.upper()}"
    return f"{amount // 100}.{amount % 100:02d} {currency.upper()}"


def _proportion(total: int, part: int, whole: int) -> int:
    """``total * part / whole`` rounded half up, in integers (no float error on large amounts)."""
    return (2 * total * part + whole) // (2 * whole)


def _share(total: int, before: int, amount: int, whole: int) -> int:
    """The part of ``total`` that refunding ``amount`` (after ``before`` was refunded) of ``whole`` is
    worth: the difference of the rounded cumulative shares, so that the parts of successive refunds add
    up to exactly ``total`` when the whole is refunded."""
    return _proportion(total, before + amount, whole) - _proportion(total, before, whole)


def _page_text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)).strip()[:300]


def _empty_list(url: str) -> JSONDict:
    return {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": url}


_KEY_RE = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SUBKEY_RE = re.compile(r"\[([^\[\]]*)\]")


def parse_params(pairs: Iterable[tuple[str, str]]) -> JSONDict:
    """Form pairs with bracketed keys (``a[b][0][c]=v``, ``a[]=v``) -> nested dicts and lists, the way
    Stripe reads stripe-python's encoding.  Maps with only numeric keys become lists, except metadata
    (whose keys are the user's)."""
    root: JSONDict = {}
    for raw_key, value in pairs:
        match = _KEY_RE.fullmatch(raw_key)
        if match is None:
            raise _invalid(f"Invalid parameter name: {raw_key}")
        parts = [match.group(1), *_SUBKEY_RE.findall(match.group(2))]
        node: JSONDict = root
        for depth, part in enumerate(parts):
            if part == "":  # a[]=v appends
                part = str(len(node))
            last = depth == len(parts) - 1
            if last:
                if isinstance(node.get(part), dict):
                    raise _invalid(f"Invalid hash: {raw_key} is both a value and an object", param=raw_key)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise _invalid(f"Invalid hash: {raw_key} is both a value and an object", param=raw_key)
                node = child
    return {key: _listify(value, key) for key, value in root.items()}  # the top level stays a map


def _listify(node: Any, key: str) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if key != "metadata" and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _check_known(value: Any, schema: Any, where: str) -> None:
    """Refuse parameters the fake does not emulate, with Stripe's message for unknown parameters."""
    if schema is _ANY or schema == _METADATA:
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise _invalid(f"Invalid array: {where}", param=where)
        for index, item in enumerate(value):
            _check_known(item, schema[0], f"{where}[{index}]")
        return
    if not isinstance(value, dict):
        raise _invalid(f"Invalid object: {where}", param=where)
    for key, sub in value.items():
        name = f"{where}[{key}]" if where else key
        if key not in schema:
            raise _invalid(
                f"Received unknown parameter: {name} (FakeStripe accepts only the parameters it emulates; "
                "see tests/fakes/stripe_server.py)",
                param=name,
                code="parameter_unknown",
            )
        _check_known(sub, schema[key], name)


def _as_str(value: Any, param: str, *, max_length: int = 5000) -> str:
    if not isinstance(value, str):
        raise _invalid(f"Invalid string: {value!r}", param=param, code="parameter_invalid_string")
    if len(value) > max_length:
        raise _invalid(
            f"Invalid string: {value[:20]}...; must be at most {max_length} characters",
            param=param,
            code="parameter_invalid_string_too_long",
        )
    return value


def _as_int(value: Any, param: str, *, minimum: int | None = 0) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,18}", value.strip()):
        raise _invalid(f"Invalid integer: {value}", param=param, code="parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        word = "positive" if minimum >= 1 else "non-negative"
        raise _invalid(f"Invalid {word} integer", param=param, code="parameter_invalid_integer")
    return number


def _as_bool(value: Any, param: str) -> bool:
    if value in ("true", "false"):
        return bool(value == "true")
    raise _invalid(f"Invalid boolean: {value}", param=param)


def _as_enum(value: Any, param: str, allowed: Iterable[str]) -> str:
    options = list(allowed)
    if value not in options:
        raise _invalid(f"Invalid {param}: must be one of {', '.join(options)}", param=param)
    return str(value)


def _as_url(value: Any, param: str) -> str:
    text = _as_str(value, param, max_length=5000)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid("Not a valid URL", param=param, code="url_invalid")
    return text


def _as_email(value: Any, param: str) -> str:
    text = _as_str(value, param, max_length=800)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise _invalid(f"Invalid email address: {text}", param=param, code="email_invalid")
    return text


def _as_metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise _invalid("Invalid object", param=param)
    if len(value) > 50:
        raise _invalid("Metadata can have at most 50 keys.", param=param)
    result: dict[str, str] = {}
    for key, item in value.items():
        if len(key) > 40:
            raise _invalid(f"Metadata keys can have at most 40 characters: {key}", param=f"{param}[{key}]")
        if not isinstance(item, str):
            raise _invalid("Metadata values must be strings", param=f"{param}[{key}]")
        if len(item) > 500:
            raise _invalid("Metadata values can have at most 500 characters", param=f"{param}[{key}]")
        result[key] = item
    return result


def _fingerprint(params: JSONDict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _dumps(value: Any) -> str:
    # Stripe answers pretty-printed JSON; the exact text matters only for replays, which reuse it.
    return json.dumps(value, indent=2, ensure_ascii=False)


# -- the fake -----------------------------------------------------------------------------------------


class FakeStripe:
    """A fake Stripe API server; see the module docstring."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        api_version: str | None = None,
        webhook_timeout: float = 10.0,
    ) -> None:
        self.api_key = api_key
        self.api_version = api_version
        self.webhook_timeout = webhook_timeout
        self.base_url = ""
        self.port = 0

        # Stripe objects by id (insertion-ordered), what tests assert on.
        self.accounts: dict[str, JSONDict] = {}
        self.checkout_sessions: dict[str, JSONDict] = {}
        self.payment_intents: dict[str, JSONDict] = {}
        self.charges: dict[str, JSONDict] = {}
        self.refunds: dict[str, JSONDict] = {}
        self.transfers: dict[str, JSONDict] = {}
        self.application_fees: dict[str, JSONDict] = {}
        self.balance: dict[str, dict[str, int]] = {}
        self.events: list[JSONDict] = []

        # What happened on the wire.
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self.unknown_routes: list[tuple[str, str]] = []
        self.server_errors: list[str] = []
        self.webhooks: list[WebhookEndpoint] = []

        self._session_extra: dict[str, _SessionExtra] = {}
        self._session_of_intent: dict[str, str] = {}
        self._account_links: dict[str, _AccountLink] = {}
        self._last_link: dict[str, str] = {}  # account -> token of its latest link
        self._idempotency: dict[tuple[str, str], _Stored] = {}
        self._faults: list[_Fault] = []
        self._payloads: dict[str, str] = {}  # event id -> the JSON text every delivery sends
        self._seen_version: str | None = None

        self._holding = False
        self._held: list[tuple[str, WebhookEndpoint]] = []
        self._outbox: deque[tuple[str, WebhookEndpoint]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._closing = False

        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._routes = self._build_routes()

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/v1/{tail:.*}", self._api)
        app.router.add_route("GET", "/checkout/pay/{session}", self._checkout_page)
        app.router.add_route("POST", "/checkout/pay/{session}", self._checkout_submit)
        app.router.add_route("GET", "/connect/onboard/{account}", self._onboarding_page)
        app.router.add_route("POST", "/connect/onboard/{account}", self._onboarding_submit)
        app.router.add_route("GET", "/connect/express/{account}", self._express_dashboard)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.webhook_timeout))
        self._closing = False

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeStripe:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def reset(self) -> None:
        """Forget every object, event, record, stored idempotent answer, fault and held delivery; keep
        the API key and the webhook endpoints."""
        for store in (
            self.accounts,
            self.checkout_sessions,
            self.payment_intents,
            self.charges,
            self.refunds,
            self.transfers,
            self.application_fees,
            self.balance,
            self._session_extra,
            self._session_of_intent,
            self._account_links,
            self._last_link,
            self._idempotency,
            self._payloads,
        ):
            store.clear()
        for records in (self.events, self.calls, self.deliveries, self.unknown_routes, self.server_errors):
            records.clear()
        self._faults.clear()
        self._held.clear()
        self._holding = False
        self._notify()

    # -- test API: webhooks ---------------------------------------------------------------------------

    def add_webhook(
        self,
        url: str,
        secret: str | None = None,
        *,
        enabled_events: Iterable[str] = ("*",),
        connect: bool = False,
    ) -> str:
        """Register an endpoint and return its signing secret (``whsec_test_...`` unless given).  A
        ``connect`` endpoint receives the events of connected accounts (``account.updated``) and only
        those, as a Stripe Connect webhook does."""
        secret = secret or _new_id("whsec_test_", 32)
        self.webhooks.append(WebhookEndpoint(url, secret, tuple(enabled_events), connect))
        return secret

    def hold_webhooks(self) -> None:
        """Queue deliveries instead of sending them until ``release_webhooks``."""
        self._holding = True

    async def release_webhooks(
        self, order: str = "as_emitted", *, seed: int | None = None, timeout: float = 10.0
    ) -> int:
        """Send the held deliveries in the given order ("as_emitted", "reversed", "shuffled" with
        ``seed``), stop holding, and wait until they are all done.  Returns how many were sent."""
        held, self._held = self._held, []
        self._holding = False
        if order == "reversed":
            held.reverse()
        elif order == "shuffled":
            random.Random(seed).shuffle(held)
        elif order != "as_emitted":
            raise ValueError(f"unknown order {order!r}")
        self._enqueue(held)
        await self.wait_delivered(timeout=timeout)
        return len(held)

    @property
    def held_webhooks(self) -> list[tuple[str, str]]:
        """(event id, url) of the deliveries waiting for ``release_webhooks``."""
        return [(event_id, endpoint.url) for event_id, endpoint in self._held]

    async def wait_delivered(self, *, timeout: float = 10.0) -> None:
        """Wait until every queued delivery was attempted (held ones do not count)."""
        await self.wait_until(lambda: not self._outbox, timeout=timeout, what="all webhook deliveries done")

    async def redeliver(self, event_id: str, *, url: str | None = None) -> list[Delivery]:
        """Send an event again, same id and payload, freshly signed: what Stripe's retries and the
        Dashboard's "resend" look like to the receiver."""
        return await self._send_now(event_id, url, kind="redelivery", age=0)

    async def deliver_stale(
        self, event_id: str, *, age_seconds: int = 600, url: str | None = None
    ) -> list[Delivery]:
        """Send an event with a signature timestamp ``age_seconds`` in the past (a replayed capture)."""
        return await self._send_now(event_id, url, kind="stale", age=age_seconds)

    async def retry_failed(self) -> list[Delivery]:
        """Retry every (event, endpoint) whose latest attempt did not get a 2xx, as Stripe does later on
        its own schedule; returns the new attempts."""
        latest: dict[tuple[str, str], Delivery] = {}
        for delivery in self.deliveries:
            if delivery.kind in ("live", "retry"):  # a test's stale or extra copies are not Stripe's to retry
                latest[(delivery.event_id, delivery.url)] = delivery
        attempts: list[Delivery] = []
        for (event_id, url), delivery in latest.items():
            if not 200 <= delivery.status < 300:
                attempts.extend(await self._send_now(event_id, url, kind="retry", age=0))
        return attempts

    def deliveries_to(self, url: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.url == url]

    # -- test API: faults -----------------------------------------------------------------------------

    def fail_before(self, path_regex: str, *, times: int = 1, status: int = 500) -> None:
        """The next ``times`` POSTs whose path matches (``re.search``) answer ``status`` without doing
        anything (nothing stored for their idempotency key)."""
        self._faults.append(_Fault("before", re.compile(path_regex), times, status))

    def fail_after(self, path_regex: str, *, times: int = 1, status: int = 500) -> None:
        """The next ``times`` POSTs whose path matches do their work (state changes, events, the answer
        stored for the idempotency key) but answer ``status`` instead, as if the answer was lost."""
        self._faults.append(_Fault("after", re.compile(path_regex), times, status))

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- test API: the customer, the expert and time --------------------------------------------------

    async def pay(
        self, session_id: str, card: str = "4242424242424242", *, email: str | None = None
    ) -> str | None:
        """Submit the hosted payment page like a customer's browser; returns the PaymentIntent id, or
        None when the card was declined.  Raises HostedPageError when the page refuses (unknown or no
        longer open session, invalid card number)."""
        form = {"card": card}
        if email:
            form["email"] = email
        status, text = await self._post_page(f"/checkout/pay/{session_id}", form)
        if status == 402:
            return None
        if status not in (200, 303):
            raise HostedPageError(status, text)
        intent: str = self.checkout_sessions[session_id]["payment_intent"]
        return intent

    async def complete_onboarding(self, account_id: str) -> None:
        """Submit the Connect onboarding page like the expert's browser at the end of onboarding."""
        status, text = await self._post_page(f"/connect/onboard/{account_id}", {"submit": "done"})
        if status not in (200, 303):
            raise HostedPageError(status, text)

    def expire_session(self, session_id: str) -> JSONDict:
        """What Stripe does when an open session reaches ``expires_at``."""
        session = self._object(self.checkout_sessions, "checkout.session", session_id)
        if session["status"] != "open":
            raise ValueError(f"{session_id} is {session['status']}, not open")
        self._expire(session, _Context())
        return session

    def expire_authorization(self, intent_id: str) -> JSONDict:
        """What Stripe does when an uncaptured authorization is 7 days old: the intent is canceled."""
        intent = self._object(self.payment_intents, "payment_intent", intent_id)
        if intent["status"] != "requires_capture":
            raise ValueError(f"{intent_id} is {intent['status']}, not requires_capture")
        charge = self.charges[intent["latest_charge"]]
        charge.update(refunded=True, amount_refunded=charge["amount"])
        self._emit("charge.expired", charge, _Context())
        self._cancel(intent, "automatic", _Context())
        return intent

    # -- test API: inspection -------------------------------------------------------------------------

    def events_of(self, event_type: str) -> list[JSONDict]:
        return [event for event in self.events if event["type"] == event_type]

    def event_types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def calls_to(self, path_regex: str, method: str | None = None) -> list[Call]:
        pattern = re.compile(path_regex)
        return [c for c in self.calls if pattern.search(c.path) and (method is None or c.method == method)]

    async def wait_until(
        self, condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "the condition"
    ) -> None:
        """Wait until ``condition()`` holds; checked after every call, event and delivery."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise TimeoutError(f"{what} did not hold within {timeout}s\n{self.describe()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def describe(self, last: int = 12) -> str:
        """A readable dump of the recent state, for failure messages."""
        lines = [
            f"objects: {len(self.accounts)} accounts, {len(self.checkout_sessions)} checkout sessions, "
            f"{len(self.payment_intents)} payment intents, {len(self.refunds)} refunds, "
            f"{len(self.transfers)} transfers, {len(self.application_fees)} application fees",
            f"balance: {self.balance}",
            f"calls ({len(self.calls)}, last {min(last, len(self.calls))}):",
        ]
        for call in self.calls[-last:]:
            flags = " REPLAYED" if call.replayed else ""
            error = f" {call.error_code}" if call.error_code else ""
            lines.append(
                f"  {call.method} {call.path} -> {call.status}{error}{flags} key={call.idempotency_key}"
            )
        for intent in list(self.payment_intents.values())[-last:]:
            lines.append(
                f"  {intent['id']} {intent['status']} amount={intent['amount']} "
                f"capturable={intent['amount_capturable']} received={intent['amount_received']} "
                f"{intent['currency']}"
            )
        lines.append(f"events ({len(self.events)}): {self.event_types()[-last:]}")
        lines.append(
            f"deliveries ({len(self.deliveries)}, queued {len(self._outbox)}, held {len(self._held)}): "
            + ", ".join(f"{d.event_type}->{d.status}" for d in self.deliveries[-last:])
        )
        if self.unknown_routes:
            lines.append(f"unknown routes: {self.unknown_routes[-last:]}")
        if self.server_errors:
            lines.append(f"fake server errors: {self.server_errors[-3:]}")
        return "\n".join(lines)

    # -- internals: state -----------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _credit(self, account: str, currency: str, amount: int) -> None:
        per_currency = self.balance.setdefault(account, {})
        per_currency[currency] = per_currency.get(currency, 0) + amount

    def _object(self, store: dict[str, JSONDict], kind: str, object_id: str, param: str = "id") -> JSONDict:
        found = store.get(object_id)
        if found is None:
            raise _no_such(kind, object_id, param)
        return found

    def _lookup(self, object_id: str) -> JSONDict | None:
        for store in (
            self.accounts,
            self.checkout_sessions,
            self.payment_intents,
            self.charges,
            self.refunds,
            self.transfers,
            self.application_fees,
        ):
            if object_id in store:
                return store[object_id]
        return None

    def _expanded(self, obj: JSONDict, expand: Any) -> JSONDict:
        if expand is None:
            return copy.deepcopy(obj)
        paths = expand if isinstance(expand, list) else [expand]
        result = copy.deepcopy(obj)
        for path in paths:
            if not isinstance(path, str):
                raise _invalid("Invalid array", param="expand")
            self._expand_path(result, path.split("."), path)
        return result

    def _expand_path(self, obj: JSONDict, parts: list[str], full: str) -> None:
        head, rest = parts[0], parts[1:]
        if head not in _EXPANDABLE.get(obj.get("object", ""), frozenset()):
            raise _invalid(f"This property cannot be expanded ({full}).", param="expand")
        value = obj.get(head)
        if isinstance(value, str):
            target = self._lookup(value)
            if target is not None:
                value = copy.deepcopy(target)
                obj[head] = value
        if rest and isinstance(value, dict):
            self._expand_path(value, rest, full)

    def _emit(
        self,
        event_type: str,
        obj: JSONDict,
        ctx: _Context,
        *,
        previous: JSONDict | None = None,
        account: str | None = None,
    ) -> JSONDict:
        data: JSONDict = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event: JSONDict = {
            "id": _new_id("evt_"),
            "object": "event",
            "api_version": self.api_version or self._seen_version or DEFAULT_API_VERSION,
            "created": _now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
            "type": event_type,
        }
        if account is not None:
            event["account"] = account
        endpoints = [endpoint for endpoint in self.webhooks if endpoint.wants(event)]
        event["pending_webhooks"] = len(endpoints)
        self.events.append(event)
        self._payloads[event["id"]] = _dumps(event)
        pairs = [(event["id"], endpoint) for endpoint in endpoints]
        if self._holding:
            self._held.extend(pairs)
        else:
            self._enqueue(pairs)
        self._notify()
        return event

    # -- internals: webhook delivery ------------------------------------------------------------------

    def _enqueue(self, pairs: list[tuple[str, WebhookEndpoint]]) -> None:
        if not pairs:
            return
        self._outbox.extend(pairs)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        # One delivery at a time, so the receiver sees events in the order they were queued.  The pair
        # stays in the outbox while in flight, so wait_delivered() waits for it too.
        while self._outbox:
            event_id, endpoint = self._outbox[0]
            try:
                await self._post_event(event_id, endpoint, kind="live", age=0)
            finally:
                self._outbox.popleft()
                self._notify()

    async def _send_now(self, event_id: str, url: str | None, *, kind: str, age: int) -> list[Delivery]:
        if event_id not in self._payloads:
            raise KeyError(f"no event {event_id}")
        event = next(e for e in self.events if e["id"] == event_id)
        endpoints = [e for e in self.webhooks if (url is None and e.wants(event)) or e.url == url]
        return [await self._post_event(event_id, endpoint, kind=kind, age=age) for endpoint in endpoints]

    async def _post_event(self, event_id: str, endpoint: WebhookEndpoint, *, kind: str, age: int) -> Delivery:
        payload = self._payloads[event_id]
        event_type = next(e["type"] for e in self.events if e["id"] == event_id)
        signed_at = _now() - age
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign_payload(payload, endpoint.secret, signed_at),
        }
        status, error = 0, None
        if self._http is None:
            error = "the fake is stopped"
        else:
            try:
                async with self._http.post(endpoint.url, data=payload.encode(), headers=headers) as response:
                    status = response.status
                    await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        delivery = Delivery(event_id, event_type, endpoint.url, status, kind, signed_at, error)
        self.deliveries.append(delivery)
        self._notify()
        return delivery

    # -- internals: hosted pages ----------------------------------------------------------------------

    async def _post_page(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        if self._http is None:
            raise RuntimeError("FakeStripe is not started")
        async with self._http.post(f"{self.base_url}{path}", data=form, allow_redirects=False) as response:
            return response.status, await response.text()

    @staticmethod
    def _page(
        title: str, body: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        text = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
        )
        return web.Response(text=text, status=status, content_type="text/html", headers=headers)

    async def _checkout_page(self, request: web.Request) -> web.Response:
        session = self.checkout_sessions.get(request.match_info["session"])
        if session is None:
            return self._page("Checkout session not found", "", 404)
        if session["status"] != "open":
            return self._page("This Checkout Session is no longer active", f"<p>{session['status']}</p>", 410)
        extra = self._session_extra[session["id"]]
        items = "".join(
            f"<li>{html.escape(item['description'])} x {item['quantity']}: "
            f"{_format_amount(item['amount_total'], item['currency'])}</li>"
            for item in extra.line_items
        )
        total = _format_amount(session["amount_total"], session["currency"])
        cancel = (
            f"<a href='{html.escape(session['cancel_url'])}'>Back</a>" if session.get("cancel_url") else ""
        )
        form = (
            f"<ul>{items}</ul><p>Total: <b>{total}</b></p>"
            f"<form method='post' action='/checkout/pay/{session['id']}'>"
            "<label>Card number <input name='card' value='4242 4242 4242 4242'></label>"
            f"<label>Email <input name='email' value='{html.escape(session.get('customer_email') or '')}'>"
            f"</label><button type='submit'>Pay {total}</button></form>{cancel}"
        )
        return self._page("Pay with FakeStripe Checkout", form)

    async def _checkout_submit(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
            return self._pay(request.match_info["session"], str(form.get("card", "")), form.get("email"))
        except Exception:
            self.server_errors.append(traceback.format_exc())
            self._notify()
            return self._page("FakeStripe crashed", "", 500)

    def _pay(self, session_id: str, card_text: str, email: Any) -> web.Response:
        session = self.checkout_sessions.get(session_id)
        if session is None:
            return self._page("Checkout session not found", "", 404)
        if session["status"] != "open":
            return self._page("This Checkout Session is no longer active", f"<p>{session['status']}</p>", 410)
        card = re.sub(r"[\s-]", "", card_text)
        if card not in TEST_CARDS:
            return self._page("Your card number is incorrect.", "<p>Use a Stripe test card.</p>", 400)
        extra = self._session_extra[session_id]
        ctx = _Context()
        intent = self.payment_intents.get(session["payment_intent"] or "")
        if intent is None:
            intent = self._new_intent(session, extra)
            session["payment_intent"] = intent["id"]
            self._emit("payment_intent.created", intent, ctx)
        decline = TEST_CARDS[card]
        charge = self._new_charge(intent, card, decline)
        intent["latest_charge"] = charge["id"]
        intent["payment_method"] = charge["payment_method"]
        if decline is not None:
            code, decline_code, message = decline
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": code,
                "decline_code": decline_code,
                "message": message,
                "charge": charge["id"],
            }
            self._emit("charge.failed", charge, ctx)
            self._emit("payment_intent.payment_failed", intent, ctx)
            return self._page("Your card was declined", f"<p>{html.escape(message)}</p>", 402)
        intent["last_payment_error"] = None
        self._emit("charge.succeeded", charge, ctx)
        session["status"] = "complete"
        session["url"] = None
        customer_email = email if isinstance(email, str) and email else session.get("customer_email")
        session["customer_details"] = {"email": customer_email, "name": None}
        if intent["capture_method"] == "manual":
            intent["status"] = "requires_capture"
            intent["amount_capturable"] = intent["amount"]
            self._emit("checkout.session.completed", session, ctx)
            self._emit("payment_intent.amount_capturable_updated", intent, ctx)
        else:
            session["payment_status"] = "paid"
            self._capture(intent, intent["amount"], intent["application_fee_amount"], ctx)
            self._emit("checkout.session.completed", session, ctx)
        success_url = session.get("success_url")
        if success_url:
            location = success_url.replace("{CHECKOUT_SESSION_ID}", session_id)
            return self._page("Payment authorised", "", 303, {"Location": location})
        return self._page("Payment authorised", f"<p>{intent['id']}</p>")

    async def _onboarding_page(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account"]
        if account_id not in self.accounts:
            return self._page("Account not found", "", 404)
        token = request.query.get("link", "")
        link = self._account_links.get(token)
        if token and (link is None or link.used or link.expires_at < _now() or link.account != account_id):
            # Stripe sends the browser to refresh_url so the platform can make a fresh link.
            if link is not None:
                return self._page("Link expired", "", 303, {"Location": link.refresh_url})
            return self._page("Link not found", "", 404)
        if link is not None:
            link.used = True
        form = (
            f"<p>Onboarding {html.escape(account_id)} (FakeStripe Connect Express)</p>"
            f"<form method='post' action='/connect/onboard/{account_id}?link={html.escape(token)}'>"
            "<button name='submit' value='done'>Agree and submit</button></form>"
        )
        return self._page("Set up payouts", form)

    async def _onboarding_submit(self, request: web.Request) -> web.Response:
        try:
            return self._onboard(request.match_info["account"], request.query.get("link", ""))
        except Exception:
            self.server_errors.append(traceback.format_exc())
            self._notify()
            return self._page("FakeStripe crashed", "", 500)

    def _onboard(self, account_id: str, token: str) -> web.Response:
        account = self.accounts.get(account_id)
        if account is None:
            return self._page("Account not found", "", 404)
        previous = {
            key: copy.deepcopy(account[key])
            for key in (
                "charges_enabled",
                "payouts_enabled",
                "details_submitted",
                "capabilities",
                "requirements",
            )
        }
        account.update(charges_enabled=True, payouts_enabled=True, details_submitted=True)
        account["capabilities"] = dict.fromkeys(account["capabilities"], "active")
        account["requirements"] = {
            "currently_due": [],
            "eventually_due": [],
            "past_due": [],
            "pending_verification": [],
            "disabled_reason": None,
        }
        changed = {key: value for key, value in previous.items() if account[key] != value}
        if changed:
            self._emit("account.updated", account, _Context(), previous=changed, account=account_id)
        link = self._account_links.get(token or self._last_link.get(account_id, ""))
        if link is not None:
            return self._page("Onboarding complete", "", 303, {"Location": link.return_url})
        return self._page("Onboarding complete", "")

    async def _express_dashboard(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account"]
        if account_id not in self.accounts:
            return self._page("Account not found", "", 404)
        return self._page(
            "Express dashboard", f"<p>{html.escape(account_id)}: {self.balance.get(account_id)}</p>"
        )

    # -- internals: the API ---------------------------------------------------------------------------

    def _build_routes(self) -> list[_Route]:
        def route(method: str, path: str, handler: Callable[..., JSONDict], schema: dict[str, Any]) -> _Route:
            pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")
            return _Route(method, pattern, handler, {**schema, "expand": _ANY})

        account_schema = {
            "type": _ANY,
            "country": _ANY,
            "email": _ANY,
            "business_type": _ANY,
            "capabilities": _ANY,
            "metadata": _METADATA,
        }
        session_schema = {
            "mode": _ANY,
            "line_items": [
                {
                    "price_data": {
                        "currency": _ANY,
                        "unit_amount": _ANY,
                        "product_data": {"name": _ANY, "description": _ANY, "metadata": _METADATA},
                    },
                    "quantity": _ANY,
                }
            ],
            "payment_intent_data": {
                "capture_method": _ANY,
                "transfer_data": {"destination": _ANY},
                "application_fee_amount": _ANY,
                "metadata": _METADATA,
                "description": _ANY,
            },
            "metadata": _METADATA,
            "client_reference_id": _ANY,
            "success_url": _ANY,
            "cancel_url": _ANY,
            "customer_email": _ANY,
            "locale": _ANY,
            "expires_at": _ANY,
            "payment_method_types": _ANY,
            "submit_type": _ANY,
        }
        refund_schema = {
            "payment_intent": _ANY,
            "charge": _ANY,
            "amount": _ANY,
            "reason": _ANY,
            "metadata": _METADATA,
            "refund_application_fee": _ANY,
            "reverse_transfer": _ANY,
        }
        return [
            route("POST", "/v1/accounts", self._create_account, account_schema),
            route("GET", "/v1/accounts/{id}", lambda ctx, p, id: self._get(self.accounts, "account", id), {}),
            route("POST", "/v1/accounts/{id}", self._update_account, {"email": _ANY, "metadata": _METADATA}),
            route("POST", "/v1/accounts/{id}/login_links", self._create_login_link, {}),
            route(
                "POST",
                "/v1/account_links",
                self._create_account_link,
                {"account": _ANY, "refresh_url": _ANY, "return_url": _ANY, "type": _ANY},
            ),
            route("POST", "/v1/checkout/sessions", self._create_session, session_schema),
            route(
                "GET",
                "/v1/checkout/sessions/{id}",
                lambda ctx, p, id: self._get(self.checkout_sessions, "checkout.session", id),
                {},
            ),
            route("GET", "/v1/checkout/sessions/{id}/line_items", self._session_line_items, {"limit": _ANY}),
            route("POST", "/v1/checkout/sessions/{id}/expire", self._expire_session, {}),
            route(
                "GET",
                "/v1/payment_intents/{id}",
                lambda ctx, p, id: self._get(self.payment_intents, "payment_intent", id),
                {},
            ),
            route(
                "POST",
                "/v1/payment_intents/{id}/capture",
                self._capture_intent,
                {"amount_to_capture": _ANY, "application_fee_amount": _ANY, "metadata": _METADATA},
            ),
            route(
                "POST", "/v1/payment_intents/{id}/cancel", self._cancel_intent, {"cancellation_reason": _ANY}
            ),
            route("GET", "/v1/charges/{id}", lambda ctx, p, id: self._get(self.charges, "charge", id), {}),
            route("POST", "/v1/refunds", self._create_refund, refund_schema),
            route("GET", "/v1/refunds/{id}", lambda ctx, p, id: self._get(self.refunds, "refund", id), {}),
            route(
                "GET", "/v1/transfers/{id}", lambda ctx, p, id: self._get(self.transfers, "transfer", id), {}
            ),
            route(
                "POST",
                "/v1/transfers",
                self._create_transfer,
                {
                    "amount": _ANY,
                    "currency": _ANY,
                    "destination": _ANY,
                    "transfer_group": _ANY,
                    "description": _ANY,
                    "metadata": _METADATA,
                },
            ),
            route(
                "GET",
                "/v1/application_fees/{id}",
                lambda ctx, p, id: self._get(self.application_fees, "application_fee", id),
                {},
            ),
            route("GET", "/v1/events/{id}", self._get_event, {}),
            route(
                "GET", "/v1/events", self._list_events, {"type": _ANY, "limit": _ANY, "starting_after": _ANY}
            ),
        ]

    def _authorized(self, header: str) -> bool:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(credentials.strip(), self.api_key)
        if scheme.lower() == "basic":
            try:
                user = base64.b64decode(credentials.strip()).decode().partition(":")[0]
            except ValueError:
                return False
            return hmac.compare_digest(user, self.api_key)
        return False

    @staticmethod
    def _json(status: int, body: str, headers: dict[str, str]) -> web.Response:
        return web.Response(text=body, status=status, content_type="application/json", headers=headers)

    async def _api(self, request: web.Request) -> web.Response:
        request_id = _new_id("req_", 14)
        method, path = request.method, request.path
        version = request.headers.get("Stripe-Version")
        if version:
            self._seen_version = version
        key = request.headers.get("Idempotency-Key") if method == "POST" else None
        headers = {"Request-Id": request_id, "Stripe-Version": version or DEFAULT_API_VERSION}
        if key:
            headers["Idempotency-Key"] = key
        params: JSONDict = {}
        replayed = False
        try:
            pairs = parse_qsl(request.query_string, keep_blank_values=True)
            if method == "POST":
                pairs += parse_qsl(await request.text(), keep_blank_values=True)
            status, body, replayed = self._dispatch(request, params, pairs, key, request_id)
        except _StripeError as exc:
            status, body = exc.status, _dumps(exc.body())
        except Exception:
            self.server_errors.append(traceback.format_exc())
            status, body = 500, _dumps(_StripeError(500, "FakeStripe crashed", type_="api_error").body())
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        error_code = None
        if status >= 400:
            error = json.loads(body)["error"]
            error_code = error.get("code") or error.get("type")
        self.calls.append(Call(method, path, params, key, replayed, status, request_id, error_code))
        self._notify()
        return self._json(status, body, headers)

    def _dispatch(
        self,
        request: web.Request,
        params: JSONDict,
        pairs: list[tuple[str, str]],
        key: str | None,
        request_id: str,
    ) -> tuple[int, str, bool]:
        """Returns (status, body text, replayed); ``params`` is filled in for the call record."""
        params.update(parse_params(pairs))
        auth = request.headers.get("Authorization", "")
        if not auth:
            raise _StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                stored=False,
            )
        if not self._authorized(auth):
            shown = auth.partition(" ")[2].strip()
            raise _StripeError(401, f"Invalid API Key provided: {shown[:8]}****{shown[-4:]}", stored=False)
        if request.headers.get("Stripe-Account"):
            raise _invalid("FakeStripe does not emulate the Stripe-Account header (direct charges).")
        route, match = self._match(request.method, request.path)
        if route is None or match is None:
            self.unknown_routes.append((request.method, request.path))
            raise _StripeError(
                404,
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                stored=False,
            )
        if key is not None and len(key) > 255:
            raise _invalid("Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key")
        before = self._take_fault("before", request.method, request.path)
        if before is not None:
            raise before
        stored = self._idempotency.get((self.api_key, key)) if key else None
        if stored is not None:
            if (stored.method, stored.path) != (request.method, request.path):
                raise _StripeError(
                    400,
                    "Keys for idempotent requests can only be used for the same endpoint they were first "
                    f"used for ('{stored.method} {stored.path}' vs '{request.method} {request.path}'). Try "
                    f"using a key other than '{key}' if you meant to execute a different request.",
                    type_="idempotency_error",
                    stored=False,
                )
            if stored.fingerprint != _fingerprint(params):
                raise _StripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were first "
                    f"used with. Try using a key other than '{key}' if you meant to execute a different "
                    "request.",
                    type_="idempotency_error",
                    stored=False,
                )
            status, body, replayed = stored.status, stored.body, True
        else:
            replayed = False
            ctx = _Context(request_id, key)
            try:
                _check_known(params, route.schema, "")
                result = route.handler(ctx, params, **match.groupdict())
                status, body, keep = 200, _dumps(self._expanded(result, params.get("expand"))), True
            except _StripeError as exc:
                status, body, keep = exc.status, _dumps(exc.body()), exc.stored
            if key is not None and request.method == "POST" and keep:
                self._idempotency[(self.api_key, key)] = _Stored(
                    request.method, request.path, _fingerprint(params), status, body
                )
        after = self._take_fault("after", request.method, request.path)
        if after is not None:
            return after.status, _dumps(after.body()), False
        return status, body, replayed

    def _match(self, method: str, path: str) -> tuple[_Route | None, re.Match[str] | None]:
        for route in self._routes:
            if route.method == method:
                match = route.pattern.match(path)
                if match is not None:
                    return route, match
        return None, None

    def _take_fault(self, when: str, method: str, path: str) -> _StripeError | None:
        if method != "POST":
            return None
        for fault in self._faults:
            if fault.when == when and fault.remaining > 0 and fault.pattern.search(path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                injected = f"injected by FakeStripe.fail_{when}"
                if fault.status == 429:
                    return _StripeError(
                        429, f"Too many requests ({injected}).", code="rate_limit", stored=False
                    )
                if fault.status >= 500:
                    return _StripeError(
                        fault.status,
                        f"An unknown error occurred ({injected}).",
                        type_="api_error",
                        stored=False,
                    )
                return _StripeError(fault.status, f"Request failed ({injected}).", stored=False)
        return None

    # -- internals: API handlers ----------------------------------------------------------------------

    def _get(self, store: dict[str, JSONDict], kind: str, object_id: str) -> JSONDict:
        return self._object(store, kind, object_id)

    def _get_event(self, ctx: _Context, params: JSONDict, id: str) -> JSONDict:
        for event in self.events:
            if event["id"] == id:
                return event
        raise _no_such("event", id)

    def _list_events(self, ctx: _Context, params: JSONDict) -> JSONDict:
        limit = _as_int(params["limit"], "limit", minimum=1) if "limit" in params else 10
        if limit > 100:
            raise _invalid("This value must be less than or equal to 100.", param="limit")
        events = list(reversed(self.events))
        if "type" in params:
            wanted = _as_str(params["type"], "type")
            pattern = re.compile(re.escape(wanted).replace(r"\*", ".*") + "$")
            events = [e for e in events if pattern.match(e["type"])]
        if "starting_after" in params:
            ids = [e["id"] for e in events]
            if params["starting_after"] not in ids:
                raise _no_such("event", str(params["starting_after"]), "starting_after")
            events = events[ids.index(params["starting_after"]) + 1 :]
        return {
            "object": "list",
            "data": events[:limit],
            "has_more": len(events) > limit,
            "url": "/v1/events",
        }

    def _create_account(self, ctx: _Context, params: JSONDict) -> JSONDict:
        account_type = params.get("type")
        if account_type is None:
            raise _missing_param("type")
        if account_type != "express":
            raise _invalid("FakeStripe emulates only Express accounts (type=express).", param="type")
        country = _as_str(params.get("country", "US"), "country").upper()
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise _invalid(
                f"Country '{country}' is unknown. Try using a 2-character alphanumeric country code."
            )
        capabilities = params.get("capabilities", {})
        if not isinstance(capabilities, dict):
            raise _invalid("Invalid object", param="capabilities")
        statuses: dict[str, str] = {}
        for name, request in capabilities.items():
            param = f"capabilities[{name}]"
            if not isinstance(request, dict) or set(request) != {"requested"}:
                raise _invalid("Invalid object", param=param)
            if _as_bool(request["requested"], f"{param}[requested]"):
                statuses[name] = "inactive"
        business_type = params.get("business_type")
        if business_type is not None:
            _as_enum(
                business_type, "business_type", ("individual", "company", "non_profit", "government_entity")
            )
        email = _as_email(params["email"], "email") if "email" in params else None
        due = ["business_type", "external_account", "tos_acceptance.date", "tos_acceptance.ip"]
        account: JSONDict = {
            "id": _new_id("acct_", 16),
            "object": "account",
            "business_type": business_type,
            "capabilities": statuses,
            "charges_enabled": False,
            "country": country,
            "created": _now(),
            "default_currency": COUNTRY_CURRENCY.get(country, "eur"),
            "details_submitted": False,
            "email": email,
            "metadata": _as_metadata(params.get("metadata")),
            "payouts_enabled": False,
            "requirements": {
                "currently_due": due,
                "eventually_due": due,
                "past_due": due,
                "pending_verification": [],
                "disabled_reason": "requirements.past_due",
            },
            "type": "express",
        }
        self.accounts[account["id"]] = account
        return account

    def _update_account(self, ctx: _Context, params: JSONDict, id: str) -> JSONDict:
        account = self._object(self.accounts, "account", id)
        previous: JSONDict = {}
        if "email" in params:
            email = _as_email(params["email"], "email")
            if email != account["email"]:
                previous["email"] = account["email"]
                account["email"] = email
        if "metadata" in params:
            update = _as_metadata(params["metadata"])
            merged = {k: v for k, v in {**account["metadata"], **update}.items() if v != ""}
            if merged != account["metadata"]:
                previous["metadata"] = account["metadata"]
                account["metadata"] = merged
        if previous:
            self._emit("account.updated", account, ctx, previous=previous, account=id)
        return account

    def _create_login_link(self, ctx: _Context, params: JSONDict, id: str) -> JSONDict:
        account = self._object(self.accounts, "account", id, "account")
        if not account["details_submitted"]:
            raise _invalid("Cannot create a login link for an account that has not completed onboarding.")
        return {"object": "login_link", "created": _now(), "url": f"{self.base_url}/connect/express/{id}"}

    def _create_account_link(self, ctx: _Context, params: JSONDict) -> JSONDict:
        for name in ("account", "type", "refresh_url", "return_url"):
            if name not in params:
                raise _missing_param(name)
        account_id = _as_str(params["account"], "account")
        if account_id not in self.accounts:
            raise _invalid(f"No such account: '{account_id}'", param="account", code="account_invalid")
        if params["type"] != "account_onboarding":
            raise _invalid("FakeStripe emulates only type=account_onboarding Account Links.", param="type")
        refresh_url = _as_url(params["refresh_url"], "refresh_url")
        return_url = _as_url(params["return_url"], "return_url")
        created = _now()
        token = secrets.token_urlsafe(16)
        link = _AccountLink(account_id, refresh_url, return_url, created + 300)
        self._account_links[token] = link
        self._last_link[account_id] = token
        return {
            "object": "account_link",
            "created": created,
            "expires_at": link.expires_at,
            "url": f"{self.base_url}/connect/onboard/{account_id}?link={token}",
        }

    def _create_session(self, ctx: _Context, params: JSONDict) -> JSONDict:
        if "mode" not in params:
            raise _missing_param("mode")
        if params["mode"] != "payment":
            raise _invalid("FakeStripe emulates only mode=payment Checkout Sessions.", param="mode")
        line_items, currency = self._line_items(params.get("line_items"))
        amount_total = sum(item["amount_total"] for item in line_items)
        minimum = MINIMUM_CHARGE.get(currency, 50)
        if amount_total < minimum:
            raise _invalid(
                "The Checkout Session's total amount due must add up to at least "
                f"{_format_amount(minimum, currency)}",
                param="line_items",
                code="amount_too_small",
            )
        if amount_total > MAXIMUM_AMOUNT:
            raise _invalid(
                f"The Checkout Session's total amount due must be no more than "
                f"{_format_amount(MAXIMUM_AMOUNT, currency)}",
                param="line_items",
                code="amount_too_large",
            )
        extra = self._payment_intent_data(params.get("payment_intent_data", {}), line_items, amount_total)
        created = _now()
        expires_at = created + 24 * 3600
        if "expires_at" in params:
            expires_at = _as_int(params["expires_at"], "expires_at")
            if expires_at < created + 30 * 60 - 5:  # a few seconds of slack for the client's clock
                raise _invalid(
                    "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
                    param="expires_at",
                )
            if expires_at > created + 24 * 3600:
                raise _invalid(
                    "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
                    param="expires_at",
                )
        locale = params.get("locale")
        if locale is not None and locale not in CHECKOUT_LOCALES:
            raise _invalid(
                f"Invalid locale: {locale}; must be one of {', '.join(sorted(CHECKOUT_LOCALES))}",
                param="locale",
            )
        if "payment_method_types" in params and params["payment_method_types"] != ["card"]:
            raise _invalid(
                "FakeStripe emulates only payment_method_types=[card].", param="payment_method_types"
            )
        submit_type = params.get("submit_type")
        if submit_type is not None:
            _as_enum(submit_type, "submit_type", ("auto", "book", "donate", "pay", "subscribe"))
        session_id = _new_id("cs_test_", 58)
        session: JSONDict = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": amount_total,
            "amount_total": amount_total,
            "cancel_url": _as_url(params["cancel_url"], "cancel_url") if "cancel_url" in params else None,
            "client_reference_id": (
                _as_str(params["client_reference_id"], "client_reference_id", max_length=200)
                if "client_reference_id" in params
                else None
            ),
            "created": created,
            "currency": currency,
            "customer": None,
            "customer_details": None,
            "customer_email": (
                _as_email(params["customer_email"], "customer_email") if "customer_email" in params else None
            ),
            "expires_at": expires_at,
            "livemode": False,
            "locale": locale,
            "metadata": _as_metadata(params.get("metadata")),
            "mode": "payment",
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "submit_type": submit_type,
            "success_url": _as_url(params["success_url"], "success_url") if "success_url" in params else None,
            "ui_mode": "hosted",
            "url": f"{self.base_url}/checkout/pay/{session_id}",
        }
        self.checkout_sessions[session_id] = session
        self._session_extra[session_id] = extra
        return session

    def _line_items(self, raw: Any) -> tuple[list[JSONDict], str]:
        if raw is None:
            raise _missing_param("line_items")
        if not isinstance(raw, list) or not raw:
            raise _invalid("line_items must be a non-empty array", param="line_items")
        items: list[JSONDict] = []
        currency = None
        for index, item in enumerate(raw):
            where = f"line_items[{index}]"
            price_data = item.get("price_data")
            if price_data is None:
                raise _missing_param(f"{where}[price_data]")
            for name in ("currency", "unit_amount", "product_data"):
                if name not in price_data:
                    raise _missing_param(f"{where}[price_data][{name}]")
            item_currency = _as_str(price_data["currency"], f"{where}[price_data][currency]").lower()
            if item_currency not in SUPPORTED_CURRENCIES:
                raise _invalid(f"Invalid currency: {item_currency}", param=f"{where}[price_data][currency]")
            if currency is not None and item_currency != currency:
                raise _invalid(
                    "All line items must have the same currency.", param=f"{where}[price_data][currency]"
                )
            currency = item_currency
            unit_amount = _as_int(price_data["unit_amount"], f"{where}[price_data][unit_amount]")
            product = price_data["product_data"]
            if not product.get("name"):
                raise _missing_param(f"{where}[price_data][product_data][name]")
            if "quantity" not in item:
                raise _missing_param(f"{where}[quantity]")
            quantity = _as_int(item["quantity"], f"{where}[quantity]", minimum=1)
            name = _as_str(product["name"], f"{where}[price_data][product_data][name]")
            items.append(
                {
                    "id": _new_id("li_"),
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": unit_amount * quantity,
                    "amount_tax": 0,
                    "amount_total": unit_amount * quantity,
                    "currency": item_currency,
                    "description": name,
                    "price": {
                        "id": _new_id("price_"),
                        "object": "price",
                        "currency": item_currency,
                        "product": _new_id("prod_", 14),
                        "type": "one_time",
                        "unit_amount": unit_amount,
                    },
                    "quantity": quantity,
                }
            )
        assert currency is not None
        return items, currency

    def _payment_intent_data(self, data: Any, line_items: list[JSONDict], amount_total: int) -> _SessionExtra:
        where = "payment_intent_data"
        capture_method = _as_enum(
            data.get("capture_method", "automatic_async"),
            f"{where}[capture_method]",
            ("automatic", "automatic_async", "manual"),
        )
        destination = None
        if "transfer_data" in data:
            param = f"{where}[transfer_data][destination]"
            if "destination" not in data["transfer_data"]:
                raise _missing_param(param)
            destination = _as_str(data["transfer_data"]["destination"], param)
            account = self.accounts.get(destination)
            if account is None:
                raise _invalid(f"No such destination: '{destination}'", param=param, code="resource_missing")
            if account["capabilities"].get("transfers") != "active" and not account["charges_enabled"]:
                raise _invalid(
                    f"Your destination account ({destination}) needs to have at least one of the following "
                    "capabilities enabled: transfers, crypto_transfers, legacy_payments (it has not finished "
                    "onboarding: charges_enabled is false).",
                    param=param,
                    code="insufficient_capabilities_for_transfer",
                )
        fee = None
        if "application_fee_amount" in data:
            param = f"{where}[application_fee_amount]"
            fee = _as_int(data["application_fee_amount"], param)
            if destination is None:
                raise _invalid(
                    "Can only apply an application_fee_amount when the PaymentIntent is attempting a direct "
                    "payment (using an OAuth key or Stripe-Account header) or destination payment (using "
                    "`transfer_data[destination]`).",
                    param=param,
                )
            if fee > amount_total:
                raise _invalid(
                    f"The application fee ({fee}) must not be greater than the amount ({amount_total}).",
                    param=param,
                )
        description = data.get("description")
        return _SessionExtra(
            line_items=line_items,
            capture_method=capture_method,
            destination=destination,
            application_fee_amount=fee,
            pi_metadata=_as_metadata(data.get("metadata"), f"{where}[metadata]"),
            pi_description=_as_str(description, f"{where}[description]", max_length=1000)
            if description
            else None,
        )

    def _session_line_items(self, ctx: _Context, params: JSONDict, id: str) -> JSONDict:
        self._object(self.checkout_sessions, "checkout.session", id)
        return {
            "object": "list",
            "data": copy.deepcopy(self._session_extra[id].line_items),
            "has_more": False,
            "url": f"/v1/checkout/sessions/{id}/line_items",
        }

    def _expire_session(self, ctx: _Context, params: JSONDict, id: str) -> JSONDict:
        session = self._object(self.checkout_sessions, "checkout.session", id)
        if session["status"] != "open":
            raise _StripeError(
                400,
                'Only Checkout Sessions with a status in ["open"] can be expired; '
                f"{id} is {session['status']}.",
            )
        self._expire(session, ctx)
        return session

    def _expire(self, session: JSONDict, ctx: _Context) -> None:
        intent = self.payment_intents.get(session["payment_intent"] or "")
        if intent is not None and intent["status"] in _CANCELABLE:
            self._cancel(intent, "abandoned", ctx)
        session.update(status="expired", url=None)
        self._emit("checkout.session.expired", session, ctx)

    def _new_intent(self, session: JSONDict, extra: _SessionExtra) -> JSONDict:
        intent_id = _new_id("pi_")
        intent: JSONDict = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_capturable": 0,
            "amount_received": 0,
            "application_fee_amount": extra.application_fee_amount,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": extra.capture_method,
            "client_secret": f"{intent_id}_secret_{_new_id('', 25)}",
            "created": _now(),
            "currency": session["currency"],
            "customer": None,
            "description": extra.pi_description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(extra.pi_metadata),
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
            "transfer_data": {"destination": extra.destination} if extra.destination else None,
            "transfer_group": None,
        }
        self.payment_intents[intent_id] = intent
        self._session_of_intent[intent_id] = session["id"]
        return intent

    def _new_charge(self, intent: JSONDict, card: str, decline: tuple[str, str, str] | None) -> JSONDict:
        charge: JSONDict = {
            "id": _new_id("ch_"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": 0,
            "amount_refunded": 0,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": None,
            "captured": False,
            "created": _now(),
            "currency": intent["currency"],
            "description": intent["description"],
            "failure_code": decline[0] if decline else None,
            "failure_message": decline[2] if decline else None,
            "livemode": False,
            "metadata": dict(intent["metadata"]),
            "outcome": {
                "network_status": "declined_by_network" if decline else "approved_by_network",
                "reason": decline[1] if decline else None,
                "type": "issuer_declined" if decline else "authorized",
            },
            "paid": decline is None,
            "payment_intent": intent["id"],
            "payment_method": _new_id("pm_"),
            "payment_method_details": {
                "type": "card",
                "card": {"brand": "visa" if card.startswith("4") else "mastercard", "last4": card[-4:]},
            },
            "refunded": False,
            "status": "failed" if decline else "succeeded",
            "transfer": None,
            "transfer_data": copy.deepcopy(intent["transfer_data"]),
            "transfer_group": None,
        }
        self.charges[charge["id"]] = charge
        return charge

    def _capture_intent(self, ctx: _Context, params: JSONDict, id: str) -> JSONDict:
        intent = self._object(self.payment_intents, "payment_intent", id, "intent")
        amount = intent["amount_capturable"]
        if "amount_to_capture" in params:
            amount = _as_int(params["amount_to_capture"], "amount_to_capture", minimum=1)
        fee = intent["application_fee_amount"]
        if "application_fee_amount" in params:
            fee = _as_int(params["application_fee_amount"], "application_fee_amount")
        metadata = _as_metadata(params.get("metadata"))
        if intent["status"] != "requires_capture":
            raise _unexpected_state(
                f"This PaymentIntent could not be captured because it has a status of {intent['status']}. "
                "Only a PaymentIntent with one of the following statuses may be captured: requires_capture."
            )
        if amount > intent["amount_capturable"]:
            raise _StripeError(
                400,
                f"The amount to capture ({amount}) must be less than or equal to the amount_capturable "
                f"({intent['amount_capturable']}).",
                param="amount_to_capture",
                code="amount_too_large",
            )
        if fee is not None and intent["transfer_data"] is None:
            raise _invalid(
                "Can only apply an application_fee_amount when the PaymentIntent is attempting a direct "
                "payment (using an OAuth key or Stripe-Account header) or destination payment (using "
                "`transfer_data[destination]`).",
                param="application_fee_amount",
            )
        if fee is not None and fee > amount:
            # Stripe would silently cap the fee at the captured amount; a larger fee is a commission bug.
            raise _StripeError(
                400,
                f"The application_fee_amount ({fee}) must be less than or equal to the amount captured "
                f"({amount}). (FakeStripe refuses this; Stripe caps the fee.)",
                param="application_fee_amount",
                code="amount_too_large",
                stored=False,
            )
        intent["metadata"] = {k: v for k, v in {**intent["metadata"], **metadata}.items() if v != ""}
        self._capture(intent, amount, fee, ctx)
        return intent

    def _capture(self, intent: JSONDict, amount: int, fee: int | None, ctx: _Context) -> None:
        charge = self.charges[intent["latest_charge"]]
        currency = intent["currency"]
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        if fee is not None:
            intent["application_fee_amount"] = fee
        charge.update(
            captured=True,
            amount_captured=amount,
            amount_refunded=charge["amount"] - amount,  # the released rest of the hold, as Stripe shows it
            balance_transaction=_new_id("txn_"),
        )
        self._credit(PLATFORM, currency, amount)
        destination = (intent["transfer_data"] or {}).get("destination")
        transfer = application_fee = None
        if destination is not None:
            # Destination charges: the whole amount goes to the connected account, then the application
            # fee comes back from it to the platform.
            transfer_id = _new_id("tr_")
            transfer = {
                "id": transfer_id,
                "object": "transfer",
                "amount": amount,
                "amount_reversed": 0,
                "created": _now(),
                "currency": currency,
                "description": None,
                "destination": destination,
                "destination_payment": _new_id("py_"),
                "livemode": False,
                "metadata": {},
                "reversals": _empty_list(f"/v1/transfers/{transfer_id}/reversals"),
                "reversed": False,
                "source_transaction": charge["id"],
                "source_type": "card",
                "transfer_group": f"group_{intent['id']}",
            }
            self.transfers[transfer_id] = transfer
            self._credit(PLATFORM, currency, -amount)
            self._credit(destination, currency, amount)
            charge["transfer"] = transfer_id
            charge["transfer_group"] = intent["transfer_group"] = transfer["transfer_group"]
            if fee:
                fee_id = _new_id("fee_")
                application_fee = {
                    "id": fee_id,
                    "object": "application_fee",
                    "account": destination,
                    "amount": fee,
                    "amount_refunded": 0,
                    "application": "ca_fakestripe",
                    "balance_transaction": _new_id("txn_"),
                    "charge": charge["id"],
                    "created": _now(),
                    "currency": currency,
                    "livemode": False,
                    "originating_transaction": None,
                    "refunded": False,
                    "refunds": _empty_list(f"/v1/application_fees/{fee_id}/refunds"),
                }
                self.application_fees[fee_id] = application_fee
                self._credit(destination, currency, -fee)
                self._credit(PLATFORM, currency, fee)
                charge["application_fee"] = fee_id
            charge["application_fee_amount"] = fee
        self._emit("payment_intent.succeeded", intent, ctx)
        self._emit("charge.captured", charge, ctx)
        if transfer is not None:
            self._emit("transfer.created", transfer, ctx)
        if application_fee is not None:
            self._emit("application_fee.created", application_fee, ctx)

    def _cancel_intent(self, ctx: _Context, params: JSONDict, id: str) -> JSONDict:
        intent = self._object(self.payment_intents, "payment_intent", id, "intent")
        reason = params.get("cancellation_reason")
        if reason is not None:
            _as_enum(
                reason,
                "cancellation_reason",
                ("duplicate", "fraudulent", "requested_by_customer", "abandoned"),
            )
        if intent["status"] not in _CANCELABLE:
            raise _unexpected_state(
                f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}. Only a "
                "PaymentIntent with one of the following statuses may be canceled: "
                f"{', '.join(_CANCELABLE)}, processing."
            )
        session = self.checkout_sessions.get(self._session_of_intent.get(id, ""))
        if session is not None and session["status"] == "open":
            raise _StripeError(
                400,
                f"You can't cancel the PaymentIntent for a Checkout Session ({session['id']}). "
                "Expire the Checkout Session instead.",
                code="payment_intent_unexpected_state",
            )
        self._cancel(intent, reason, ctx)
        return intent

    def _cancel(self, intent: JSONDict, reason: str | None, ctx: _Context) -> None:
        charge = self.charges.get(intent["latest_charge"] or "")
        if charge is not None and charge["status"] == "succeeded" and not charge["captured"]:
            # The authorization is released: Stripe shows an uncaptured charge as refunded.
            charge.update(refunded=True, amount_refunded=charge["amount"])
        intent.update(status="canceled", canceled_at=_now(), cancellation_reason=reason, amount_capturable=0)
        self._emit("payment_intent.canceled", intent, ctx)

    def _create_transfer(self, ctx: _Context, params: JSONDict) -> JSONDict:
        """A separate transfer from the platform's balance to a connected account (payouts the platform
        collected first): the destination must have finished onboarding and the balance must cover it."""
        for name in ("amount", "currency", "destination"):
            if name not in params:
                raise _missing_param(name)
        amount = _as_int(params["amount"], "amount", minimum=1)
        currency = _as_str(params["currency"], "currency").lower()
        destination = _as_str(params["destination"], "destination")
        account = self.accounts.get(destination)
        if account is None:
            raise _invalid(
                f"No such destination: '{destination}'", param="destination", code="resource_missing"
            )
        if account["capabilities"].get("transfers") != "active" and not account["charges_enabled"]:
            raise _invalid(
                f"Your destination account ({destination}) needs the transfers capability enabled.",
                param="destination",
                code="insufficient_capabilities_for_transfer",
            )
        available = self.balance.get(PLATFORM, {}).get(currency, 0)
        if amount > available:
            raise _StripeError(
                400,
                "You have insufficient available funds in your Stripe account.",
                code="balance_insufficient",
            )
        transfer_id = _new_id("tr_")
        transfer = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "created": _now(),
            "currency": currency,
            "description": params.get("description"),
            "destination": destination,
            "destination_payment": _new_id("py_"),
            "livemode": False,
            "metadata": _as_metadata(params.get("metadata")),
            "reversals": _empty_list(f"/v1/transfers/{transfer_id}/reversals"),
            "reversed": False,
            "source_transaction": None,
            "source_type": "card",
            "transfer_group": params.get("transfer_group"),
        }
        self.transfers[transfer_id] = transfer
        self._credit(PLATFORM, currency, -amount)
        self._credit(destination, currency, amount)
        self._emit("transfer.created", transfer, ctx)
        return transfer

    def _create_refund(self, ctx: _Context, params: JSONDict) -> JSONDict:
        if "payment_intent" in params:
            intent_id = _as_str(params["payment_intent"], "payment_intent")
            intent = self._object(self.payment_intents, "payment_intent", intent_id, "payment_intent")
            charge = self.charges.get(intent["latest_charge"] or "")
            if "charge" in params and (charge is None or params["charge"] != charge["id"]):
                raise _invalid("The charge does not belong to the payment_intent.", param="charge")
        elif "charge" in params:
            charge = self._object(self.charges, "charge", _as_str(params["charge"], "charge"), "charge")
            intent = self.payment_intents[charge["payment_intent"]]
        else:
            raise _invalid("One of `charge` or `payment_intent` is required.", code="parameter_missing")
        reason = params.get("reason")
        if reason is not None:
            _as_enum(reason, "reason", ("duplicate", "fraudulent", "requested_by_customer"))
        refund_fee = _as_bool(params.get("refund_application_fee", "false"), "refund_application_fee")
        reverse = _as_bool(params.get("reverse_transfer", "false"), "reverse_transfer")
        metadata = _as_metadata(params.get("metadata"))
        requested = _as_int(params["amount"], "amount", minimum=1) if "amount" in params else None
        if intent["status"] != "succeeded" or charge is None:
            raise _unexpected_state(
                f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund."
            )
        currency = charge["currency"]
        captured = charge["amount_captured"]
        refunded = sum(r["amount"] for r in self.refunds.values() if r["charge"] == charge["id"])
        remaining = captured - refunded
        if remaining <= 0:
            raise _StripeError(
                400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
            )
        amount = remaining if requested is None else requested
        if amount > remaining:
            raise _StripeError(
                400,
                f"Refund amount ({_format_amount(amount, currency)}) is greater than unrefunded amount on "
                f"charge ({_format_amount(remaining, currency)})",
                param="amount",
                code="amount_too_large",
            )
        transfer = self.transfers.get(charge["transfer"] or "")
        if reverse and transfer is None:
            raise _invalid(
                "reverse_transfer can only be used for a charge with a transfer (a destination charge)."
            )
        refund_id = _new_id("re_")
        self._credit(PLATFORM, currency, -amount)
        reversal = None
        if reverse and transfer is not None:
            left = transfer["amount"] - transfer["amount_reversed"]
            value = min(left, _share(transfer["amount"], refunded, amount, captured))
            if value > 0:
                reversal = {
                    "id": _new_id("trr_"),
                    "object": "transfer_reversal",
                    "amount": value,
                    "created": _now(),
                    "currency": currency,
                    "metadata": {},
                    "source_refund": refund_id,
                    "transfer": transfer["id"],
                }
                transfer["amount_reversed"] += value
                transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
                transfer["reversals"]["data"].append(reversal)
                transfer["reversals"]["total_count"] += 1
                self._credit(transfer["destination"], currency, -value)
                self._credit(PLATFORM, currency, value)
        application_fee = self.application_fees.get(charge["application_fee"] or "")
        fee_refund = None
        if refund_fee and application_fee is not None:
            left = application_fee["amount"] - application_fee["amount_refunded"]
            value = min(left, _share(application_fee["amount"], refunded, amount, captured))
            if value > 0:
                fee_refund = {
                    "id": _new_id("fr_"),
                    "object": "fee_refund",
                    "amount": value,
                    "created": _now(),
                    "currency": currency,
                    "fee": application_fee["id"],
                    "metadata": {},
                }
                application_fee["amount_refunded"] += value
                application_fee["refunded"] = application_fee["amount_refunded"] == application_fee["amount"]
                application_fee["refunds"]["data"].append(fee_refund)
                application_fee["refunds"]["total_count"] += 1
                self._credit(PLATFORM, currency, -value)
                self._credit(application_fee["account"], currency, value)
        refund: JSONDict = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": _new_id("txn_"),
            "charge": charge["id"],
            "created": _now(),
            "currency": currency,
            "metadata": metadata,
            "payment_intent": intent["id"],
            "reason": reason,
            "status": "succeeded",
            "transfer_reversal": reversal["id"] if reversal else None,
        }
        self.refunds[refund_id] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self._emit("charge.refunded", charge, ctx)
        self._emit("refund.created", refund, ctx)
        if fee_refund is not None and application_fee is not None:
            self._emit("application_fee.refunded", application_fee, ctx)
        if reversal is not None and transfer is not None:
            self._emit("transfer.reversed", transfer, ctx)
        return refund
