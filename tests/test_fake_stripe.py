"""The fake Stripe API server, driven by the real stripe-python library (no mocks)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web

from tests.fakes.stripe_server import FakeStripe, HostedPageError, sign_payload

# stripe-python's HTTPXClient hands httpx the encoded form as ``data=``, which httpx deprecates; that is
# the library's business, not something these tests can change.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps every request and answers ``status``."""

    url: str = ""
    status: int = 200
    requests: list[tuple[str, str]] = field(default_factory=list)  # (raw body, Stripe-Signature)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.requests]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events()]


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        yield server
        assert server.server_errors == [], server.describe()


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(fake.api_key, base_addresses={"api": fake.base_url}, max_network_retries=0)


async def _start_receiver() -> tuple[Receiver, web.AppRunner]:
    receiver = Receiver()

    async def handle(request: web.Request) -> web.Response:
        receiver.requests.append((await request.text(), request.headers.get("Stripe-Signature", "")))
        return web.Response(status=receiver.status)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    return receiver, runner


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint, runner = await _start_receiver()
    yield endpoint
    await runner.cleanup()


async def onboarded_account(client: stripe.StripeClient, fake: FakeStripe, country: str = "DE") -> str:
    account = await client.v1.accounts.create_async(
        {"type": "express", "country": country, "capabilities": {"transfers": {"requested": True}}}
    )
    await fake.complete_onboarding(account.id)
    return account.id


def session_params(
    destination: str | None,
    *,
    amount: int = 100,
    quantity: int = 60,
    currency: str = "eur",
    capture_method: str = "manual",
) -> dict[str, Any]:
    payment_intent_data: dict[str, Any] = {
        "capture_method": capture_method,
        "metadata": {"help_session": "hs_1"},
        "description": "Help session with Ann",
    }
    if destination is not None:
        payment_intent_data["transfer_data"] = {"destination": destination}
    return {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": currency,
                    "unit_amount": amount,
                    "product_data": {"name": "Spanish lesson, per minute"},
                },
                "quantity": quantity,
            }
        ],
        "payment_intent_data": payment_intent_data,
        "metadata": {"help_session": "hs_1"},
        "client_reference_id": "hs_1",
        "success_url": "https://concierge.example/paid?cs={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://concierge.example/cancelled",
        "customer_email": "customer@example.com",
        "locale": "es",
    }


async def authorised_intent(
    client: stripe.StripeClient, fake: FakeStripe, destination: str | None, **kwargs: Any
) -> str:
    session = await client.v1.checkout.sessions.create_async(session_params(destination, **kwargs))
    intent = await fake.pay(session.id)
    assert intent is not None
    return intent


# -- auth and routing ---------------------------------------------------------------------------------


async def test_a_wrong_api_key_is_refused_with_401_and_changes_nothing(fake: FakeStripe) -> None:
    wrong = stripe.StripeClient("sk_test_wrong", base_addresses={"api": fake.base_url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError) as caught:
        await wrong.v1.accounts.create_async({"type": "express"})
    assert caught.value.http_status == 401
    assert "Invalid API Key" in str(caught.value.user_message)
    assert fake.accounts == {}
    assert fake.calls[-1].status == 401


async def test_an_unknown_route_is_404_and_recorded(fake: FakeStripe, client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.raw_request_async("get", "/v1/subscriptions/sub_123")
    assert caught.value.http_status == 404
    assert "Unrecognized request URL" in str(caught.value.user_message)
    assert fake.unknown_routes == [("GET", "/v1/subscriptions/sub_123")]


async def test_parameters_the_fake_does_not_emulate_are_refused_like_unknown_ones(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    params = session_params(None)
    params["payment_intent_data"]["on_behalf_of"] = "acct_123"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(params)
    assert caught.value.code == "parameter_unknown"
    assert caught.value.param == "payment_intent_data[on_behalf_of]"
    # Stripe's list of Checkout locales has no Ukrainian: a real request would fail the same way.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async({**session_params(None), "locale": "uk"})
    assert caught.value.param == "locale"
    assert fake.checkout_sessions == {}


# -- Connect onboarding -------------------------------------------------------------------------------


async def test_express_account_onboarding_enables_it_and_tells_the_connect_webhook(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    connect_secret = fake.add_webhook(receiver.url, connect=True)
    platform, platform_runner = await _start_receiver()
    fake.add_webhook(platform.url)
    try:
        account = await client.v1.accounts.create_async(
            {
                "type": "express",
                "country": "DE",
                "email": "ann@example.com",
                "business_type": "individual",
                "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
                "metadata": {"expert_id": "42"},
            }
        )
        assert account.id.startswith("acct_")
        assert account.object == "account"
        assert account.type == "express"
        assert (account.charges_enabled, account.payouts_enabled, account.details_submitted) == (False,) * 3
        assert account.metadata.to_dict() == {"expert_id": "42"}
        assert (account.email, account.country) == ("ann@example.com", "DE")

        link = await client.v1.account_links.create_async(
            {
                "account": account.id,
                "refresh_url": "https://concierge.example/onboard/refresh",
                "return_url": "https://concierge.example/onboard/done",
                "type": "account_onboarding",
            }
        )
        assert link.object == "account_link"
        assert link.url.startswith(f"{fake.base_url}/connect/onboard/{account.id}?")
        assert link.expires_at > link.created
        async with aiohttp.ClientSession() as browser:
            async with browser.get(link.url) as page:
                assert page.status == 200
                assert "<form" in await page.text()
            # A link is good once: opening it again sends the browser to refresh_url.
            async with browser.get(link.url, allow_redirects=False) as again:
                assert again.status == 303
                assert again.headers["Location"] == "https://concierge.example/onboard/refresh"

        await fake.complete_onboarding(account.id)
        enabled = await client.v1.accounts.retrieve_async(account.id)
        assert (enabled.charges_enabled, enabled.payouts_enabled, enabled.details_submitted) == (True,) * 3
        assert enabled.capabilities.to_dict() == {"card_payments": "active", "transfers": "active"}

        await fake.wait_delivered()
        [(body, header)] = receiver.requests
        event = stripe.Webhook.construct_event(body, header, connect_secret)
        assert event.type == "account.updated"
        assert event.account == account.id
        assert event.data.object.charges_enabled is True
        assert event.data.previous_attributes.charges_enabled is False
        # The platform's own (non-Connect) endpoint does not hear about connected accounts.
        assert platform.requests == []
    finally:
        await platform_runner.cleanup()


async def test_checkout_to_an_account_that_has_not_finished_onboarding_is_refused(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    account = await client.v1.accounts.create_async({"type": "express", "country": "DE"})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(session_params(account.id))
    assert caught.value.param == "payment_intent_data[transfer_data][destination]"
    assert "charges_enabled is false" in str(caught.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(session_params("acct_doesnotexist"))
    assert "No such destination" in str(caught.value.user_message)
    assert fake.checkout_sessions == {}


# -- Checkout, hold, capture --------------------------------------------------------------------------


async def test_checkout_pay_then_partial_capture_with_fee_transfers_to_the_expert(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    expert = await onboarded_account(client, fake)
    session = await client.v1.checkout.sessions.create_async(session_params(expert))
    assert session.id.startswith("cs_test_")
    assert session.url == f"{fake.base_url}/checkout/pay/{session.id}"
    assert (session.status, session.payment_status, session.payment_intent) == ("open", "unpaid", None)
    assert (session.amount_total, session.currency) == (6000, "eur")
    assert session.metadata.to_dict() == {"help_session": "hs_1"}
    assert session.client_reference_id == "hs_1"
    async with aiohttp.ClientSession() as browser, browser.get(session.url) as page:
        assert "60.00 EUR" in await page.text()

    intent_id = await fake.pay(session.id)
    assert intent_id is not None
    paid = await client.v1.checkout.sessions.retrieve_async(session.id, {"expand": ["payment_intent"]})
    assert (paid.status, paid.payment_status, paid.url) == ("complete", "unpaid", None)
    intent = paid.payment_intent
    assert intent.id == intent_id
    assert intent.status == "requires_capture"
    assert (intent.amount, intent.amount_capturable, intent.amount_received) == (6000, 6000, 0)
    assert intent.capture_method == "manual"
    assert intent.metadata.to_dict() == {"help_session": "hs_1"}
    assert intent.transfer_data.destination == expert
    assert intent.application_fee_amount is None
    charge = await client.v1.charges.retrieve_async(intent.latest_charge)
    assert (charge.amount, charge.amount_captured, charge.captured) == (6000, 0, False)

    # 25 minutes used at 1 EUR a minute, 20 % commission.
    captured = await client.v1.payment_intents.capture_async(
        intent_id, {"amount_to_capture": 2500, "application_fee_amount": 500}
    )
    assert captured.status == "succeeded"
    assert (captured.amount_received, captured.amount_capturable) == (2500, 0)
    assert captured.application_fee_amount == 500
    charge = await client.v1.charges.retrieve_async(intent.latest_charge)
    assert (charge.amount_captured, charge.captured) == (2500, True)
    assert charge.amount_refunded == 3500  # the released rest of the hold, as Stripe shows it
    assert charge.refunded is False
    [transfer] = fake.transfers.values()
    assert (transfer["amount"], transfer["destination"], transfer["source_transaction"]) == (
        2500,
        expert,
        charge.id,
    )
    [fee] = fake.application_fees.values()
    assert (fee["amount"], fee["account"], fee["charge"]) == (500, expert, charge.id)
    assert fake.balance == {"platform": {"eur": 500}, expert: {"eur": 2000}}
    assert fake.event_types()[-8:] == [
        "payment_intent.created",
        "charge.succeeded",
        "checkout.session.completed",
        "payment_intent.amount_capturable_updated",
        "payment_intent.succeeded",
        "charge.captured",
        "transfer.created",
        "application_fee.created",
    ]
    completed = fake.events_of("checkout.session.completed")[0]
    assert completed["data"]["object"]["payment_intent"] == intent_id
    assert completed["request"] == {"id": None, "idempotency_key": None}  # caused by the customer's page
    succeeded = fake.events_of("payment_intent.succeeded")[0]
    assert succeeded["request"]["id"] == fake.calls_to("/capture$")[0].request_id


async def test_capture_beyond_the_hold_or_with_a_fee_beyond_it_is_refused(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    expert = await onboarded_account(client, fake)
    intent_id = await authorised_intent(client, fake, expert)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.payment_intents.capture_async(intent_id, {"amount_to_capture": 6001})
    assert (caught.value.code, caught.value.param) == ("amount_too_large", "amount_to_capture")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.payment_intents.capture_async(
            intent_id, {"amount_to_capture": 1000, "application_fee_amount": 1001}
        )
    assert caught.value.param == "application_fee_amount"
    intent = await client.v1.payment_intents.retrieve_async(intent_id)
    assert (intent.status, intent.amount_capturable) == ("requires_capture", 6000)
    assert fake.transfers == {}
    assert fake.balance == {}


async def test_cancel_releases_the_hold_once(fake: FakeStripe, client: stripe.StripeClient) -> None:
    expert = await onboarded_account(client, fake)
    intent_id = await authorised_intent(client, fake, expert)
    canceled = await client.v1.payment_intents.cancel_async(
        intent_id, {"cancellation_reason": "requested_by_customer"}
    )
    assert (canceled.status, canceled.amount_capturable) == ("canceled", 0)
    assert canceled.cancellation_reason == "requested_by_customer"
    assert fake.event_types()[-1] == "payment_intent.canceled"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.payment_intents.capture_async(intent_id)
    assert caught.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.payment_intents.cancel_async(intent_id)
    assert caught.value.code == "payment_intent_unexpected_state"
    assert fake.transfers == {}
    assert len(fake.events_of("payment_intent.canceled")) == 1


async def test_a_captured_intent_cannot_be_canceled(fake: FakeStripe, client: stripe.StripeClient) -> None:
    intent_id = await authorised_intent(client, fake, None)
    await client.v1.payment_intents.capture_async(intent_id)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.payment_intents.cancel_async(intent_id)
    assert caught.value.code == "payment_intent_unexpected_state"
    assert fake.payment_intents[intent_id]["status"] == "succeeded"
    assert fake.balance == {"platform": {"eur": 6000}}


async def test_a_declined_card_leaves_the_session_open_until_it_is_expired(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    session = await client.v1.checkout.sessions.create_async(session_params(None))
    assert await fake.pay(session.id, card="4000000000000002") is None
    still_open = await client.v1.checkout.sessions.retrieve_async(session.id, {"expand": ["payment_intent"]})
    assert still_open.status == "open"
    assert still_open.payment_intent.status == "requires_payment_method"
    assert still_open.payment_intent.last_payment_error.decline_code == "generic_decline"
    assert "checkout.session.completed" not in fake.event_types()
    assert fake.event_types()[-1] == "payment_intent.payment_failed"
    # Stripe's rule: the intent of an open session is not canceled directly.
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.payment_intents.cancel_async(still_open.payment_intent.id)

    expired = await client.v1.checkout.sessions.expire_async(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    assert fake.payment_intents[still_open.payment_intent.id]["status"] == "canceled"
    assert fake.event_types()[-2:] == ["payment_intent.canceled", "checkout.session.expired"]
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.checkout.sessions.expire_async(session.id)
    with pytest.raises(HostedPageError) as page:
        await fake.pay(session.id)
    assert page.value.status == 410


async def test_jpy_amounts_are_whole_yen_end_to_end(fake: FakeStripe, client: stripe.StripeClient) -> None:
    expert = await onboarded_account(client, fake, country="JP")
    session = await client.v1.checkout.sessions.create_async(
        session_params(expert, currency="jpy", amount=1500, quantity=2)
    )
    assert (session.amount_total, session.currency) == (3000, "jpy")
    async with aiohttp.ClientSession() as browser, browser.get(session.url) as page:
        assert "3000 JPY" in await page.text()
    intent_id = await fake.pay(session.id)
    assert intent_id is not None
    captured = await client.v1.payment_intents.capture_async(
        intent_id, {"amount_to_capture": 1000, "application_fee_amount": 200}
    )
    assert (captured.amount, captured.amount_received, captured.currency) == (3000, 1000, "jpy")
    assert fake.balance == {"platform": {"jpy": 200}, expert: {"jpy": 800}}
    # Stripe's minimum charge is 50 yen, not 0.50.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(
            session_params(expert, currency="jpy", amount=49, quantity=1)
        )
    assert caught.value.code == "amount_too_small"


# -- refunds ------------------------------------------------------------------------------------------


async def test_partial_refunds_return_the_fee_in_proportion_and_refuse_too_much(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    expert = await onboarded_account(client, fake)
    intent_id = await authorised_intent(client, fake, expert, amount=1000, quantity=1)
    await client.v1.payment_intents.capture_async(intent_id, {"application_fee_amount": 333})
    refund_params = {"payment_intent": intent_id, "refund_application_fee": True, "reverse_transfer": True}

    refund = await client.v1.refunds.create_async(
        {**refund_params, "amount": 500, "reason": "requested_by_customer", "metadata": {"why": "72h"}}
    )
    assert (refund.object, refund.status, refund.amount, refund.currency) == (
        "refund",
        "succeeded",
        500,
        "eur",
    )
    assert refund.payment_intent == intent_id
    assert refund.metadata.to_dict() == {"why": "72h"}
    [fee] = fake.application_fees.values()
    assert fee["amount_refunded"] == 167  # 333 * 500 / 1000 = 166.5, rounded half up
    [transfer] = fake.transfers.values()
    assert transfer["amount_reversed"] == 500
    charge = await client.v1.charges.retrieve_async(refund.charge)
    assert (charge.amount_refunded, charge.refunded) == (500, False)
    assert fake.event_types()[-4:] == [
        "charge.refunded",
        "refund.created",
        "application_fee.refunded",
        "transfer.reversed",
    ]
    assert fake.events_of("charge.refunded")[0]["data"]["object"]["amount_refunded"] == 500

    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.refunds.create_async({"payment_intent": intent_id, "amount": 501})
    assert (caught.value.code, caught.value.param) == ("amount_too_large", "amount")

    rest = await client.v1.refunds.create_async(refund_params)  # no amount: whatever is left
    assert rest.amount == 500
    assert fee["amount_refunded"] == 333  # the two parts add up to the whole fee
    assert fake.charges[refund.charge]["refunded"] is True
    assert fake.balance == {"platform": {"eur": 0}, expert: {"eur": 0}}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.refunds.create_async({"payment_intent": intent_id})
    assert caught.value.code == "charge_already_refunded"
    assert (await client.v1.refunds.retrieve_async(rest.id)).amount == 500


async def test_an_uncaptured_intent_cannot_be_refunded(fake: FakeStripe, client: stripe.StripeClient) -> None:
    intent_id = await authorised_intent(client, fake, None)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.refunds.create_async({"payment_intent": intent_id})
    assert caught.value.code == "payment_intent_unexpected_state"
    assert fake.refunds == {}


# -- idempotency and faults ---------------------------------------------------------------------------


async def test_the_same_idempotency_key_replays_and_other_parameters_conflict(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    options: Any = {"idempotency_key": "hold-hs_1"}
    first = await client.v1.checkout.sessions.create_async(session_params(None), options=options)
    again = await client.v1.checkout.sessions.create_async(session_params(None), options=options)
    assert again.id == first.id
    assert again.last_response is not None
    assert first.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert again.last_response.body == first.last_response.body
    assert len(fake.checkout_sessions) == 1
    assert [call.replayed for call in fake.calls_to("^/v1/checkout/sessions$")] == [False, True]

    with pytest.raises(stripe.IdempotencyError):
        await client.v1.checkout.sessions.create_async(session_params(None, quantity=61), options=options)
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.accounts.create_async({"type": "express"}, options=options)
    assert len(fake.checkout_sessions) == 1
    assert fake.accounts == {}


async def test_a_lost_capture_answer_is_replayed_on_retry_without_a_second_capture(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    expert = await onboarded_account(client, fake)
    intent_id = await authorised_intent(client, fake, expert)
    options: Any = {"idempotency_key": "capture-hs_1"}
    params: Any = {"amount_to_capture": 3000, "application_fee_amount": 600}

    fake.fail_after("/capture$")
    with pytest.raises(stripe.APIError) as caught:
        await client.v1.payment_intents.capture_async(intent_id, params, options=options)
    assert caught.value.http_status == 500
    assert fake.payment_intents[intent_id]["status"] == "succeeded"  # the work was done

    retried = await client.v1.payment_intents.capture_async(intent_id, params, options=options)
    assert (retried.status, retried.amount_received) == ("succeeded", 3000)
    assert [(c.status, c.replayed) for c in fake.calls_to("/capture$")] == [(500, False), (200, True)]
    assert len(fake.transfers) == 1
    assert len(fake.events_of("payment_intent.succeeded")) == 1
    assert fake.balance == {"platform": {"eur": 600}, expert: {"eur": 2400}}

    # Without the key a retry is a new request, and the intent is no longer capturable.
    with pytest.raises(stripe.InvalidRequestError) as state:
        await client.v1.payment_intents.capture_async(intent_id, params)
    assert state.value.code == "payment_intent_unexpected_state"


async def test_a_failure_before_the_work_changes_nothing(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    intent_id = await authorised_intent(client, fake, None)
    options: Any = {"idempotency_key": "capture-once"}
    fake.fail_before("/capture$", status=503)
    with pytest.raises(stripe.APIError):
        await client.v1.payment_intents.capture_async(intent_id, options=options)
    assert fake.payment_intents[intent_id]["status"] == "requires_capture"
    captured = await client.v1.payment_intents.capture_async(intent_id, options=options)
    assert captured.status == "succeeded"
    assert [(c.status, c.replayed) for c in fake.calls_to("/capture$")] == [(503, False), (200, False)]


# -- webhooks -----------------------------------------------------------------------------------------


async def test_webhooks_are_signed_so_construct_event_accepts_them_and_rejects_tampering(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = fake.add_webhook(receiver.url, enabled_events=["checkout.session.completed"])
    assert secret.startswith("whsec_test_")
    session = await client.v1.checkout.sessions.create_async(session_params(None))
    await fake.pay(session.id)
    await fake.wait_delivered()
    [(body, header)] = receiver.requests
    event = stripe.Webhook.construct_event(body, header, secret, tolerance=300)
    assert event.type == "checkout.session.completed"
    assert event.data.object.id == session.id
    assert fake.deliveries[-1].status == 200

    tampered = body.replace(session.id, "cs_test_someone_else")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, header, secret, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_test_wrong", tolerance=300)

    [stale] = await fake.deliver_stale(event.id, age_seconds=600)
    assert stale.signed_at <= int(time.time()) - 600
    _, stale_header = receiver.requests[-1]
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(body, stale_header, secret, tolerance=300)

    [again] = await fake.redeliver(event.id)
    replay_body, replay_header = receiver.requests[-1]
    assert replay_body == body  # the same event, id and all: receivers must deduplicate
    assert stripe.Webhook.construct_event(replay_body, replay_header, secret).id == event.id
    assert (again.kind, again.status) == ("redelivery", 200)


async def test_the_signature_is_stripes_hmac_of_timestamp_and_payload() -> None:
    payload = '{"id": "evt_1"}'
    header = sign_payload(payload, "whsec_test_x", 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert stripe.WebhookSignature.verify_header(payload, header, "whsec_test_x", tolerance=None)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, "whsec_test_y", tolerance=None)


async def test_held_webhooks_go_out_in_the_order_asked_and_failures_wait_for_a_retry(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    fake.add_webhook(receiver.url)
    fake.hold_webhooks()
    session = await client.v1.checkout.sessions.create_async(session_params(None))
    intent_id = await fake.pay(session.id)
    assert intent_id is not None
    await client.v1.payment_intents.capture_async(intent_id)
    emitted = fake.event_types()
    assert len(fake.held_webhooks) == len(emitted) == 6
    assert receiver.requests == []

    receiver.status = 500
    assert await fake.release_webhooks(order="reversed") == 6
    assert receiver.types() == list(reversed(emitted))
    assert [d.status for d in fake.deliveries] == [500] * 6

    receiver.status = 200
    retried = await fake.retry_failed()
    assert [d.event_type for d in retried] == list(reversed(emitted))
    assert all(d.status == 200 and d.kind == "retry" for d in retried)
    assert await fake.retry_failed() == []

    # After the release, deliveries go out live again, in emission order.
    await client.v1.refunds.create_async({"payment_intent": intent_id, "amount": 100})
    await fake.wait_delivered()
    assert receiver.types()[-2:] == ["charge.refunded", "refund.created"]


async def test_shuffled_release_is_reproducible_with_a_seed(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    fake.add_webhook(receiver.url)
    orders = []
    for _ in range(2):
        fake.reset()
        receiver.requests.clear()
        fake.hold_webhooks()
        session = await client.v1.checkout.sessions.create_async(session_params(None))
        await fake.pay(session.id)
        emitted = fake.event_types()
        await fake.release_webhooks(order="shuffled", seed=7)
        assert sorted(receiver.types()) == sorted(emitted)
        orders.append([emitted.index(kind) for kind in receiver.types()])
    assert orders[0] == orders[1]
    assert orders[0] != sorted(orders[0])


async def test_events_are_served_by_the_api(fake: FakeStripe, client: stripe.StripeClient) -> None:
    intent_id = await authorised_intent(client, fake, None)
    await client.v1.payment_intents.cancel_async(intent_id)
    [canceled] = fake.events_of("payment_intent.canceled")
    event = await client.v1.events.retrieve_async(canceled["id"])
    assert (event.object, event.type, event.livemode) == ("event", "payment_intent.canceled", False)
    assert event.data.object.id == intent_id
    assert event.request.idempotency_key == fake.calls_to("/cancel$")[0].idempotency_key
    listed = await client.v1.events.list_async({"type": "payment_intent.*", "limit": 2})
    assert [e.type for e in listed.data] == [
        "payment_intent.canceled",
        "payment_intent.amount_capturable_updated",
    ]
    assert listed.has_more is True
