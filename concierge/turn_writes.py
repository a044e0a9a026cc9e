"""Redis writes of one turn that nothing reads before the turn ends, sent in one round trip.

A help request's turn wrote the person's reach, the experts shown for the new request and
the conversation in three round trips, and each round trip cost the service more CPU (a
wake-up of Redis and one of this process) than Redis spends on the commands. The dispatcher
collects them around a turn and sends them with the conversation before it delivers the
replies, so a button pressed on a reply finds what it needs. Outside a turn (background
ticks, the CLI), or once the turn's batch is sent, writers write at once as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from concierge.round_trips import round_trips


class TurnWrites:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self.pipe: Pipeline = redis.pipeline(transaction=False)
        # Reaches written in this turn, so a lookup later in the same turn reads its own write.
        self.reaches: dict[str, str] = {}
        self._open = True

    @property
    def open(self) -> bool:
        return self._open

    async def send(self) -> None:
        self._open = False  # a task the turn started that writes later writes at once
        await round_trips(self._redis).execute(self.pipe)


_current: ContextVar[TurnWrites | None] = ContextVar("concierge_turn_writes", default=None)


def current() -> TurnWrites | None:
    """The batch of the turn running now, if it is still collecting."""
    writes = _current.get()
    return writes if writes is not None and writes.open else None


@contextmanager
def collecting(writes: TurnWrites) -> Iterator[TurnWrites]:
    token = _current.set(writes)
    try:
        yield writes
    finally:
        _current.reset(token)
