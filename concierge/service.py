"""The concierge core as the dialogue engine uses it: one method per thing a person can do.

Each method does the work through the modules that own it (people, onboarding, lifecycle,
claims, the matcher host, the waiting line) and answers with frozen views. Nothing here knows
about chats, buttons or languages; the engine decides what to say.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import Connection, bindparam, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session as OrmSession

from billing.invoice import InvoiceProvider
from billing.quotes import commission_percent
from concierge import contact_flags, onboarding, people, turn_writes
from concierge.articles import ArticleLibrary
from concierge.blocks import Blocks
from concierge.booking_desk import BookingDesk
from concierge.bookings import Bookings
from concierge.business_admins import BusinessAdmins
from concierge.business_reports import BusinessReports, ReportDue, ReportLinks
from concierge.calendar_web import CalendarLinks
from concierge.claims import OfferDesk
from concierge.communities import Communities, Scope
from concierge.config import Settings
from concierge.database import read, read_sessions
from concierge.errors import DomainError, NotFound
from concierge.expert_schedule import ExpertSchedules
from concierge.languages import check_language
from concierge.lifecycle import State
from concierge.linking import IdentityLinks
from concierge.matching import MatcherHost
from concierge.model import (
    ArticleOutcome,
    Block,
    Channel,
    ChannelIdentity,
    Expert,
    HelpRequest,
    Offer,
    OfferStatus,
    Person,
    Session,
    utcnow,
)
from concierge.moderation import Moderation
from concierge.money_back import MoneyBack
from concierge.payments import Cashier, HandOff, PaymentRefused, session_quote
from concierge.pricing import Pricing, PricingMode
from concierge.reach import Reach, reach_of, remember
from concierge.receipts import ReceiptLinks
from concierge.redis_keys import entity_key
from concierge.reports import Reports
from concierge.reviews import Rated, Reviews
from concierge.rooms import SessionRooms
from concierge.sponsorship import BudgetAlert, Sponsorship
from concierge.transitions import Lifecycle
from concierge.views import (
    Accepted,
    AskOutcome,
    Cancelled,
    ExpertCard,
    ExpertView,
    NoMatch,
    OfferNotice,
    PaymentNotice,
    PersonView,
    Proposal,
    Queued,
    Round,
    SelfHelp,
    SessionLine,
)
from concierge.waiting_line import OfferClock, WaitingLine
from knowledge.i18n import LANGUAGES
from matcher.engine import MatchQuery, MatchResult, NoExperts
from matcher.facets import next_opening
from matcher.ranking import Priors

SHOWN_TTL_SECONDS = 24 * 3600
MAX_DISPLAY_NAME = 80
# Ranking factors worth telling a customer about, strongest first when tied.
_REASONS = ("semantic", "category", "language", "rating", "price", "responsiveness")


class Concierge:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        matcher: MatcherHost,
        *,
        rooms: SessionRooms | None = None,
        cashier: Cashier | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self._rooms = rooms
        # Without a configured provider sessions are invoiced: the same cashier, no card.
        self.cashier = cashier or Cashier(settings, sessions, InvoiceProvider(), clock=clock)
        self.receipts = ReceiptLinks(settings.signing_key, settings.base_url)
        self.calendar = CalendarLinks(settings.signing_key, settings.base_url)
        self.reviews = Reviews(sessions, clock=clock)
        self.money_back = MoneyBack(sessions, self.cashier, clock=clock)
        self.blocks = Blocks(sessions)
        self.reports = Reports(sessions, clock=clock)
        self.moderation = Moderation(
            sessions, redis, strikes=settings.mute_strikes, minutes=settings.mute_minutes, clock=clock
        )
        self._sessions = sessions
        self._reads = read_sessions(sessions)
        self._redis = redis
        self._matcher = matcher
        self._clock = clock
        self.lifecycle = Lifecycle(sessions, clock=clock)
        self._desk = OfferDesk(redis, sessions, self.lifecycle)
        self.line = WaitingLine(redis)
        self.clock = OfferClock(redis)
        self.communities = Communities(sessions, self._reads)
        self.businesses = BusinessAdmins(sessions, clock=clock)
        self.sponsorship = Sponsorship(sessions, self.cashier, clock=clock)
        self.business_reports = BusinessReports(
            sessions, ReportLinks(settings.signing_key, settings.base_url), clock=clock
        )
        self._links = IdentityLinks(sessions, redis)
        self.bookings = Bookings(settings, sessions, self.lifecycle, self.cashier, clock=clock)
        self.schedules = ExpertSchedules(sessions, max_minutes=settings.max_session_minutes, clock=self._now)
        self.booking = BookingDesk(
            self.bookings,
            sessions,
            person=self.person,
            expert_people=self._expert_people,
            shown=self.shown_in_order,
            commission=self._commission,
        )
        self.articles = ArticleLibrary(sessions, self._reads)

    def _now(self) -> datetime:
        return self._clock().replace(tzinfo=UTC)

    def now(self) -> datetime:
        """The core's clock (a test's, when it moves time): what "this month" means."""
        return self._now()

    # ------------------------------------------------------------------ people

    async def identify(
        self, channel: Channel, user_id: str, *, name: str, locale: str | None = None
    ) -> PersonView:
        """The person writing from this channel identity (created on first contact), one query."""
        reach = Reach(channel, user_id)
        found = await read(self._sessions, lambda db: _find_identity(db, channel, user_id))
        in_blocks = True
        if found is None:
            person: Person = await people.identify(
                self._sessions, channel, user_id, display_name=name, locale=locale or "en"
            )
            expert: Expert | None = None
        else:
            person, expert, in_blocks = found
        await remember(self._redis, person.id, reach)
        return replace(self._view(person, expert, reach), in_blocks=in_blocks)

    def _view(self, person: Person, expert: Expert | None, reach: Reach | None) -> PersonView:
        muted = person.muted_until.replace(tzinfo=UTC) if person.muted_until is not None else None
        return PersonView(
            id=person.id,
            name=person.display_name,
            locale=person.locale,
            time_zone=person.time_zone,
            gate=people.age_gate(person, self._now().date()),
            reach=reach,
            expert=_expert_view(expert) if expert is not None else None,
            muted_until=muted if muted is not None and muted > self._now() else None,
            muted_reason=person.muted_reason,
        )

    async def person(self, person_id: str, *, reach: Reach | None = None) -> PersonView:
        views = await self._people([person_id])
        if person_id not in views:
            raise NotFound("person", person_id)
        view = views[person_id]
        if reach is not None and view.reach != reach:
            view = replace(view, reach=reach)
        return view

    async def _people(self, person_ids: Collection[str]) -> dict[str, PersonView]:
        async with self._reads() as db:
            persons = list(await db.scalars(select(Person).where(Person.id.in_(person_ids))))
            experts = {
                e.person_id: e
                for e in await db.scalars(select(Expert).where(Expert.person_id.in_(person_ids)))
            }
            reaches = await reach_of(self._redis, person_ids)
            # Where Redis has no record (a person who never wrote since Redis was emptied, an
            # imported expert), their newest channel identity is the way to reach them.
            unknown = [p.id for p in persons if p.id not in reaches]
            if unknown:
                rows = await db.execute(
                    select(ChannelIdentity.person_id, ChannelIdentity.channel, ChannelIdentity.external_id)
                    .where(ChannelIdentity.person_id.in_(unknown))
                    .order_by(ChannelIdentity.created_at)
                )
                for person_id, channel, external_id in rows:
                    reaches[person_id] = Reach(channel, external_id)
        return {p.id: self._view(p, experts.get(p.id), reaches.get(p.id)) for p in persons}

    async def _expert_people(self, expert_ids: Collection[str]) -> dict[str, PersonView]:
        async with self._reads() as db:
            owners = dict(
                (await db.execute(select(Expert.id, Expert.person_id).where(Expert.id.in_(expert_ids)))).all()
            )
        views = await self._people(list(owners.values()))
        return {expert_id: views[person_id] for expert_id, person_id in owners.items() if person_id in views}

    async def state_birth_date(self, person_id: str, born: date) -> people.AgeGate:
        return await people.state_birth_date(self._sessions, person_id, born, self._now().date())

    async def change_birth_date(self, person_id: str, born: date) -> people.BirthDateChange:
        return await people.change_birth_date(self._sessions, person_id, born, self._now().date())

    async def set_locale(self, person_id: str, language: str) -> None:
        check_language(language)
        async with self._sessions.begin() as db:
            await db.execute(update(Person).where(Person.id == person_id).values(locale=language))

    async def rename(self, person: PersonView, name: str) -> PersonView:
        """The name customers see on the person's card (chat apps tell it; the web widget cannot)."""
        name = " ".join(name.split())
        if not 1 <= len(name) <= MAX_DISPLAY_NAME:
            raise onboarding.ListingRefused([f"name: 1–{MAX_DISPLAY_NAME} characters"])
        async with self._sessions.begin() as db:
            await db.execute(update(Person).where(Person.id == person.id).values(display_name=name))
        if person.expert is not None:
            self._matcher.names[person.expert.id] = name
        return await self.person(person.id, reach=person.reach)

    async def set_time_zone(self, person_id: str, zone: str) -> None:
        async with self._sessions.begin() as db:
            await db.execute(update(Person).where(Person.id == person_id).values(time_zone=zone))

    # ------------------------------------------------------------------ customers

    async def ask(
        self,
        customer: PersonView,
        text: str,
        *,
        community: tuple[Channel, str] | None = None,
        adopt_language: bool = False,
    ) -> AskOutcome | SelfHelp:
        """Read a request, open it and propose experts (or a place in line), or first a self-help
        article that closely matches it.

        With `adopt_language`, a request written in another supported language than the
        person's makes that their language (they have not chosen one explicitly)."""
        scope = await self.communities.scope_of(*community) if community is not None else None
        blocked = await self.blocks.experts_apart_from(customer.id) if customer.in_blocks else frozenset()
        threshold = self.settings.article_threshold
        query = replace(
            self._query(customer, text, scope=scope, blocked=blocked),
            article_threshold=threshold if threshold < 1 else None,
        )
        result = await self._matcher.match(query)
        if result.no_experts is NoExperts.CANNOT_UNDERSTAND:
            return NoMatch("cannot_understand")
        understanding = result.understanding
        written_in = understanding.language.code if understanding.language else None
        adopted = (
            written_in
            if adopt_language and written_in in LANGUAGES and written_in != customer.locale
            else None
        )
        # Experts read the request in their notification: no way around the platform in it.
        shown = contact_flags.hidden(text, adopted or customer.locale)
        request = await self.lifecycle.open_request(
            customer.id,
            shown.text,
            customer_locale=adopted,
            language=written_in,
            category=understanding.category.category if understanding.category else None,
            wanted_at=understanding.when,
            community_id=scope.community_id if scope else None,
        )
        if shown.hits:
            async with self._sessions.begin() as db:
                contact_flags.hide(db, customer.id, "request", request.id, text, adopted or customer.locale)
        article = self.articles.get(result.article) if result.article is not None else None
        if result.article is not None and article is not None:
            reading, words = article.text_for(adopted or customer.locale, written_in)
            await self.articles.offered(request.id, result.article, reading)
            return SelfHelp(request.id, article.id, words.title, words.body, reading, written_in)
        return await self._propose(customer, request.id, result, query, new=True)

    async def still_want_expert(self, customer: PersonView, request_id: str) -> AskOutcome:
        """The article did not solve it: the same request goes on to the experts, as if just asked."""
        request = await self._open_request(customer, request_id)
        if not await self.articles.answer(request_id, ArticleOutcome.STILL_WANT):
            raise NotFound("article offer", request_id)
        scope = await self.communities.scope_of_request(request.community_id)
        blocked = await self.blocks.experts_apart_from(customer.id) if customer.in_blocks else frozenset()
        query = self._query(customer, request.text, language=request.language, scope=scope, blocked=blocked)
        return await self._propose(customer, request_id, await self._matcher.match(query), query, new=True)

    async def solved_by_article(self, customer: PersonView, request_id: str) -> None:
        """The article solved it: recorded, and the request closed."""
        await self._open_request(customer, request_id)
        if not await self.articles.answer(request_id, ArticleOutcome.SOLVED):
            raise NotFound("article offer", request_id)
        await self.lifecycle.cancel(request_id, "solved by a self-help article")

    async def widen(self, customer: PersonView, request_id: str) -> AskOutcome:
        """ "None of these": more experts, English speakers included, without those already shown."""
        request = await self._open_request(customer, request_id)
        query = await self._wider_query(customer, request, await self._shown(request_id), top=3)
        return await self._propose(customer, request_id, await self._matcher.match(query), query)

    async def _propose(
        self,
        customer: PersonView,
        request_id: str,
        result: MatchResult,
        query: MatchQuery,
        *,
        new: bool = False,
    ) -> AskOutcome:
        if result.experts:
            shown = [expert.id for expert in result.experts]
            cards = await self._cards(result, query)
            if result.understanding.when is not None:
                cards = await self._free_then_first(cards, result.understanding.when)
                shown = [card.expert_id for card in cards]  # buttons name positions in this order
            offset = await self._remember_shown(request_id, shown, new=new)
            language = result.understanding.language.code if result.understanding.language else None
            scheduled = result.understanding.when is not None
            return Proposal(request_id, tuple(cards), language, offset, scheduled)
        # Nobody free: is anyone suitable at all, once availability is ignored?
        someone = await self._matcher.match(replace(query, include_offline=True))
        if someone.experts:
            place = await self.line.join(request_id, self._now().timestamp())
            return Queued(request_id, place)
        await self.lifecycle.expire(request_id, "no suitable expert")
        return NoMatch("no_experts", request_id)

    async def _free_then_first(self, cards: list[ExpertCard], wanted: datetime) -> list[ExpertCard]:
        """For "tomorrow at 3pm": experts bookable then come first, each showing that time; the
        others show their nearest free time (hours, days off, bookings and notice all counted)."""
        times = await self.bookings.around([card.expert_id for card in cards], wanted)
        shown = [replace(card, available_now=False, next_free=times.get(card.expert_id)) for card in cards]
        return sorted(shown, key=lambda card: card.next_free != wanted)

    async def choose(self, customer: PersonView, request_id: str, expert_ids: Sequence[str]) -> Round:
        """The customer picked one expert, or "whoever answers first" among those shown."""
        request = await self._open_request(customer, request_id)
        shown = await self._shown(request_id)
        unknown = [expert_id for expert_id in expert_ids if expert_id not in shown]
        if unknown or not expert_ids:
            raise DomainError("pick one of the experts you were shown")
        if request.status is not State.OPEN:
            raise DomainError("your request is already with the experts")
        await self.line.leave(request_id)
        return await self._offer(
            customer, request, [(expert_id, 1.0) for expert_id in expert_ids], first=True
        )

    async def _offer(
        self, customer: PersonView, request: HelpRequest, candidates: list[tuple[str, float]], *, first: bool
    ) -> Round:
        if first:
            await self.lifecycle.offer(request.id, candidates)
        else:
            await self.lifecycle.offer_more(request.id, candidates)
        deadline = self._now() + timedelta(seconds=self.settings.offer_timeout_seconds)
        await self.clock.start(request.id, deadline.timestamp())
        experts = await self._expert_people([expert_id for expert_id, _ in candidates])
        async with self._reads() as db:
            pricing = {
                e.id: e.pricing
                for e in await db.scalars(select(Expert).where(Expert.id.in_([c for c, _ in candidates])))
            }
        notices = tuple(
            OfferNotice(
                request.id, experts[expert_id], request.text, request.language, pricing[expert_id], deadline
            )
            for expert_id, _ in candidates
            if expert_id in experts
        )
        return Round(request.id, customer, notices=notices)

    async def cancel(self, customer: PersonView, request_id: str) -> Cancelled:
        request = await self._open_request(customer, request_id)
        pending = await self._pending_experts(request_id)
        await self.lifecycle.cancel(request.id, "cancelled by the customer")
        await self.line.leave(request_id)
        await self.clock.stop(request_id)
        views = await self._expert_people(pending)
        return Cancelled(request_id, tuple(views.values()))

    async def is_open(self, request_id: str) -> bool:
        """Still waiting for an expert (open, offered, or in line)."""
        async with self._reads() as db:
            status = await db.scalar(select(HelpRequest.status).where(HelpRequest.id == request_id))
        return status in {State.OPEN, State.OFFERED}

    async def sessions_of(self, person: PersonView, limit: int = 10) -> list[SessionLine]:
        expert_id = person.expert.id if person.expert else None
        async with self._reads() as db:
            rows = list(
                await db.execute(
                    select(Session, HelpRequest.text)
                    .join(HelpRequest, HelpRequest.id == Session.request_id)
                    .where(or_(Session.customer_id == person.id, Session.expert_id == expert_id))
                    .order_by(Session.created_at.desc())
                    .limit(limit)
                )
            )
        names = await self._expert_people({s.expert_id for s, _ in rows})
        customers = await self._people({s.customer_id for s, _ in rows})
        lines = []
        for session, text in rows:
            as_customer = session.customer_id == person.id
            other = names.get(session.expert_id) if as_customer else customers.get(session.customer_id)
            link = pay = receipt = None
            if self._rooms is not None and session.state in (State.READY, State.LIVE):
                # So a lost message or a dropped call is never the end: /sessions has the link again.
                links = await self._rooms.links_for(session.id)
                link = links.customer if as_customer else links.expert
            if as_customer and session.state is State.AWAITING_PAYMENT:
                pay = (await self.cashier.hand_off(session.id)).checkout_url
            if (
                session.state in (State.SETTLED, State.REFUNDED)
                and session.pricing.mode is not PricingMode.FREE
            ):
                receipt = self.receipts.url(
                    session.id, "customer" if as_customer else "expert", person.locale
                )
            lines.append(
                SessionLine(
                    session.id,
                    session.state,
                    "customer" if as_customer else "expert",
                    (other.name if other else "") or "?",
                    text,
                    session.created_at,
                    session.pricing,
                    link,
                    pay,
                    receipt,
                )
            )
        return lines

    # ------------------------------------------------------------------ experts answering

    async def accept(self, expert: PersonView, request_id: str) -> Accepted:
        """First Accept wins (AlreadyTaken for the others); the session is priced and confirmed."""
        if expert.expert is None:
            raise DomainError("only experts can accept requests")
        commission = await self._commission(request_id)
        session = await self._desk.accept(request_id, expert.expert.id, commission_percent=commission)
        await self.clock.stop(request_id)
        await self.line.leave(request_id)
        await self._matcher.refresh([expert.expert.id])  # one more accepted offer: responsiveness
        try:
            hand_off = await self.cashier.hand_off(session.id)
        except PaymentRefused as exc:
            await self.lifecycle.cancel(request_id, reason=f"payment: {exc}")
            hand_off = HandOff(State.CANCELLED, refused=exc.code)
        state = hand_off.state
        async with self._reads() as db:
            request = await db.get(HelpRequest, request_id)
            assert request is not None
            taken = list(
                await db.scalars(
                    select(Offer.expert_id).where(
                        Offer.request_id == request_id, Offer.status == OfferStatus.TAKEN
                    )
                )
            )
        customer = await self.person(request.customer_id)
        others = await self._expert_people(taken)
        q = session_quote(session, self.cashier.quote_terms())
        # Ready (free, or held/invoiced): both get their own link to the room now; otherwise once
        # the payment arrives (a notice).
        room = await self._rooms.links_for(session.id) if self._rooms and state is State.READY else None
        return Accepted(
            request_id,
            session.id,
            state,
            customer,
            expert,
            request.text,
            q,
            tuple(others.values()),
            room,
            hand_off.checkout_url,
            hand_off.sponsor,
            hand_off.refused,
        )

    async def rate(self, person: PersonView, session_id: str, stars: int) -> Rated:
        """Rate a finished session; once both have, the expert's new rating reaches the matcher."""
        rated = await self.reviews.rate(session_id, person.id, stars)
        if rated.published:
            async with self._reads() as db:
                expert_id = await db.scalar(select(Session.expert_id).where(Session.id == session_id))
            if expert_id is not None:
                await self._matcher.refresh([expert_id])
        return rated

    async def publish_reviews(self) -> None:
        """Reviews out of their blind period, and the ratings they change, in the matcher too."""
        subjects = await self.reviews.publish_due()
        if subjects:
            async with self._reads() as db:
                experts = list(await db.scalars(select(Expert.id).where(Expert.person_id.in_(subjects))))
            if experts:
                await self._matcher.refresh(experts)

    async def attendance_changed(self, expert_ids: list[str]) -> None:
        """After `reliability.record_attendance` has committed: the new counts reach the matcher."""
        if expert_ids:
            await self._matcher.refresh(expert_ids)

    async def payment_notices(self) -> list[PaymentNotice]:
        """Payment news nobody has been told yet, each taken by one process only."""
        out = []
        for notice in await self.cashier.take_notices():
            async with self._reads() as db:
                session = await db.get(Session, notice.session_id)
            if session is None:
                continue
            customer = await self.person(session.customer_id)
            expert_person = await self._expert_people([session.expert_id])
            expert = expert_person.get(session.expert_id)
            if expert is None:
                continue
            detail = notice.detail or {}
            room = receipt = statement = payout_link = url = calendars = None
            if notice.kind == "paid" and self._rooms is not None:
                room = await self._rooms.links_for(session.id)
            if notice.kind == "reminder":
                if detail.get("last") and self._rooms is not None and session.state is State.READY:
                    room = await self._rooms.links_for(session.id)
                calendars = (
                    self.calendar.url(session.id, "customer", customer.locale),
                    self.calendar.url(session.id, "expert", expert.locale),
                )
            if notice.kind == "booking_pay":
                url = detail.get("url")
            if notice.kind == "pay_again" and session.state is State.CLAIMED:
                url = (await self.cashier.hand_off(session.id)).checkout_url
            if notice.kind in ("settled", "refund"):
                receipt = self.receipts.url(session.id, "customer", customer.locale)
                statement = self.receipts.url(session.id, "expert", expert.locale)
                if notice.kind == "settled" and detail.get("charged"):
                    payout_link = await self.cashier.payout_link(session.expert_id)
            out.append(
                PaymentNotice(
                    notice.kind,
                    session.id,
                    customer,
                    expert,
                    session.pricing.currency,
                    int(detail.get("charged") or detail.get("amount") or 0),
                    int(detail.get("fee") or 0),
                    room,
                    receipt,
                    statement,
                    payout_link,
                    detail.get("note"),
                    _aware(session.scheduled_start),
                    detail.get("minutes"),
                    bool(detail.get("last")),
                    detail.get("outcome"),
                    url,
                    calendars,
                )
            )
        return out

    async def session_parties(self, session_id: str) -> tuple[PersonView, PersonView]:
        """(customer, expert) of a session."""
        async with self._reads() as db:
            session = await db.get(Session, session_id)
        if session is None:
            raise NotFound("session", session_id)
        experts = await self._expert_people([session.expert_id])
        if session.expert_id not in experts:
            raise NotFound("expert", session.expert_id)
        return await self.person(session.customer_id), experts[session.expert_id]

    async def decline(self, expert: PersonView, request_id: str) -> Round | None:
        """Record the Decline; when nobody of the round is left, the next round starts now."""
        if expert.expert is None:
            raise DomainError("only experts can decline requests")
        if not await self._desk.decline(request_id, expert.expert.id, self._clock()):
            return None
        await self._matcher.refresh([expert.expert.id])  # the decline counts in responsiveness
        if await self._pending_experts(request_id):
            return None
        if not await self.clock.take(request_id):
            return None  # the timeout sweep got there first
        return await self._next_round(request_id)

    async def expire_due(self) -> list[Round]:
        """Requests whose experts did not answer in time move on to the next candidates."""
        rounds = []
        for request_id in await self.clock.due(self._now().timestamp()):
            round_ = await self._next_round(request_id)
            if round_ is not None:
                rounds.append(round_)
        return rounds

    async def _next_round(self, request_id: str) -> Round | None:
        lapsed_ids = await self.lifecycle.time_out_offers(request_id)
        if lapsed_ids:
            await self._matcher.refresh(lapsed_ids)  # unanswered offers count in responsiveness
        async with self._reads() as db:
            request = await db.get(HelpRequest, request_id)
            offered = set(await db.scalars(select(Offer.expert_id).where(Offer.request_id == request_id)))
        if request is None or request.status is not State.OFFERED:
            return None
        customer = await self.person(request.customer_id)
        lapsed = tuple((await self._expert_people(lapsed_ids)).values())
        query = await self._wider_query(customer, request, frozenset(offered))
        result = await self._matcher.match(query)
        if result.experts:
            candidates = [(expert.id, expert.score) for expert in result.experts]
            round_ = await self._offer(customer, request, candidates, first=False)
            return Round(request_id, customer, notices=round_.notices, lapsed=lapsed)
        if (await self._matcher.match(replace(query, include_offline=True))).experts:
            place = await self.line.join(request_id, self._now().timestamp())
            return Round(request_id, customer, lapsed=lapsed, queued_place=place)
        await self.lifecycle.expire(request_id, "nobody answered")
        return Round(request_id, customer, lapsed=lapsed, exhausted=True)

    async def serve_line(self, limit: int = 20) -> tuple[list[Round], list[tuple[PersonView, str, int]]]:
        """Offer waiting requests to experts who became free; then who moved up in line."""
        rounds = []
        reserved: set[str] = set()  # experts just offered a waiting request: one each, in line order
        for request_id in await self.line.waiting(limit):
            async with self._reads() as db:
                request = await db.get(HelpRequest, request_id)
            if request is None or request.status not in {State.OPEN, State.OFFERED}:
                await self.line.leave(request_id)
                continue
            customer = await self.person(request.customer_id)
            async with self._reads() as db:
                offered = frozenset(
                    await db.scalars(select(Offer.expert_id).where(Offer.request_id == request_id))
                )
            query = await self._wider_query(customer, request, offered | reserved)
            result = await self._matcher.match(query)
            if not result.experts:
                continue
            reserved.update(expert.id for expert in result.experts)
            if not await self.line.leave(request_id):
                continue  # another process is serving it
            candidates = [(expert.id, expert.score) for expert in result.experts]
            await self._remember_shown(request_id, [c for c, _ in candidates])
            rounds.append(
                await self._offer(customer, request, candidates, first=request.status is State.OPEN)
            )
        moved = []
        for request_id, place in await self.line.moved():
            async with self._reads() as db:
                customer_id = await db.scalar(
                    select(HelpRequest.customer_id).where(HelpRequest.id == request_id)
                )
            if customer_id is not None:
                moved.append((await self.person(customer_id), request_id, place))
        return rounds, moved

    # ------------------------------------------------------------------ experts' own listing

    async def become_expert(self, person: PersonView, code: str) -> PersonView:
        now = self._clock()
        await onboarding.become_expert(
            self._sessions,
            person.id,
            code,
            today=now.date(),
            now=now,
            currency=self.settings.default_currency,
        )
        return await self.person(person.id, reach=person.reach)

    async def edit_listing(self, person: PersonView, changes: dict[str, Any]) -> PersonView:
        expert = _expert_of(person)
        await onboarding.update_listing(self._sessions, expert.id, changes)
        if expert.published:
            await self._matcher.refresh([expert.id])
        return await self.person(person.id, reach=person.reach)

    async def publish(self, person: PersonView) -> PersonView:
        expert = _expert_of(person)
        if not person.name:
            raise onboarding.ListingRefused(["name: still missing"])
        await onboarding.publish_listing(self._sessions, expert.id)
        await self._matcher.refresh([expert.id])
        return await self.person(person.id, reach=person.reach)

    async def set_online(self, person: PersonView, online: bool) -> PersonView:
        expert = _expert_of(person)
        if online and not expert.published:
            raise onboarding.ListingRefused(
                [f"{field}: still missing" for field in expert.missing] or ["publish"]
            )
        async with self._sessions.begin() as db:
            await db.execute(update(Expert).where(Expert.id == expert.id).values(online=online))
        await self._matcher.refresh([expert.id])
        return await self.person(person.id, reach=person.reach)

    # ------------------------------------------------------------------ identities and communities

    async def link_code(self, person: PersonView) -> str:
        return await self._links.new_code(person.id)

    async def link(self, channel: Channel, user_id: str, code: str) -> PersonView:
        """Bind this channel identity to the person who created `code` (one use, 10 minutes)."""
        target_id = await self._links.link(channel, user_id, code)
        reach = Reach(channel, user_id)
        await remember(self._redis, target_id, reach)
        return await self.person(target_id, reach=reach)

    async def link_community(self, channel: Channel, external_id: str, setup_code: str) -> str:
        return await self.communities.link(channel, external_id, setup_code)

    # ------------------------------------------------------------------ businesses

    async def remove_from_roster(self, admin: PersonView, business_id: str, expert_id: str) -> None:
        await self.businesses.remove_from_roster(admin.id, business_id, expert_id)
        await self._matcher.refresh([expert_id])  # its requests no longer reach them first

    async def budget_alerts(self) -> list[tuple[BudgetAlert, list[PersonView]]]:
        """Budgets that crossed 80 % or ran out, with the admins to tell (each alert once)."""
        out = []
        for alert in await self.sponsorship.due_alerts():
            admins = await self._people(await self.businesses.admins_of(alert.budget.business_id))
            out.append((alert, list(admins.values())))
        return out

    async def reports_due(self) -> list[tuple[ReportDue, list[PersonView]]]:
        """Last month's reports not sent yet, with their admins (from the first of the month)."""
        out = []
        for due in await self.business_reports.due():
            admins = await self._people(due.admin_ids)
            out.append((due, list(admins.values())))
        return out

    async def _commission(self, request_id: str) -> Decimal:
        async with self._reads() as db:
            category = await db.scalar(select(HelpRequest.category).where(HelpRequest.id == request_id))
        return commission_percent(
            self.settings.commission_percent,
            category=category,
            by_category=self.settings.category_commissions,
            business=await self.communities.commission_override(request_id),
        )

    # ------------------------------------------------------------------ helpers

    def _query(
        self,
        customer: PersonView,
        text: str,
        *,
        language: str | None = None,
        scope: Scope | None = None,
        blocked: frozenset[str] = frozenset(),
        accept_english: bool = False,
        top: int = 3,
    ) -> MatchQuery:
        own = frozenset({customer.expert.id}) if customer.expert else frozenset()
        return MatchQuery(
            text=text,
            locale=customer.locale,
            timezone=customer.time_zone,
            currency=self.settings.default_currency,
            now=self._now(),
            language=language,
            top=top,
            accept_english=accept_english,
            business_id=scope.business_id if scope else None,
            business_only=scope.roster_only if scope else False,
            blocked=blocked | own,
        )

    async def _wider_query(
        self, customer: PersonView, request: HelpRequest, blocked: frozenset[str], *, top: int | None = None
    ) -> MatchQuery:
        """A request asked again after its first answer: English speakers too, `blocked` left out."""
        return self._query(
            customer,
            request.text,
            language=request.language,
            scope=await self.communities.scope_of_request(request.community_id),
            blocked=blocked | await self.blocks.experts_apart_from(customer.id),
            accept_english=True,
            top=top or self.settings.offer_batch,
        )

    async def _open_request(self, customer: PersonView, request_id: str) -> HelpRequest:
        async with self._reads() as db:
            request = await db.get(HelpRequest, request_id)
        if request is None or request.customer_id != customer.id:
            raise NotFound("request", request_id)
        if request.status not in {State.OPEN, State.OFFERED}:
            raise DomainError("that request is no longer open")
        return request

    async def _pending_experts(self, request_id: str) -> list[str]:
        async with self._reads() as db:
            return list(
                await db.scalars(
                    select(Offer.expert_id).where(
                        Offer.request_id == request_id, Offer.status == OfferStatus.PENDING
                    )
                )
            )

    async def _remember_shown(self, request_id: str, expert_ids: list[str], *, new: bool = False) -> int:
        """Append to the request's shown experts, in ranking order; the index of the first."""
        key = entity_key("request", request_id, "shown")
        known = [] if new else await self.shown_in_order(request_id)
        fresh = [expert_id for expert_id in expert_ids if expert_id not in known]
        # A new request's list is read by nothing before its cards are out: with the turn's.
        writes = turn_writes.current() if new else None
        if fresh and writes is not None:
            writes.pipe.rpush(key, *fresh)
            writes.pipe.expire(key, SHOWN_TTL_SECONDS)
        elif fresh:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(key, *fresh)
                pipe.expire(key, SHOWN_TTL_SECONDS)
                await pipe.execute()
        return len(known)

    async def shown_in_order(self, request_id: str) -> list[str]:
        """Every expert shown for this request, in the order the cards were numbered."""
        members = await self._redis.lrange(entity_key("request", request_id, "shown"), 0, -1)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def _shown(self, request_id: str) -> frozenset[str]:
        return frozenset(await self.shown_in_order(request_id))

    async def _cards(self, result: MatchResult, query: MatchQuery) -> list[ExpertCard]:
        """Cards from what the matcher holds in memory: no database round trip per request."""
        now = self._now()
        wanted = result.understanding.when or now
        cards = []
        for ranked in result.experts:
            listing = self._matcher.listing(ranked.id)
            name = self._matcher.names.get(ranked.id)
            if listing is None or name is None:
                continue
            available = listing.online and not listing.busy and result.understanding.when is None
            count = listing.rating_count
            cards.append(
                ExpertCard(
                    expert_id=listing.id,
                    name=name,
                    headline=listing.headline,
                    languages=tuple(listing.languages),
                    # The Bayesian average the ranking uses, so one 5-star review shows as such.
                    rating=_bayesian(count, listing.rating_total) if count else None,
                    rating_count=count,
                    pricing=Pricing(
                        PricingMode(listing.pricing_mode), listing.price_amount, listing.currency
                    ),
                    available_now=available,
                    next_free=None if available else next_opening(listing.hours, listing.timezone, wanted),
                    reasons=_top_reasons(ranked.reasons),
                    categories=tuple(listing.categories),
                )
            )
        return cards


# Who writes from a channel identity: every message asks, so plain SQL rather than the ORM.
_IDENTITY = (
    select(
        *Person.__table__.columns,
        Expert.id.label("listing"),
        # Whether the person blocked or was blocked by anyone: rarely, so most requests need
        # no lookup of their own for experts to leave out (two indexed probes here).
        exists().where(or_(Block.person_id == Person.id, Block.blocked_id == Person.id)).label("in_blocks"),
    )
    .join(ChannelIdentity, ChannelIdentity.person_id == Person.id)
    .outerjoin(Expert, Expert.person_id == Person.id)
    .where(
        ChannelIdentity.channel == bindparam("channel"),
        ChannelIdentity.external_id == bindparam("external_id"),
    )
)
_PERSON_COLUMNS = tuple(column.key for column in Person.__table__.columns)


def _find_identity(
    db: Connection, channel: Channel, user_id: str
) -> tuple[Person, Expert | None, bool] | None:
    row = db.execute(_IDENTITY, {"channel": channel, "external_id": user_id}).first()
    if row is None:
        return None
    values = row._mapping
    person = Person(**{key: values[key] for key in _PERSON_COLUMNS})
    in_blocks = bool(values["in_blocks"])
    if values["listing"] is None:
        return person, None, in_blocks
    with OrmSession(db) as orm:  # experts are few: their listing through the ORM
        return person, orm.get(Expert, values["listing"]), in_blocks


_PRIORS = Priors()


def _bayesian(count: int, total: int) -> float:
    return (_PRIORS.rating_weight * _PRIORS.rating_mean + total) / (_PRIORS.rating_weight + count)


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _top_reasons(reasons: dict[str, float], keep: int = 3) -> tuple[str, ...]:
    strong = [name for name in _REASONS if reasons.get(name, 0.0) >= 0.6]
    return tuple(sorted(strong, key=lambda name: -reasons[name])[:keep])


def _expert_of(person: PersonView) -> ExpertView:
    if person.expert is None:
        raise DomainError("you are not an expert yet: use /expert with an invitation code")
    return person.expert


def _expert_view(expert: Expert) -> ExpertView:
    return ExpertView(
        id=expert.id,
        published=expert.published,
        online=expert.online,
        headline=expert.headline,
        bio=expert.bio,
        categories=tuple(expert.categories),
        languages=tuple(expert.languages),
        pricing=expert.pricing,
        time_zone=expert.time_zone,
        hours=dict(expert.hours_json),
        missing=tuple(onboarding.missing_for_publication(expert)),
        business_id=expert.business_id,
    )
