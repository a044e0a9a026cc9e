"""Redis pipelines handed over during one turn of the event loop, sent as one round trip.

Under load several people's turns reach Redis during the same turn of the loop: one starts (its
count and conversation), another ends (what it wrote), a third stores the id of a message it
sent. Each round trip cost the service more CPU than Redis spends on the commands (writing to
the socket wakes the Redis server, and on these virtual machines a wake-up across cores is the
dearest part), so callers build their pipeline as before and hand it here instead of executing
it: what was handed over during one turn of the loop goes out together, in order, and each
caller gets its own replies back, or its own first error, as `Pipeline.execute` would give.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

_Waiting = tuple[Pipeline, "asyncio.Future[list[Any]]"]


class RoundTrips:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._waiting: list[_Waiting] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, pipe: Pipeline) -> list[Any]:
        """`pipe.execute()`, sharing its round trip with the others of this turn of the loop."""
        if not len(pipe):
            return []
        loop = asyncio.get_running_loop()
        replies: asyncio.Future[list[Any]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send)
        self._waiting.append((pipe, replies))
        return await replies

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._round_trip(waiting))
        self._sending.add(task)  # a task nobody awaits must be held on to
        task.add_done_callback(self._sending.discard)

    async def _round_trip(self, waiting: list[_Waiting]) -> None:
        shared = self._redis.pipeline(transaction=False)
        for pipe, _ in waiting:
            shared.command_stack.extend(pipe.command_stack)
        try:
            replies = await shared.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: so did every caller's pipeline
            for _, done in waiting:
                if not done.done():
                    done.set_exception(exc if isinstance(exc, Exception) else ConnectionError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for pipe, done in waiting:
            mine = replies[start : start + len(pipe)]
            start += len(pipe)
            if done.done():
                continue  # its caller gave up; its commands ran all the same
            error = next((reply for reply in mine if isinstance(reply, ResponseError)), None)
            if error is None:
                done.set_result(mine)
            else:
                done.set_exception(error)


_shared: weakref.WeakKeyDictionary[aioredis.Redis, RoundTrips] = weakref.WeakKeyDictionary()


def round_trips(redis: aioredis.Redis) -> RoundTrips:
    """The shared round trips of this Redis client (one client per event loop, as the app has)."""
    shared = _shared.get(redis)
    if shared is None:
        shared = _shared[redis] = RoundTrips(redis)
    return shared
