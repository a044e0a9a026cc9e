"""Room events: what the gateway tells the core (live, paused, resumed, ended with billed seconds).

They go to a Redis stream so that the core may consume them in any process, at least once,
with a consumer group; a consumer must therefore apply each event idempotently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from video_gateway.keys import EVENTS_STREAM

_MAX_EVENTS = 100_000


@dataclass(frozen=True, slots=True)
class RoomEvent:
    room_id: str
    session_id: str | None
    kind: str  # joined (reason: the role) | live | paused | resumed | ended
    billed_seconds: int
    at: datetime
    reason: str | None = None

    def fields(self) -> dict[str, str]:
        return {
            "room": self.room_id,
            "session": self.session_id or "",
            "kind": self.kind,
            "billed_seconds": str(self.billed_seconds),
            "at": self.at.isoformat(),
            "reason": self.reason or "",
        }

    @classmethod
    def parse(cls, fields: dict[bytes, bytes]) -> RoomEvent:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(
            room_id=text["room"],
            session_id=text["session"] or None,
            kind=text["kind"],
            billed_seconds=int(text["billed_seconds"]),
            at=datetime.fromisoformat(text["at"]).astimezone(UTC),
            reason=text["reason"] or None,
        )


class RoomEventSink(Protocol):
    async def publish(self, event: RoomEvent) -> None: ...


class RoomEventStream:
    def __init__(self, redis: aioredis.Redis, stream: str = EVENTS_STREAM) -> None:
        self._redis = redis
        self._stream = stream

    async def publish(self, event: RoomEvent) -> None:
        await self._redis.xadd(self._stream, event.fields(), maxlen=_MAX_EVENTS, approximate=True)  # type: ignore[arg-type]

    async def ensure_group(self, group: str) -> None:
        try:
            await self._redis.xgroup_create(self._stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, group: str, consumer: str, *, block_ms: int, count: int = 50, pending: bool = False
    ) -> list[tuple[str, RoomEvent | None]]:
        """Events for this consumer; `pending` re-reads those it took but never acknowledged."""
        answer: Any = await self._redis.xreadgroup(
            group,
            consumer,
            {self._stream: "0" if pending else ">"},
            count=count,
            block=None if pending else block_ms,
        )
        events: list[tuple[str, RoomEvent | None]] = []
        for _stream, entries in answer or []:
            for entry_id, fields in entries:
                try:
                    event: RoomEvent | None = RoomEvent.parse(fields)
                except (KeyError, ValueError):
                    event = None  # unreadable: acknowledged and skipped by the consumer
                events.append((entry_id.decode(), event))
        return events

    async def ack(self, group: str, *entry_ids: str) -> None:
        if entry_ids:
            await self._redis.xack(self._stream, group, *entry_ids)


def utcnow() -> datetime:
    return datetime.now(UTC)
