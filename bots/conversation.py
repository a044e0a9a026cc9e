"""Conversation state per (channel, user): where in a dialogue someone is, kept in Redis.

The state is small JSON with an expiry: a conversation abandoned for a day starts afresh,
while everything that matters (people, listings, requests) lives in the database.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from concierge.reach import Reach
from concierge.redis_keys import entity_key


@dataclass(slots=True)
class Conversation:
    step: str = "idle"  # idle | birth_date | setup:<field> | price_amount | biz:<field>
    pending_text: str | None = None  # a request waiting for the age question
    pending_code: str | None = None  # an invitation code waiting for the age question
    pending_community: str | None = None  # where the waiting request was asked (group, guild, widget)
    request_id: str | None = None  # the customer's open request
    setup: bool = False  # walking through the listing setup (vs. editing one field)
    categories: list[str] = field(default_factory=list)  # categories ticked so far
    price_mode: str | None = None
    language_fixed: bool = False  # chosen with /lang: detection no longer overrides it
    business_id: str | None = None  # the business an admin is managing (/setup, /roster, /budget)
    self_help: bool = False  # the open request waits for an answer to a self-help article

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> Conversation:
        if raw is None:
            return cls()
        try:
            data: dict[str, Any] = json.loads(raw)
            return cls(**{key: value for key, value in data.items() if key in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return cls()  # an unreadable state (an older version's) starts the dialogue afresh


def state_key(reach: Reach) -> str:
    return entity_key("conversation", f"{reach.channel.value}.{reach.user_id}", "state")


class ConversationStore:
    def __init__(self, redis: aioredis.Redis, ttl_seconds: int) -> None:
        self.redis = redis
        self._ttl = ttl_seconds

    async def load(self, reach: Reach) -> Conversation:
        return Conversation.from_json(await self.redis.get(state_key(reach)))

    def queue_load(self, pipe: Pipeline, reach: Reach) -> None:
        """Read the state in a pipeline shared with the turn's other reads (`from_json` it)."""
        pipe.get(state_key(reach))

    async def save(self, reach: Reach, conversation: Conversation) -> None:
        await self.redis.set(state_key(reach), conversation.to_json(), ex=self._ttl)

    def queue_save(self, pipe: Pipeline, reach: Reach, conversation: Conversation) -> None:
        pipe.set(state_key(reach), conversation.to_json(), ex=self._ttl)
