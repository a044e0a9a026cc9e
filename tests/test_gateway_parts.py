"""The gateway's pure parts: links, the meter, the protocol's frames, ICE configuration, the collector."""

from __future__ import annotations

import base64
import gc
import json
import time

import pytest

from video_gateway import heap
from video_gateway.errors import LinkRefused, RefusalReason, SignallingError
from video_gateway.ice import IceServers, check_ice_urls
from video_gateway.links import LinkClaims, LinkSigner, Role
from video_gateway.meter import EndReason, Meter, MeterState
from video_gateway.signalling import (
    MAX_FRAME_BYTES,
    Hangup,
    Offer,
    Pong,
    Signal,
    Stats,
    parse_control_frame,
    parse_socket_frame,
)

SECRET = b"k" * 40
CLAIMS = LinkClaims("room_abc", Role.EXPERT, expires_at=2_000, language="fr")


# ---------------------------------------------------------------- links


def test_a_signed_link_round_trips_its_claims() -> None:
    signer = LinkSigner(SECRET)
    assert signer.verify(signer.sign(CLAIMS), now=1_999) == CLAIMS


def test_an_expired_link_is_refused_in_the_person_s_language() -> None:
    signer = LinkSigner(SECRET)
    with pytest.raises(LinkRefused) as refused:
        signer.verify(signer.sign(CLAIMS), now=2_000)
    assert refused.value.reason is RefusalReason.EXPIRED
    assert refused.value.language == "fr"


def _tamper(token: str, **changes: object) -> str:
    payload, mac = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{forged}.{mac}"


@pytest.mark.parametrize(
    "change",
    [{"p": "customer"}, {"r": "room_other"}, {"x": 9_999_999_999}, {"l": "en"}],
    ids=["other participant", "other room", "later expiry", "other language"],
)
def test_an_altered_link_opens_nothing_and_its_language_is_not_trusted(change: dict[str, object]) -> None:
    signer = LinkSigner(SECRET)
    with pytest.raises(LinkRefused) as refused:
        signer.verify(_tamper(signer.sign(CLAIMS), **change), now=0)
    assert refused.value.reason is RefusalReason.INVALID
    assert refused.value.language is None


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b.c", "!!!.???", "x" * 700, "eyJ9.", ".AAAA"], ids=lambda t: repr(t[:12])
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(LinkRefused) as refused:
        LinkSigner(SECRET).verify(token, now=0)
    assert refused.value.reason is RefusalReason.INVALID


def test_a_link_signed_with_another_key_is_refused() -> None:
    token = LinkSigner(b"z" * 40).sign(CLAIMS)
    with pytest.raises(LinkRefused):
        LinkSigner(SECRET).verify(token, now=0)


# ---------------------------------------------------------------- meter


def test_the_meter_counts_only_while_both_are_flowing() -> None:
    meter = Meter(budget_seconds=None)
    assert meter.set_flowing(Role.CUSTOMER, True, now=0.0) == []
    [live] = meter.set_flowing(Role.EXPERT, True, now=10.0)
    assert live.kind == "live"
    assert meter.state is MeterState.LIVE
    meter.advance(25.5)
    [paused] = meter.set_flowing(Role.EXPERT, False, now=40.0)
    assert paused.kind == "paused"
    assert paused.billed_seconds == 30
    meter.advance(100.0)  # paused: nothing counts
    [resumed] = meter.set_flowing(Role.EXPERT, True, now=100.0)
    assert resumed.kind == "resumed"
    [ended] = meter.end(EndReason.HANGUP, now=105.25)
    assert (ended.kind, ended.reason, ended.billed_seconds) == ("ended", EndReason.HANGUP, 35)
    assert meter.end(EndReason.HANGUP, now=200.0) == []  # once
    assert meter.set_flowing(Role.EXPERT, True, now=300.0) == []


def test_the_budget_warns_a_minute_before_and_stops_exactly_at_the_budget() -> None:
    meter = Meter(budget_seconds=120)
    meter.set_flowing(Role.CUSTOMER, True, 0.0)
    meter.set_flowing(Role.EXPERT, True, 0.0)
    assert meter.advance(59.0) == []
    [warning] = meter.advance(60.0)
    assert warning.kind == "budget_warning"
    assert warning.remaining_seconds == 60
    assert meter.advance(90.0) == []  # warned once
    [ended] = meter.advance(125.0)  # the clock overshot: billed stops at the budget
    assert (ended.kind, ended.reason, ended.billed_seconds) == ("ended", EndReason.BUDGET, 120)


def test_a_restored_meter_continues_paused_from_its_saved_count() -> None:
    meter = Meter.resumed(budget_seconds=600, billed_ms=42_400, state=MeterState.LIVE, warned=False)
    assert meter.state is MeterState.PAUSED
    assert meter.billed_seconds == 42
    meter.set_flowing(Role.CUSTOMER, True, 1.0)
    [resumed] = meter.set_flowing(Role.EXPERT, True, 1.0)
    assert resumed.kind == "resumed"
    meter.advance(3.0)
    assert meter.billed_ms == 44_400


def test_a_clock_going_backwards_never_reduces_billed_time() -> None:
    meter = Meter(budget_seconds=None)
    meter.set_flowing(Role.CUSTOMER, True, 10.0)
    meter.set_flowing(Role.EXPERT, True, 10.0)
    meter.advance(20.0)
    meter.advance(15.0)
    assert meter.billed_ms == 10_000


# ---------------------------------------------------------------- frames


def test_socket_frames_parse() -> None:
    assert parse_socket_frame('{"type":"offer","sdp":"v=0\\r\\n"}') == Offer("v=0\r\n")
    assert parse_socket_frame('{"type":"signal","data":{"candidate":{}}}') == Signal({"candidate": {}})
    assert parse_socket_frame('{"type":"hangup"}') == Hangup()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"type": 3}', "malformed"),
        ('{"type":"offer","sdp":"hello"}', "malformed"),
        ('{"type":"signal","data":"x"}', "malformed"),
        ('{"type":"signal","data":{"other":1}}', "malformed"),
        ('{"type":"launch"}', "unexpected"),
        ('{"type":"offer","sdp":"' + "v=0" + "a" * MAX_FRAME_BYTES + '"}', "too_big"),
        (b"\xff\xfe", "malformed"),
    ],
)
def test_bad_socket_frames_are_refused_with_a_code(text: str | bytes, code: str) -> None:
    with pytest.raises(SignallingError) as refused:
        parse_socket_frame(text)
    assert refused.value.code == code


def test_control_frames_parse_and_bad_stats_are_refused() -> None:
    assert parse_control_frame('{"type":"pong","t":5}') == Pong(5.0)
    assert parse_control_frame('{"type":"stats","connected":true,"bytes_received":9}') == Stats(True, 9)
    assert parse_control_frame(
        '{"type":"stats","connected":true,"flowing":false,"bytes_received":9}'
    ) == Stats(True, 9, flowing=False)
    for bad in (
        '{"type":"stats","connected":"yes","bytes_received":9}',
        '{"type":"stats","connected":true,"bytes_received":-1}',
        '{"type":"stats","connected":true,"bytes_received":true}',
        '{"type":"stats","connected":true,"flowing":1,"bytes_received":9}',
        '{"type":"pong"}',
    ):
        with pytest.raises(SignallingError):
            parse_control_frame(bad)


# ---------------------------------------------------------------- ICE


def test_ice_urls_are_checked() -> None:
    assert check_ice_urls("stun:127.0.0.1:3478, turn:turn.example.org:3478?transport=udp") == [
        "stun:127.0.0.1:3478",
        "turn:turn.example.org:3478?transport=udp",
    ]
    for bad in ("http://x", "stun:", "turn://host", "stun:?x"):
        with pytest.raises(ValueError, match=r"stun|host"):
            check_ice_urls(bad)


def test_turn_credentials_follow_coturn_rest_api() -> None:
    import hashlib
    import hmac

    servers = IceServers(
        ("stun:127.0.0.1:3478", "turn:127.0.0.1:3478"), turn_secret=b"s3cret", credential_seconds=60
    )
    stun, turn = servers.for_browser("room_x-customer", now=1_000)
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    assert turn["urls"] == ["turn:127.0.0.1:3478"]
    assert turn["username"] == "1060:room_x-customer"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1060:room_x-customer", hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected


def test_without_configured_servers_nobody_gets_any_and_the_gateway_none() -> None:
    servers = IceServers(())
    assert servers.for_browser("u", now=0) == []
    assert servers.for_gateway(now=0).iceServers == []


def test_turn_urls_without_a_secret_are_not_handed_out_without_credentials() -> None:
    assert IceServers(("turn:127.0.0.1:3478",)).for_browser("u", now=0) == []


def test_media_that_stopped_before_the_meter_learnt_it_is_not_billed() -> None:
    meter = Meter(budget_seconds=None)
    meter.set_flowing(Role.CUSTOMER, True, 0.0)
    meter.set_flowing(Role.EXPERT, True, 0.0)
    meter.advance(10.0)
    [paused] = meter.set_flowing(Role.EXPERT, False, now=9.2)  # the last frame came at 9.2 s
    assert meter.billed_ms == 9_200
    assert paused.billed_seconds == 9
    meter.set_flowing(Role.EXPERT, True, now=20.0)
    meter.advance(21.0)
    meter.set_flowing(Role.CUSTOMER, False, now=5.0)  # never before the current stretch began
    assert meter.billed_ms == 9_200


# ---------------------------------------------------------------- the collector


def test_survivors_are_frozen_and_closed_connections_bring_a_compaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(heap, "COMPACT_AFTER_CLOSED", 3)
    keeper = heap.HeapKeeper(freeze_seconds=10.0)
    try:
        keeper.step(time.monotonic(), open_connections=2)
        assert not keeper.froze  # not yet its ten seconds
        keeper.step(time.monotonic() + 10, open_connections=2)
        assert keeper.froze
        assert gc.get_freeze_count() > 0
        assert keeper.compactions == 0
        for _ in range(3):
            heap.connection_closed()
        keeper.step(time.monotonic() + 20, open_connections=4)
        assert keeper.compactions == 0  # fewer closed than open: little to reclaim
        keeper.step(time.monotonic() + 30, open_connections=2)
        assert keeper.compactions == 1
        keeper.step(time.monotonic() + 40, open_connections=2)
        assert keeper.compactions == 1  # counted from the last compaction
    finally:
        keeper.release()
    assert gc.get_freeze_count() == 0
