"""What every help request passes through, made cheap: plain-SQL reads and writes, and the
guarantees they keep (atomic, never blocking the event loop on another process's lock)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from sqlalchemy import Connection, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from bots.conversation import Conversation, ConversationStore
from bots.dispatcher import Dispatcher
from bots.events import Incoming, Kind, Reply
from bots.rate_limit import RateLimiter
from concierge.database import read, write
from concierge.errors import ConfigError
from concierge.lifecycle import State
from concierge.matching import MatcherProcess, _embedded_together
from concierge.model import Channel, HelpRequest, Person
from concierge.reach import Reach, reach_key, reach_of, remember
from concierge.redis_keys import entity_key
from concierge.round_trips import round_trips
from concierge.transitions import Lifecycle
from knowledge.taxonomy import load_taxonomy
from matcher.embedders import create_embedder
from matcher.engine import Matcher, MatchQuery, MatchResult
from matcher.errors import MatcherError
from matcher.language import LanguageDetectorPort
from matcher.listing import Listing
from tests.factories import add_person


def _count_requests(db: Connection) -> int:
    return int(db.scalar(select(func.count()).select_from(HelpRequest)) or 0)


async def test_open_request_writes_the_request_and_the_adopted_language_together(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer = await add_person(sessions)
    request = await Lifecycle(sessions).open_request(
        customer.id, "mon wifi ne marche plus", language="fr", customer_locale="fr"
    )
    async with sessions() as db:
        stored = await db.get(HelpRequest, request.id)
        person = await db.get(Person, customer.id)
    assert stored is not None
    assert stored.status is State.OPEN
    assert stored.language == "fr"
    assert stored.created_at == request.created_at
    assert person is not None
    assert person.locale == "fr"
    assert await read(sessions, _count_requests) == 1


async def test_a_request_that_cannot_be_written_leaves_the_language_as_it_was(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer = await add_person(sessions)  # speaks "es"
    with pytest.raises(IntegrityError):  # no such community: the insert fails, and the adoption with it
        await Lifecycle(sessions).open_request(
            customer.id, "mon wifi ne marche plus", customer_locale="fr", community_id="com_nowhere"
        )
    async with sessions() as db:
        person = await db.get(Person, customer.id)
    assert person is not None
    assert person.locale == "es"
    assert await read(sessions, _count_requests) == 0


async def test_a_failed_write_changes_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    customer = await add_person(sessions)
    lifecycle = Lifecycle(sessions)
    first = await lifecycle.open_request(customer.id, "help me")

    def twice(db: Connection) -> None:
        db.execute(HelpRequest.__table__.insert(), [{**_row(first), "id": "req_new"}])
        db.execute(HelpRequest.__table__.insert(), [_row(first)])  # the same id again

    with pytest.raises(IntegrityError):
        await write(sessions, twice)
    assert await read(sessions, _count_requests) == 1


def _row(request: HelpRequest) -> dict[str, object]:
    return {column.key: getattr(request, column.key) for column in HelpRequest.__mapper__.column_attrs}


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_a_write_waits_for_another_process_lock_without_blocking_the_loop(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    customer = await add_person(sessions)
    path = make_url(database_url).database
    assert path is not None
    assert Path(path).exists()
    other = sqlite3.connect(path, isolation_level=None)  # another process's connection, in effect
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    opening = asyncio.create_task(Lifecycle(sessions).open_request(customer.id, "help me"))
    await asyncio.sleep(0.3)
    assert not opening.done()  # waiting for the lock…
    assert ticks >= 10  # …while the loop goes on serving others
    other.execute("COMMIT")
    other.close()
    request = await asyncio.wait_for(opening, 10)
    ticker.cancel()
    assert await read(sessions, lambda db: db.scalar(select(HelpRequest.text))) == request.text


# ---------------------------------------------------------------- the matcher in its own process


def small_matcher() -> Matcher:
    """Built in the matcher process (so importable, and quick: two languages)."""
    return Matcher(create_embedder("use", 1), LanguageDetectorPort(["en", "fr"]), load_taxonomy())


def broken_matcher() -> Matcher:
    raise ConfigError("CONCIERGE_EMBEDDER='nope' cannot be used here")


NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
QUERIES = [
    MatchQuery(text, include_offline=True, now=NOW)
    for text in (
        "Mon wifi ne marche plus, mon portable ne se connecte pas",
        "Can someone review my Python code before I ship it?",
        "I need help with my bike brakes under 20 euros",
        "my router keeps dropping the connection",
    )
]


@pytest.fixture
async def remote(demo_listings: list[Listing]) -> AsyncIterator[MatcherProcess]:
    process = MatcherProcess(small_matcher)
    await process.start()
    try:
        await process.sync(demo_listings)
        yield process
    finally:
        await process.close()


def ranked(result: MatchResult) -> list[str]:
    return [expert.id for expert in result.experts]


async def test_the_matcher_process_answers_as_the_matcher_itself(
    remote: MatcherProcess, demo_listings: list[Listing]
) -> None:
    local = small_matcher()
    local.sync(demo_listings)
    # Sent together, so the process embeds them as one batch: the same answers as one by one.
    together = await asyncio.gather(*(remote.match(query) for query in QUERIES))
    assert [ranked(result) for result in together] == [ranked(local.match(query)) for query in QUERIES]
    assert all(result.experts for result in together)
    for result, query in zip(together, QUERIES, strict=True):
        alone = local.match(query)
        assert result.understanding.language is not None
        assert alone.understanding.language is not None
        assert result.understanding.language.code == alone.understanding.language.code
        assert result.understanding.category == alone.understanding.category
        assert [e.score for e in result.experts] == pytest.approx([e.score for e in alone.experts])
    assert remote.listing(demo_listings[0].id) == demo_listings[0]
    assert remote.listing("nobody") is None


async def test_listing_changes_reach_the_matcher_process(
    remote: MatcherProcess, demo_listings: list[Listing]
) -> None:
    first = ranked(await remote.match(QUERIES[1]))[0]
    await remote.remove([first])
    assert first not in ranked(await remote.match(QUERIES[1]))
    assert remote.listing(first) is None
    listing = next(item for item in demo_listings if item.id == first)
    await remote.update([listing])
    assert ranked(await remote.match(QUERIES[1]))[0] == first


async def test_a_matcher_process_that_dies_is_started_again_with_the_listings(
    remote: MatcherProcess,
) -> None:
    before = ranked(await remote.match(QUERIES[0]))
    process = remote._process
    assert process is not None
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(MatcherError):  # what it was asked when it died fails…
        await remote.match(QUERIES[0])
    assert ranked(await remote.match(QUERIES[0])) == before  # …the next starts and syncs a new one
    assert remote._process is not process


async def test_a_matcher_that_cannot_be_built_stops_the_start() -> None:
    process = MatcherProcess(broken_matcher)
    with pytest.raises(ConfigError, match="CONCIERGE_EMBEDDER"):
        await process.start()
    assert process._process is not None
    assert not process._process.is_alive()


async def test_closing_stops_the_matcher_process(remote: MatcherProcess) -> None:
    child = remote._process
    assert child is not None
    assert child.is_alive()
    await remote.close()
    assert not child.is_alive()


def test_queries_waiting_together_are_embedded_as_one_batch(use_embedder: Any) -> None:
    calls: list[int] = []

    class Counting:
        name, dim = use_embedder.name, use_embedder.dim

        def embed_queries(self, texts: Sequence[str]) -> Any:
            calls.append(len(texts))
            return use_embedder.embed_queries(texts)

        def embed_passages(self, texts: Sequence[str]) -> Any:
            return use_embedder.embed_passages(texts)

    counting = Counting()
    assert _embedded_together(counting, QUERIES[:1]) is counting  # nothing to batch
    prepared = _embedded_together(counting, [*QUERIES, MatchQuery("  ")])  # an empty one left out
    assert calls == [len(QUERIES)]
    for query in QUERIES:
        text = " ".join(query.text.split())
        assert prepared.embed_queries([text]) == pytest.approx(use_embedder.embed_queries([text]), abs=1e-6)
    assert calls == [len(QUERIES)]  # answered from the batch
    prepared.embed_queries(["something else"])
    assert calls == [len(QUERIES), 1]


# ---------------------------------------------------------------- one Redis round trip per turn start


class Recording:
    """A dialogue that notes what it was handed and moves the conversation on."""

    def __init__(self) -> None:
        self.seen: list[tuple[Incoming, Conversation]] = []

    async def handle(self, event: Incoming, conversation: Conversation) -> list[Reply]:
        self.seen.append((event, replace(conversation)))
        conversation.step = f"after {len(self.seen)}"
        return [Reply(event.reach, f"turn {len(self.seen)}")]

    def t(self, key: str, language: str, **values: object) -> str:
        return key


class Outbox:
    def __init__(self) -> None:
        self.delivered: list[Reply] = []

    async def deliver(self, reply: Reply) -> None:
        self.delivered.append(reply)


async def test_a_turn_starts_with_the_count_the_conversation_and_the_remembered_group(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bots.rate_limit.time", SimpleNamespace(time=lambda: 1_000_000.0))  # one minute
    redis: Any = aioredis.Redis.from_url(redis_url)
    user = f"u{secrets.token_hex(4)}"
    remembered = entity_key("chat", f"telegram.{user}", "community")
    dialogue, outbox = Recording(), Outbox()
    dispatcher = Dispatcher(
        cast(Any, dialogue), ConversationStore(redis, 60), RateLimiter(redis, per_minute=3)
    )
    dispatcher.register(Channel.TELEGRAM, outbox)
    event = Incoming(Channel.TELEGRAM, user, "Mo", Kind.TEXT, "my printer")
    try:
        await dispatcher.handle(event, community_key=remembered)  # nothing remembered yet
        await redis.set(remembered, "-100123", ex=60)
        await dispatcher.handle(event, community_key=remembered)
        await dispatcher.handle(replace(event, community="-100999"), community_key=remembered)
        assert [seen.community for seen, _ in dialogue.seen] == [None, "-100123", "-100999"]
        # Each turn saw what the one before saved.
        assert [conversation.step for _, conversation in dialogue.seen] == ["idle", "after 1", "after 2"]
        assert [reply.text for reply in outbox.delivered] == ["turn 1", "turn 2", "turn 3"]
        # Over the limit: told once, then ignored, the conversation untouched.
        await dispatcher.handle(event, community_key=remembered)
        assert await dispatcher.handle(event, community_key=remembered) == []
        assert len(dialogue.seen) == 3
        assert outbox.delivered[-1].text == "bot.rate_limited"
        stored = await ConversationStore(redis, 60).load(event.reach)
        assert stored.step == "after 3"
    finally:
        await redis.aclose()


async def test_writes_asked_together_commit_together_and_fail_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer = await add_person(sessions)
    first = await Lifecycle(sessions).open_request(customer.id, "help me")

    def insert(request_id: str) -> Any:
        def work(db: Connection) -> str:
            db.execute(HelpRequest.__table__.insert(), [{**_row(first), "id": request_id}])
            return request_id

        return work

    def failing(db: Connection) -> None:
        db.execute(HelpRequest.__table__.insert(), [{**_row(first), "id": "req_twice"}])
        db.execute(HelpRequest.__table__.insert(), [_row(first)])  # the first request's id again

    asked = [write(sessions, insert(f"req_{i}")) for i in range(5)]
    outcomes = await asyncio.gather(*asked[:2], write(sessions, failing), *asked[2:], return_exceptions=True)
    assert outcomes[:2] + outcomes[3:] == [f"req_{i}" for i in range(5)]
    assert isinstance(outcomes[2], IntegrityError)
    ids = await read(sessions, lambda db: set(db.scalars(select(HelpRequest.id))))
    assert ids == {first.id, *(f"req_{i}" for i in range(5))}  # nothing of the failed one


async def test_a_turns_writes_reach_redis_together_before_its_replies(redis_url: str) -> None:
    redis: Any = aioredis.Redis.from_url(redis_url)
    person = f"p_{secrets.token_hex(4)}"
    event = Incoming(Channel.TELEGRAM, f"u{secrets.token_hex(4)}", "Mo", Kind.TEXT, "my printer")
    seen_in_redis: list[object] = []

    class Remembering(Recording):
        async def handle(self, event: Incoming, conversation: Conversation) -> list[Reply]:
            await remember(redis, person, event.reach)
            seen_in_redis.append(await redis.get(reach_key(person)))  # not sent yet…
            seen_in_redis.append((await reach_of(redis, [person]))[person])  # …but read back in the turn
            return await super().handle(event, conversation)

    class Checking(Outbox):
        async def deliver(self, reply: Reply) -> None:
            # By the time a reply goes out, what the turn wrote is in Redis.
            seen_in_redis.append(await redis.get(reach_key(person)))
            seen_in_redis.append((await ConversationStore(redis, 60).load(event.reach)).step)
            await super().deliver(reply)

    dispatcher = Dispatcher(
        cast(Any, Remembering()), ConversationStore(redis, 60), RateLimiter(redis, per_minute=10)
    )
    dispatcher.register(Channel.TELEGRAM, Checking())
    try:
        await dispatcher.handle(event)
        assert seen_in_redis == [None, event.reach, str(event.reach).encode(), "after 1"]
        await remember(redis, person, Reach(Channel.DISCORD, "42"))  # outside a turn: at once
        assert await redis.get(reach_key(person)) == b"discord:42"
    finally:
        await redis.delete(reach_key(person))
        await redis.aclose()


@pytest.mark.parametrize("engine_name", ["postgres"])
async def test_a_pooled_connection_the_server_dropped_is_replaced(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    customer = await add_person(sessions)
    backend = select(func.pg_backend_pid())

    async def drop(pid: int) -> None:  # from outside the pool, as a server restart would
        other = create_async_engine(database_url, poolclass=NullPool)
        async with other.connect() as connection:
            await connection.execute(select(func.pg_terminate_backend(pid)))
        await other.dispose()

    # The hot path's own lookups and writes take pooled connections unpinged and try again
    # on a fresh one; every other checkout pings first.
    first = await read(sessions, lambda db: db.scalar(backend))
    await drop(first)
    second = await read(sessions, lambda db: db.scalar(backend))
    assert second != first
    await drop(second)
    request = await Lifecycle(sessions).open_request(customer.id, "help me")
    assert await read(sessions, lambda db: db.scalar(select(HelpRequest.text))) == request.text
    third = await read(sessions, lambda db: db.scalar(backend))
    await drop(third)
    async with sessions() as db:
        assert await db.scalar(select(func.count()).select_from(HelpRequest)) == 1


async def test_pipelines_handed_over_together_share_a_round_trip_and_keep_their_replies(
    redis_url: str,
) -> None:
    redis: Any = aioredis.Redis.from_url(redis_url)
    key = f"t_{secrets.token_hex(4)}"
    sent: list[int] = []
    connection_class = redis.connection_pool.connection_class
    original = connection_class.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(1)
        await original(self, command, check_health)

    def pipeline(*commands: tuple[str, ...]) -> Any:
        pipe = redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe

    shared = round_trips(redis)
    await redis.ping()  # connected (its handshake is round trips of its own)
    connection_class.send_packed_command = counted
    try:
        first, second, failing, last = await asyncio.gather(
            shared.execute(pipeline(("SET", key, "1"), ("INCR", key))),
            shared.execute(
                pipeline(
                    ("GET", key),
                )
            ),
            shared.execute(
                pipeline(
                    ("HSET", key, "f", "v"),
                )
            ),  # the wrong type for this key
            shared.execute(pipeline(("INCR", key), ("GET", key))),
            return_exceptions=True,
        )
        assert sent == [1]  # one round trip for the four of them
        assert first == [True, 2]
        assert second == [b"2"]
        assert isinstance(failing, ResponseError)  # its own error, nobody else's
        assert last == [3, b"3"]
    finally:
        connection_class.send_packed_command = original
        await redis.delete(key)
        await redis.aclose()
