"""Where a person can be reached: the channel identity they last wrote from.

Experts are notified where they were last active (a Telegram chat, a Discord DM, the web
console), so an expert who linked several identities is told in the one they use now.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis

from concierge import turn_writes
from concierge.model import Channel
from concierge.redis_keys import entity_key


@dataclass(frozen=True, slots=True)
class Reach:
    channel: Channel
    user_id: str

    def __str__(self) -> str:
        return f"{self.channel.value}:{self.user_id}"

    @classmethod
    def parse(cls, text: str) -> Reach:
        channel, _, user_id = text.partition(":")
        return cls(Channel(channel), user_id)


def reach_key(person_id: str) -> str:
    return entity_key("person", person_id, "reach")


async def remember(redis: aioredis.Redis, person_id: str, reach: Reach) -> None:
    writes = turn_writes.current()
    if writes is None:
        await redis.set(reach_key(person_id), str(reach))
        return
    writes.pipe.set(reach_key(person_id), str(reach))
    writes.reaches[person_id] = str(reach)


async def reach_of(redis: aioredis.Redis, person_ids: Iterable[str]) -> dict[str, Reach]:
    ids = list(dict.fromkeys(person_ids))
    if not ids:
        return {}
    values = await redis.mget([reach_key(person_id) for person_id in ids])
    writes = turn_writes.current()
    if writes is not None:  # written earlier in this turn, not sent yet
        values = [writes.reaches.get(person_id, value) for person_id, value in zip(ids, values, strict=True)]
    return {
        person_id: Reach.parse(value.decode() if isinstance(value, bytes) else value)
        for person_id, value in zip(ids, values, strict=True)
        if value is not None
    }
