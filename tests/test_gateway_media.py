"""Two aiortc participants in one room, through the real signalling endpoint, on loopback.

Relay and direct mode; frames arrive; billed seconds match the time both were connected; a
drop pauses the meter; a gateway restart resumes it; the budget stops the call; a second
device takes the call over; recorded calls leave a playable file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc.mediastreams import AudioStreamTrack

from concierge.database import create_engine, session_factory
from concierge.rooms import SqlRoomBook
from tests.conftest import free_port
from tests.gateway_harness import GatewayService, gateway_service, participants, wait_until
from video_gateway.client import ReplayedVideo, RoomClient, encode_vp8_loop
from video_gateway.links import LinkClaims, LinkSigner, Role
from video_gateway.meter import MeterState
from video_gateway.opening import RoomLinks
from video_gateway.rooms import MediaMode, RelayMethod, RoomRecord
from video_gateway.web import GATEWAY

pytestmark = pytest.mark.redis_server


@pytest.fixture(scope="module")
def vp8_loop() -> list[bytes]:
    return encode_vp8_loop(frames=30, keyframe_every=30)


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str) -> Any:
    async with gateway_service(monkeypatch, tmp_path, database_url, redis_url, free_port()) as running:
        yield running


@contextlib.asynccontextmanager
async def in_call(
    http: aiohttp.ClientSession, links: RoomLinks, loop: list[bytes]
) -> AsyncIterator[tuple[RoomClient, RoomClient]]:
    """Customer and expert joined, with media."""
    customer, expert = _client(http, links.customer, loop), _client(http, links.expert, loop)
    async with participants(customer, expert):
        await customer.join()
        await expert.join()
        yield customer, expert


def _client(http: aiohttp.ClientSession, link: str, loop: list[bytes]) -> RoomClient:
    return RoomClient(http, link, media=lambda: (AudioStreamTrack(), ReplayedVideo(loop)))


async def _record(service: GatewayService, room_id: str) -> RoomRecord:
    engine = create_engine(service.settings.database)
    try:
        record = await SqlRoomBook(session_factory(engine)).get(room_id)
    finally:
        await engine.dispose()
    assert record is not None
    return record


def _live(client: RoomClient) -> bool:
    return bool(client.seen.ticks) and client.seen.ticks[-1]["state"] == "live"


def _billed(client: RoomClient) -> int:
    return client.billed_now()  # what the page's timer shows: ticks come every few seconds


@pytest.mark.parametrize("mode", ["relay", "direct"])
async def test_two_participants_see_each_other_and_are_billed_for_the_time_both_were_connected(
    service: GatewayService, vp8_loop: list[bytes], mode: str
) -> None:
    links = await service.open_room(relay=mode == "relay")
    async with aiohttp.ClientSession() as http, in_call(http, links, vp8_loop) as (customer, expert):
        customer.start_reporting()
        expert.start_reporting()
        assert customer.seen.welcome is not None
        assert customer.seen.welcome["mode"] == mode
        await wait_until(
            lambda: (
                min(customer.seen.remote_frames["video"], expert.seen.remote_frames["video"]) >= 20
                and min(customer.seen.remote_frames["audio"], expert.seen.remote_frames["audio"]) >= 20
            ),
            what="media both ways",
        )
        both_since = max(customer.seen.first_remote_frame_at or 0, expert.seen.first_remote_frame_at or 0)
        await wait_until(lambda: _live(customer) and _live(expert), what="the room to be live")
        if mode == "relay":
            room = service.app[GATEWAY].rooms[links.room_id]  # type: ignore[index]
            for seat in room.seats.values():
                assert seat is not None
                assert seat.sources["video"].method is RelayMethod.FORWARD
                assert seat.viewers["video"].forwarded >= 20  # encoded frames went through
        await asyncio.sleep(3.0)
        await expert.close()  # the expert drops: the meter pauses
        dropped_at = time.monotonic()
        await wait_until(lambda: customer.seen.ticks[-1]["state"] == "paused", what="pause")
        connected = dropped_at - both_since
        paused_billed = _billed(customer)
        assert abs(paused_billed - connected) <= 1.0, (paused_billed, connected)
        await asyncio.sleep(2.0)
        assert _billed(customer) == paused_billed  # nothing counts while one is away

        rejoined = _client(http, links.expert, vp8_loop)
        async with participants(rejoined):
            await rejoined.join()
            rejoined.start_reporting()
            await wait_until(lambda: _live(customer), what="resume after rejoin")
            await wait_until(lambda: _billed(customer) >= paused_billed + 2, what="metering again")
            await customer.hangup()
            await wait_until(lambda: customer.seen.ended is not None and rejoined.seen.ended is not None)
    assert customer.seen.ended is not None
    assert customer.seen.ended["reason"] == "hangup"
    record = await _record(service, links.room_id)
    assert record.state is MeterState.ENDED
    assert record.billed_seconds >= paused_billed + 2
    assert record.mode is (MediaMode.RELAY if mode == "relay" else MediaMode.DIRECT)


async def test_the_budget_ends_the_call_for_both_after_a_warning(
    service: GatewayService, vp8_loop: list[bytes]
) -> None:
    links = await service.open_room(relay=True, budget_seconds=62)
    async with aiohttp.ClientSession() as http, in_call(http, links, vp8_loop) as (customer, expert):
        # A 62-second budget warns as soon as the call is live (one minute or less left).
        await wait_until(lambda: bool(customer.seen.budget_warnings), what="budget warning")
        assert 58 <= customer.seen.budget_warnings[0]["remaining_seconds"] <= 62
        assert expert.seen.budget_warnings
    record = await _record(service, links.room_id)
    assert not record.ended  # a warning, not the end


async def test_a_short_budget_stops_the_call_exactly_at_the_budget(
    service: GatewayService, vp8_loop: list[bytes]
) -> None:
    links = await service.open_room(relay=True, budget_seconds=3)
    async with aiohttp.ClientSession() as http, in_call(http, links, vp8_loop) as (customer, expert):
        await wait_until(
            lambda: customer.seen.ended is not None and expert.seen.ended is not None, what="budget stop"
        )
    assert customer.seen.ended == {"type": "ended", "reason": "budget", "billed_seconds": 3}
    record = await _record(service, links.room_id)
    assert (record.state, record.billed_seconds, record.end_reason) == (MeterState.ENDED, 3, "budget")
    # The links of an ended room open nothing.
    async with aiohttp.ClientSession() as http, http.get(links.customer) as page:
        assert page.status == 403


async def test_a_gateway_restart_loses_at_most_a_second_and_the_call_continues(
    service: GatewayService, vp8_loop: list[bytes]
) -> None:
    links = await service.open_room(relay=True)
    async with aiohttp.ClientSession() as http:
        async with in_call(http, links, vp8_loop) as (customer, _expert):
            await wait_until(lambda: _billed(customer) >= 3, what="3 billed seconds")
            before = _billed(customer)
            await service.stop()
            await service.start()
        again_customer, again_expert = (
            _client(http, links.customer, vp8_loop),
            _client(http, links.expert, vp8_loop),
        )
        async with participants(again_customer, again_expert):
            await again_customer.join()
            assert again_customer.seen.welcome is not None
            resumed_from = again_customer.seen.welcome["billed_seconds"]
            assert before - 1 <= resumed_from <= before + 1
            await again_expert.join()
            await wait_until(lambda: _live(again_customer), what="live again after the restart")
            await wait_until(lambda: _billed(again_customer) >= resumed_from + 2, what="counting on")


async def test_opening_the_link_on_another_device_takes_the_call_over(
    service: GatewayService, vp8_loop: list[bytes]
) -> None:
    links = await service.open_room(relay=True)
    async with aiohttp.ClientSession() as http:
        phone, expert = _client(http, links.customer, vp8_loop), _client(http, links.expert, vp8_loop)
        laptop = _client(http, links.customer, vp8_loop)
        async with participants(phone, expert, laptop):
            await phone.join()
            await expert.join()
            await wait_until(lambda: phone.seen.remote_frames["video"] > 5, what="phone receiving")
            await laptop.join()
            await wait_until(lambda: phone.seen.replaced, what="the phone told it was replaced")
            await wait_until(lambda: laptop.seen.remote_frames["video"] > 5, what="laptop receiving")
            assert expert.seen.ended is None


async def test_forged_expired_and_unknown_links_open_nothing(service: GatewayService) -> None:
    links = await service.open_room()
    token = links.customer.rsplit("/", 1)[1]
    payload, mac = token.split(".")
    forged = f"{payload}.{mac[:-2]}{'AB' if mac[-2:] != 'AB' else 'CD'}"
    async with aiohttp.ClientSession() as http:
        async with http.get(links.customer) as ok:
            assert ok.status == 200
            page = await ok.text()
            assert '"role": "customer"' in page
            assert '"peer_name": "Ed"' in page
        for bad in (
            f"{service.base}/r/{forged}",
            f"{service.base}/r/nonsense",
            f"{service.base}/r/{payload}",
        ):
            async with http.get(bad, headers={"Accept-Language": "fr-FR,fr;q=0.9"}) as refused:
                assert refused.status == 403
                text = await refused.text()
                assert 'lang="fr"' in text  # a forged token's own language is not trusted: the browser's
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await http.ws_connect(bad + "/ws")
            assert handshake.value.status == 403
    room = service.app[GATEWAY].rooms  # type: ignore[index]
    assert links.room_id not in room  # nothing was opened by the refused attempts


async def test_bad_frames_get_an_error_and_change_nothing(service: GatewayService) -> None:
    links = await service.open_room()
    async with aiohttp.ClientSession() as http:
        client = RoomClient(http, links.customer)
        async with participants(client):
            await client.join()
            for frame in (
                "garbage",
                '{"type":"launch"}',
                '{"type":"offer","sdp":"v=0 but not sdp"}',
                "x" * 70_000,
            ):
                await client.send_raw(frame)
            assert client.socket is not None
            await client.socket.send_bytes(b"\x00\xff binary")
            await wait_until(lambda: len(client.seen.errors) == 5, what="five errors")
            assert [e["code"] for e in client.seen.errors] == [
                "malformed",
                "unexpected",
                "malformed",
                "too_big",
                "malformed",
            ]
            assert all(e["message"] for e in client.seen.errors)
            assert client.seen.ended is None
            assert client.gateway_pc is not None
            assert client.gateway_pc.connectionState in (
                "connecting",
                "connected",
            )


async def test_a_recorded_call_is_relayed_and_leaves_a_playable_file(
    service: GatewayService, vp8_loop: list[bytes]
) -> None:
    links = await service.open_room(recorded=True)
    async with aiohttp.ClientSession() as http, in_call(http, links, vp8_loop) as (customer, _expert):
        assert customer.seen.welcome is not None
        assert customer.seen.welcome["recorded"] is True
        assert customer.seen.welcome["mode"] == "relay"
        await wait_until(lambda: _billed(customer) >= 3, what="3 seconds of call")
        await customer.hangup()
        await wait_until(lambda: customer.seen.ended is not None, what="end")
    record = await _record(service, links.room_id)
    assert record.recording is not None
    path = service.settings.data_dir / record.recording
    with av.open(str(path)) as container:
        kinds = sorted(stream.type for stream in container.streams)
        assert kinds.count("video") == 2
        assert kinds.count("audio") == 2
        decoded = {stream.index: 0 for stream in container.streams}
        for packet in container.demux():
            for _frame in packet.decode():
                decoded[packet.stream.index] += 1
        videos = [decoded[stream.index] for stream in container.streams.video]
        audios = [decoded[stream.index] for stream in container.streams.audio]
    # About 3 s of call from each participant (30 fps video, 50 Opus frames a second), all decodable.
    assert min(videos) >= 45, videos
    assert min(audios) >= 75, audios


async def test_the_decode_and_re_encode_fallback_still_relays(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str, vp8_loop: list[bytes]
) -> None:
    async with gateway_service(
        monkeypatch, tmp_path, database_url, redis_url, free_port(), relay_method="transcode"
    ) as service:
        links = await service.open_room(relay=True)
        async with aiohttp.ClientSession() as http:
            customer, expert = _client(http, links.customer, vp8_loop), _client(http, links.expert, vp8_loop)
            async with participants(customer, expert):
                await customer.join()
                await expert.join()
                await wait_until(
                    lambda: (
                        min(customer.seen.remote_frames["video"], expert.seen.remote_frames["video"]) >= 20
                    ),
                    what="re-encoded video both ways",
                )
                room = service.app[GATEWAY].rooms[links.room_id]  # type: ignore[index]
                seat = room.seats[Role.CUSTOMER]
                assert seat is not None
                assert seat.sources["video"].method is RelayMethod.TRANSCODE
                await wait_until(lambda: _live(customer), what="metering on the fallback too")


async def test_an_expired_link_is_refused_in_its_language_until_the_call_has_started(
    service: GatewayService, vp8_loop: list[bytes]
) -> None:
    links = await service.open_room(relay=True)
    signer = LinkSigner(service.settings.signing_key)
    past = int(time.time()) - 1
    expired = {
        role: f"{service.base}/r/{signer.sign(LinkClaims(links.room_id, role, past, language))}"
        for role, language in ((Role.CUSTOMER, "ja"), (Role.EXPERT, "de"))
    }
    async with aiohttp.ClientSession() as http:
        async with http.get(expired[Role.CUSTOMER]) as refused:
            assert refused.status == 403
            page = await refused.text()
            assert 'lang="ja"' in page
            assert "期限切れ" in page  # "expired", in the language the link was sent in
        async with in_call(http, links, vp8_loop) as (customer, _expert):
            await wait_until(lambda: _live(customer), what="live")
            # Once the call has started, an expired link still rejoins it (a dropped participant).
            async with http.get(expired[Role.EXPERT]) as rejoin:
                assert rejoin.status == 200
