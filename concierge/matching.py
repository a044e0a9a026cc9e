"""The core's side of matching: build the matcher from the settings and feed it the catalogue.

The matcher knows nothing of the database; this module turns expert rows (with their offer
history and whether they are in a session right now) into matcher listings.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

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
from matcher.embedders import create_embedder
from matcher.engine import Matcher, MatchQuery, MatchResult, SyncReport
from matcher.errors import MatcherError
from matcher.language import LanguageDetectorPort
from matcher.listing import Listing

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


class MatcherHost:
    """The process's matcher, kept in step with the database as listings and presence change."""

    def __init__(self, matcher: Matcher, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.matcher = matcher
        self._reads = read_sessions(sessions)
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matcher")
        self.names: dict[str, str] = {}  # expert id → the name customers see on cards

    async def load_all(self) -> SyncReport:
        async with self._reads() as db:
            listings = await load_listings(db)
            self.names = await _names(db, None)
        async with self._lock:
            return await asyncio.to_thread(self.matcher.sync, listings)

    async def refresh(self, expert_ids: Collection[str]) -> None:
        """Re-read these experts: changed listings re-embedded, unpublished ones dropped."""
        async with self._reads() as db:
            listings = await load_listings(db, expert_ids)
            self.names.update(await _names(db, expert_ids))
        found = {listing.id for listing in listings}
        async with self._lock:
            self.matcher.update(listings)
            self.matcher.remove([expert_id for expert_id in expert_ids if expert_id not in found])

    async def match(self, query: MatchQuery) -> MatchResult:
        """Match on the matcher's own thread: embedding and language detection release the GIL,
        so they run beside the event loop's work instead of inside it (one at a time, in order)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.matcher.match, query)

    def warm_up(self) -> None:
        """First calls load lazily built tables (date parsing, plural rules): pay that at start."""
        for text in (
            "my wifi stopped working tomorrow at 3pm",
            "mon wifi ne marche plus demain à 15h",
            "mein WLAN geht nicht morgen um 15 Uhr",
            "mi wifi no funciona mañana a las 3",
            "我的wifi坏了 明天下午3点",
            "Wi-Fiが繋がらない 明日の午後3時",
            "I need help on 3 December at 10:00",
        ):
            self.matcher.match(MatchQuery(text))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


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
                business_id=expert.business_id,
            )
        )
    return listings


def _minutes(hours: WeeklyHours) -> dict[str, list[tuple[int, int]]]:
    return {day: [(r.start, r.end) for r in ranges] for day, ranges in hours.days.items()}
