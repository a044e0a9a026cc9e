"""The meter of every open room, persisted in Redis every second.

A gateway process that restarts (or a room that moves to another process) picks the meter up
where it was: at most the last second is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from video_gateway.keys import room_key
from video_gateway.meter import Meter, MeterState

_KEEP_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SavedMeter:
    billed_ms: int
    state: MeterState
    warned: bool


class MeterStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def save(self, room_id: str, meter: Meter) -> None:
        await self.save_many([(room_id, meter, True)])

    async def save_many(self, meters: Sequence[tuple[str, Meter, bool]]) -> None:
        """Rooms' meters in one round trip (rooms span hash slots: no MULTI across them); each in
        full with its expiry, or (False) only its billed time, what changes every second."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for room_id, meter, full in meters:
                key = room_key(room_id, "meter")
                if not full:
                    pipe.hset(key, "billed_ms", meter.billed_ms)
                    continue
                pipe.hset(
                    key,
                    mapping={
                        "billed_ms": meter.billed_ms,
                        "state": meter.state.value,
                        "warned": int(meter.warned),
                    },
                )
                pipe.expire(key, _KEEP_SECONDS)
            await pipe.execute()

    async def load(self, room_id: str) -> SavedMeter | None:
        fields = await self._redis.hgetall(room_key(room_id, "meter"))
        if not fields:
            return None
        text = {_text(k): _text(v) for k, v in fields.items()}
        try:
            return SavedMeter(int(text["billed_ms"]), MeterState(text["state"]), text.get("warned") == "1")
        except (KeyError, ValueError):
            return None  # a damaged entry: the durable record's billed seconds are used instead


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
