"""The core's side of matching: build the matcher from the settings and feed it the catalogue.

The matcher knows nothing of the database; this module turns expert rows (with their offer
history and whether they are in a session right now) into matcher listings.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import signal
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

import numpy as np
import structlog
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.catalogue import ExpertLine, read_expert_lines
from concierge.config import Settings
from concierge.database import read_sessions
from concierge.errors import ConfigError
from concierge.hours import WeeklyHours
from concierge.lifecycle import State
from concierge.model import ChannelIdentity, Expert, Offer, OfferStatus, Person, Session
from knowledge.demo import demo_catalogue_path
from knowledge.taxonomy import load_taxonomy
from matcher.articles import ArticlePassage
from matcher.embedders import Embedder, create_embedder
from matcher.engine import Matcher, MatchQuery, MatchResult, SyncReport
from matcher.errors import MatcherError
from matcher.language import LanguageDetectorPort
from matcher.listing import Listing
from matcher.understanding import clean

log = structlog.get_logger("concierge.matching")

_IN_FLIGHT = 64
_BATCH = 16  # requests the matcher process takes at once (their queries embedded together)
_ANSWERED = (OfferStatus.ACCEPTED, OfferStatus.DECLINED, OfferStatus.TIMED_OUT)


def build_matcher(settings: Settings) -> Matcher:
    """Load the embedding model and the language detector (seconds: do it once per process)."""
    try:
        embedder = create_embedder(settings.embedder, settings.matcher_threads)
    except MatcherError as exc:
        raise ConfigError(f"CONCIERGE_EMBEDDER={settings.embedder!r} cannot be used here: {exc}") from exc
    return Matcher(
        embedder,
        LanguageDetectorPort(settings.detector_languages),
        load_taxonomy(),
        weights=settings.weights,
        exact_limit=settings.matcher_exact_limit,
        index_dir=settings.data_dir / "index",
    )


def demo_listings() -> list[Listing]:
    """The demo catalogue as matcher listings, straight from its file (evaluation, benchmarks)."""
    lines = read_expert_lines(demo_catalogue_path().read_bytes().splitlines())
    return [
        Listing(
            id=line.id,
            headline=line.headline,
            bio=line.bio,
            skills=tuple(line.skills),
            categories=tuple(line.categories),
            languages=tuple(line.languages),
            pricing_mode=line.pricing.mode,
            price_amount=line.pricing.amount,
            currency=line.pricing.currency,
            timezone=line.timezone,
            hours=_minutes(WeeklyHours.parse(line.hours)),
            online=line.online,
            rating_count=line.rating.count,
            rating_total=line.rating_total,
        )
        for _, line in lines
        if isinstance(line, ExpertLine)
    ]


_WARM_UP_TEXTS = (
    "my wifi stopped working tomorrow at 3pm",
    "mon wifi ne marche plus demain à 15h",
    "mein WLAN geht nicht morgen um 15 Uhr",
    "mi wifi no funciona mañana a las 3",
    "我的wifi坏了 明天下午3点",
    "Wi-Fiが繋がらない 明日の午後3時",
    "I need help on 3 December at 10:00",
)


def warm_up(matcher: Matcher) -> None:
    """First calls load lazily built tables (date parsing, plural rules): pay that at start."""
    for text in _WARM_UP_TEXTS:
        matcher.match(MatchQuery(text))


class _Backend(Protocol):
    """Where the matcher runs: a thread of this process, or a process of its own."""

    def listing(self, listing_id: str) -> Listing | None: ...
    async def sync(self, listings: list[Listing]) -> SyncReport: ...
    async def update(self, listings: list[Listing]) -> None: ...
    async def remove(self, listing_ids: list[str]) -> None: ...
    async def load_articles(self, passages: list[ArticlePassage]) -> int: ...
    async def match(self, query: MatchQuery) -> MatchResult: ...
    async def warm_up(self) -> None: ...
    async def close(self) -> None: ...


class _OwnThread:
    """A matcher object of this process (tests and benchmarks hand one in), matched on a thread."""

    def __init__(self, matcher: Matcher) -> None:
        self._matcher = matcher
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matcher")

    def listing(self, listing_id: str) -> Listing | None:
        return self._matcher.listing(listing_id)

    async def sync(self, listings: list[Listing]) -> SyncReport:
        return await asyncio.to_thread(self._matcher.sync, listings)

    async def update(self, listings: list[Listing]) -> None:
        self._matcher.update(listings)

    async def remove(self, listing_ids: list[str]) -> None:
        self._matcher.remove(listing_ids)

    async def load_articles(self, passages: list[ArticlePassage]) -> int:
        return await asyncio.to_thread(self._matcher.load_articles, passages)

    async def match(self, query: MatchQuery) -> MatchResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._matcher.match, query)

    async def warm_up(self) -> None:
        await asyncio.to_thread(warm_up, self._matcher)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class MatcherProcess:
    """The matcher in a child process: how the service runs it.

    On a thread of this process the matcher shared the GIL with the event loop. A match is
    2-3 ms of mostly GIL-holding numpy and Python, and each time either side let go of the GIL
    (a socket write, a BLAS call) it waited up to the 5 ms switch interval to get it back:
    under load a 2 ms match took 15-50 ms and that one thread capped the process at ~75
    requests/s. In a process of its own it runs on another core and costs the loop one pipe
    message each way. This side keeps the listings it sent, so cards need no round trip and
    a child that dies is started again with them."""

    def __init__(self, factory: Callable[[], Matcher]) -> None:
        self._factory = factory
        self._listings: dict[str, Listing] = {}
        self._passages: list[ArticlePassage] = []
        self._connection: Connection | None = None
        self._process: BaseProcess | None = None
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._outbox: list[tuple[str, tuple[Any, ...]]] = []  # asked during this turn of the loop
        # Few enough requests in the pipe that writing them never blocks the loop.
        self._window = asyncio.Semaphore(_IN_FLIGHT)
        self._starting = asyncio.Lock()
        self._ready = False  # started and holding every listing: callers wait until then

    async def start(self) -> None:
        async with self._starting:
            if not self._ready:
                await self._spawn()

    async def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve, args=(theirs, self._factory), name="concierge-matcher", daemon=True
        )
        await asyncio.to_thread(process.start)
        theirs.close()
        loop = asyncio.get_running_loop()
        self._process, self._connection = process, ours
        ready = loop.create_future()
        self._pending.append(ready)
        loop.add_reader(ours.fileno(), self._answered)
        try:
            await ready  # the model is loaded, or why not is raised here
            if self._listings:  # started again: give it what the last one held
                await self._send("sync", list(self._listings.values()))
            if self._passages:
                await self._send("load_articles", self._passages)
        except BaseException:
            await self.close()
            raise
        self._ready = True
        log.info("matcher process ready", pid=process.pid)

    def _answered(self) -> None:
        connection = self._connection
        assert connection is not None
        try:
            while connection.poll():
                for ok, value in connection.recv():
                    future = self._pending.popleft()
                    if future.done():
                        continue  # its caller gave up (a cancelled turn)
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        except (EOFError, OSError):
            self._lost()

    def _lost(self) -> None:
        """The child exited: fail what it was asked; the next call starts another."""
        self._ready = False
        if self._connection is not None:
            asyncio.get_running_loop().remove_reader(self._connection.fileno())
            self._connection.close()
            self._connection = None
        exit_code = self._process.exitcode if self._process is not None else None
        log.warning("matcher process stopped", exit_code=exit_code, pending=len(self._pending))
        self._outbox.clear()
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(MatcherError("the matcher process stopped"))

    async def _call(self, operation: str, *args: Any) -> Any:
        if not self._ready:
            await self.start()
        return await self._send(operation, *args)

    async def _send(self, operation: str, *args: Any) -> Any:
        async with self._window:
            if self._connection is None:
                raise MatcherError("the matcher process stopped")
            loop = asyncio.get_running_loop()
            answer = loop.create_future()
            self._pending.append(answer)
            if not self._outbox:
                loop.call_soon(self._flush)
            self._outbox.append((operation, args))
            return await answer

    def _flush(self) -> None:
        """Everything asked during one turn of the loop, in one message.

        Each message wakes the other process, and on these virtual machines a wake-up across
        cores cost more CPU than pickling the request: under load several turns ask during
        one turn of the loop, and the answers of a batch come back together the same way."""
        asked, self._outbox = self._outbox, []
        connection = self._connection
        if connection is None or not asked:
            return  # lost meanwhile: `_lost` failed their futures
        try:
            connection.send(asked)
        except OSError:
            self._lost()

    def listing(self, listing_id: str) -> Listing | None:
        return self._listings.get(listing_id)

    async def sync(self, listings: list[Listing]) -> SyncReport:
        report: SyncReport = await self._call("sync", listings)
        self._listings = {listing.id: listing for listing in listings}
        return report

    async def update(self, listings: list[Listing]) -> None:
        await self._call("update", listings)
        self._listings.update((listing.id, listing) for listing in listings)

    async def remove(self, listing_ids: list[str]) -> None:
        await self._call("remove", listing_ids)
        for listing_id in listing_ids:
            self._listings.pop(listing_id, None)

    async def load_articles(self, passages: list[ArticlePassage]) -> int:
        count: int = await self._call("load_articles", passages)
        self._passages = passages
        return count

    async def match(self, query: MatchQuery) -> MatchResult:
        result: MatchResult = await self._call("match", query)
        return result

    async def warm_up(self) -> None:
        """The child warmed itself up before saying it was ready."""

    async def close(self) -> None:
        self._ready = False
        connection, process = self._connection, self._process
        if connection is not None:
            asyncio.get_running_loop().remove_reader(connection.fileno())
            connection.close()  # the child reads the end of its pipe and exits
            self._connection = None
        if process is not None:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
        self._outbox.clear()
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(MatcherError("the matcher was closed"))


def _serve(connection: Connection, factory: Callable[[], Matcher]) -> None:
    """The matcher process: build the matcher, then answer requests in order until the pipe ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the service, which stops this
    try:
        matcher = factory()
        warm_up(matcher)
    except Exception as exc:  # said to the service, which stops with it
        connection.send([(False, _sendable(exc))])
        return
    connection.send([(True, None)])
    own = matcher.embedder
    while True:
        try:
            requests = connection.recv()
            while len(requests) < _BATCH and connection.poll():
                requests.extend(connection.recv())
        except (EOFError, OSError):
            return
        matcher.embedder = _embedded_together(own, [args[0] for op, args in requests if op == "match"])
        answers = []
        try:
            for operation, args in requests:
                try:
                    answers.append((True, getattr(matcher, operation)(*args)))
                except Exception as exc:  # one bad request must not stop the others
                    answers.append((False, _sendable(exc)))
        finally:
            matcher.embedder = own
        connection.send(answers)


def _embedded_together(embedder: Embedder, queries: list[MatchQuery]) -> Embedder:
    """The requests that queued up while the last ones were matched, embedded as one batch.

    The model costs ~2.7 ms for one sentence and ~1.5 ms each for eight at once (the same
    vectors to 1e-7): under load the matcher process is the busiest, so requests waiting
    for it are embedded together, each still matched on its own."""
    cleaned = (clean(query.text) for query in queries)
    texts = list(dict.fromkeys(text for text, problem in cleaned if problem is None))
    if len(texts) < 2:
        return embedder
    return _Embedded(embedder, dict(zip(texts, embedder.embed_queries(texts), strict=True)))


class _Embedded:
    """An embedder that already knows some queries' vectors."""

    def __init__(self, embedder: Embedder, known: dict[str, NDArray[np.float32]]) -> None:
        self._embedder = embedder
        self._known = known
        self.name = embedder.name
        self.dim = embedder.dim

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if all(text in self._known for text in texts):
            return np.vstack([self._known[text] for text in texts]).astype(np.float32, copy=False)
        return self._embedder.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._embedder.embed_passages(texts)


def _sendable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own exception, never from outside
    except Exception:
        return MatcherError(f"{type(exc).__name__}: {exc}")
    return exc


class MatcherHost:
    """The process's matcher, kept in step with the database as listings and presence change."""

    def __init__(self, matcher: Matcher | MatcherProcess, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._backend: _Backend = matcher if isinstance(matcher, MatcherProcess) else _OwnThread(matcher)
        self._reads = read_sessions(sessions)
        self._lock = asyncio.Lock()
        self.names: dict[str, str] = {}  # expert id → the name customers see on cards

    async def load_all(self) -> SyncReport:
        async with self._reads() as db:
            listings = await load_listings(db)
            self.names = await _names(db, None)
        async with self._lock:
            return await self._backend.sync(listings)

    async def refresh(self, expert_ids: Collection[str]) -> None:
        """Re-read these experts: changed listings re-embedded, unpublished ones dropped."""
        async with self._reads() as db:
            listings = await load_listings(db, expert_ids)
            self.names.update(await _names(db, expert_ids))
        found = {listing.id for listing in listings}
        async with self._lock:
            await self._backend.update(listings)
            await self._backend.remove([expert_id for expert_id in expert_ids if expert_id not in found])

    async def load_articles(self, passages: list[ArticlePassage]) -> int:
        """The self-help articles to search alongside experts (replacing those it had)."""
        async with self._lock:
            return await self._backend.load_articles(passages)

    def listing(self, expert_id: str) -> Listing | None:
        """The listing as the matcher holds it (what cards show)."""
        return self._backend.listing(expert_id)

    async def match(self, query: MatchQuery) -> MatchResult:
        return await self._backend.match(query)

    async def warm_up(self) -> None:
        await self._backend.warm_up()

    async def close(self) -> None:
        await self._backend.close()


async def _names(db: AsyncSession, only: Collection[str] | None) -> dict[str, str]:
    query = select(Expert.id, Person.display_name).join(Person, Person.id == Expert.person_id)
    if only is not None:
        query = query.where(Expert.id.in_(only))
    return {str(row[0]): str(row[1]) for row in await db.execute(query)}


async def load_listings(db: AsyncSession, only: Collection[str] | None = None) -> list[Listing]:
    """Published listings as the matcher sees them (all, or just the experts in `only`)."""
    offers: dict[str, dict[OfferStatus, int]] = defaultdict(dict)
    counts = select(Offer.expert_id, Offer.status, func.count()).group_by(Offer.expert_id, Offer.status)
    live = select(Session.expert_id).where(Session.state == State.LIVE)
    # "Online" only counts for someone a notification can reach: an imported listing whose
    # expert never wrote to the bot is offered for later, not as free now.
    reachable = select(Expert.id).join(ChannelIdentity, ChannelIdentity.person_id == Expert.person_id)
    experts = select(Expert).where(Expert.published.is_(True)).order_by(Expert.id)
    if only is not None:
        counts = counts.where(Offer.expert_id.in_(only))
        live = live.where(Session.expert_id.in_(only))
        reachable = reachable.where(Expert.id.in_(only))
        experts = experts.where(Expert.id.in_(only))
    for expert_id, status, count in await db.execute(counts):
        offers[expert_id][status] = count
    busy = set(await db.scalars(live))
    can_reach = set(await db.scalars(reachable))
    listings = []
    for expert in await db.scalars(experts):
        history = offers.get(expert.id, {})
        listings.append(
            Listing(
                id=expert.id,
                headline=expert.headline,
                bio=expert.bio,
                skills=tuple(expert.skills),
                categories=tuple(expert.categories),
                languages=tuple(expert.languages),
                pricing_mode=expert.pricing.mode.value,
                price_amount=expert.pricing.amount,
                currency=expert.pricing.currency,
                timezone=expert.time_zone,
                hours=_minutes(expert.hours),
                online=expert.online and expert.id in can_reach,
                busy=expert.id in busy,
                rating_count=expert.rating_count,
                rating_total=expert.rating_total,
                offers_accepted=history.get(OfferStatus.ACCEPTED, 0),
                offers_answered=sum(history.get(status, 0) for status in _ANSWERED),
                sessions_kept=expert.sessions_kept,
                no_shows=expert.no_shows,
                business_id=expert.business_id,
            )
        )
    return listings


def _minutes(hours: WeeklyHours) -> dict[str, list[tuple[int, int]]]:
    return {day: [(r.start, r.end) for r in ranges] for day, ranges in hours.days.items()}
