"""`concierge rooms create|show`: an operator's ad-hoc room, joined for real, reported as it goes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc.mediastreams import AudioStreamTrack
from click.testing import CliRunner

from concierge.cli import main
from tests.conftest import free_port
from tests.gateway_harness import gateway_service, participants, wait_until
from video_gateway.client import ReplayedVideo, RoomClient, encode_vp8_loop

pytestmark = [pytest.mark.parametrize("engine_name", ["sqlite"]), pytest.mark.redis_server]


async def _cli(*args: str) -> Any:
    # The CLI runs its own event loop: give it a thread.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


async def test_an_ad_hoc_room_is_created_joined_and_shown_with_its_recording(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with gateway_service(monkeypatch, tmp_path, database_url, redis_url, free_port()) as service:
        created = await _cli(
            "rooms",
            "create",
            "--customer",
            "Mia",
            "--expert",
            "Ole",
            "--budget-seconds",
            "600",
            "--record",
            "--json",
        )
        assert created.exit_code == 0, created.output
        room = json.loads(created.stdout)
        assert set(room) == {"room", "links"}
        assert set(room["links"]) == {"customer", "expert"}
        assert all(link.startswith(f"{service.base}/r/") for link in room["links"].values())

        shown = await _cli("rooms", "show", room["room"], "--json")
        fresh = json.loads(shown.stdout)
        assert (fresh["state"], fresh["billed_seconds"], fresh["recorded"], fresh["recording"]) == (
            "waiting",
            0,
            True,
            None,
        )

        loop = encode_vp8_loop(frames=10, keyframe_every=10)

        def media() -> tuple[AudioStreamTrack, ReplayedVideo]:
            return AudioStreamTrack(), ReplayedVideo(loop)

        async with aiohttp.ClientSession() as http:
            customer = RoomClient(http, room["links"]["customer"], media=media)
            expert = RoomClient(http, room["links"]["expert"], media=media)
            async with participants(customer, expert):
                await customer.join()
                await expert.join()
                await wait_until(
                    lambda: any(t["billed_seconds"] >= 3 for t in customer.seen.ticks), 20, "3 s"
                )
                live = json.loads((await _cli("rooms", "show", room["room"], "--json")).stdout)
                assert live["state"] == "live"
                assert live["billed_seconds"] >= 2  # from Redis, where the meter is saved every second
                await expert.hangup()
                await wait_until(lambda: customer.seen.ended is not None, 10, "the end")

        ended = json.loads((await _cli("rooms", "show", room["room"], "--json")).stdout)
        assert ended["state"] == "ended"
        assert ended["billed_seconds"] >= 3
        assert ended["recording"] is not None
        with av.open(ended["recording"]) as container:
            assert len(container.streams.video) == 2


async def test_bad_rooms_commands_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with gateway_service(monkeypatch, tmp_path, database_url, redis_url, free_port()):
        missing = await _cli("rooms", "show", "room_doesnotexist", "--json")
        assert missing.exit_code != 0
        assert "no room room_doesnotexist" in missing.output
        for args, message in (
            (["--customer", "", "--expert", "Ole"], "1 to 120"),
            (["--customer", "Mia", "--expert", "Ole", "--budget-seconds", "0"], "0"),
            (["--customer", "Mia", "--expert", "Ole", "--customer-language", "xx"], "unknown language"),
            (["--expert", "Ole"], "Missing option"),
        ):
            refused = await _cli("rooms", "create", *args)
            assert refused.exit_code == 2, refused.output
            assert message in refused.output
