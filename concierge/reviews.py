"""Ratings and reviews after a session, double-blind.

Both parties rate 1–5 and may add a few words. Neither sees the other's review before giving
their own: a session's reviews are published together once both have rated, or each on its own
after `BLIND_DAYS`. Only published, visible reviews count in an expert's rating (the count and
total the ranking turns into a Bayesian average). The subject may answer a review once;
operators may hide an abusive one, which keeps it for the audit but takes it out of the rating.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.contact_flags import hide
from concierge.errors import NotFound, Refused
from concierge.lifecycle import FINISHED_STATES
from concierge.model import Expert, Person, Review, Session, utcnow

BLIND_DAYS = 7
RATE_WITHIN_DAYS = 30
MAX_REVIEW_CHARS = 1000


class ReviewRefused(Refused):
    """A rating, review or reply that cannot be taken; `reason` names a message for people."""


@dataclass(frozen=True, slots=True)
class Rated:
    review_id: str
    published: bool  # the other party had rated already: both are public now


@dataclass(frozen=True, slots=True)
class ReviewLine:
    review_id: str
    author: str
    stars: int
    text: str | None
    published_at: datetime
    reply: str | None


class Reviews:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    def _now(self) -> datetime:
        return self._clock().replace(tzinfo=UTC)

    async def rate(self, session_id: str, author_id: str, stars: int) -> Rated:
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            raise ReviewRefused("stars")
        now = self._now()
        try:
            async with self._sessions.begin() as db:
                session = await db.get(Session, session_id)
                if session is None:
                    raise NotFound("session", session_id)
                subject_id = await _other_party(db, session, author_id)
                if session.state not in FINISHED_STATES or session.ended_at is None:
                    raise ReviewRefused("not_finished")
                if now - session.ended_at.replace(tzinfo=UTC) > timedelta(days=RATE_WITHIN_DAYS):
                    raise ReviewRefused("too_late")
                review = Review(
                    session_id=session_id,
                    author_id=author_id,
                    subject_id=subject_id,
                    stars=stars,
                    created_at=now,
                )
                db.add(review)
                await db.flush()
                other = await db.scalar(
                    select(Review).where(Review.session_id == session_id, Review.author_id == subject_id)
                )
                published = other is not None
                if published:
                    for each in (review, other):
                        assert each is not None
                        await _publish(db, each, now)
        except IntegrityError:
            raise ReviewRefused("already_rated") from None
        return Rated(review.id, published)

    async def add_text(self, review_id: str, author_id: str, text: str) -> None:
        text = text.strip()
        if not text or len(text) > MAX_REVIEW_CHARS:
            raise ReviewRefused("text_length")
        async with self._sessions.begin() as db:
            text = hide(db, author_id, "review", review_id, text, await _locale(db, author_id))
            result = await db.execute(
                update(Review)
                .where(Review.id == review_id, Review.author_id == author_id, Review.text.is_(None))
                .values(text=text)
                .execution_options(synchronize_session=False)
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ReviewRefused("already_written")

    async def reply(self, review_id: str, subject_id: str, text: str) -> None:
        text = text.strip()
        if not text or len(text) > MAX_REVIEW_CHARS:
            raise ReviewRefused("text_length")
        async with self._sessions.begin() as db:
            text = hide(db, subject_id, "review.reply", review_id, text, await _locale(db, subject_id))
            result = await db.execute(
                update(Review)
                .where(
                    Review.id == review_id,
                    Review.subject_id == subject_id,
                    Review.published_at.is_not(None),
                    Review.reply_text.is_(None),
                )
                .values(reply_text=text, reply_at=self._now())
                .execution_options(synchronize_session=False)
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ReviewRefused("no_reply")

    async def publish_due(self) -> list[str]:
        """Reviews whose other half never came: public after the blind period; their subjects."""
        now = self._now()
        async with self._sessions.begin() as db:
            due = list(
                await db.scalars(
                    select(Review).where(
                        Review.published_at.is_(None), Review.created_at <= now - timedelta(days=BLIND_DAYS)
                    )
                )
            )
            for review in due:
                await _publish(db, review, now)
        return sorted({review.subject_id for review in due})

    async def hide(self, review_id: str, reason: str) -> None:
        async with self._sessions.begin() as db:
            review = await db.get(Review, review_id)
            if review is None:
                raise NotFound("review", review_id)
            if review.hidden:
                return
            review.hidden = True
            review.hidden_reason = reason[:500]
            if review.published_at is not None:
                await _count(db, review, -1)

    async def about(self, subject_id: str, limit: int = 10) -> list[ReviewLine]:
        """Published, visible reviews of a person, newest first."""
        async with self._sessions() as db:
            rows = list(
                await db.execute(
                    select(Review, Person.display_name)
                    .join(Person, Person.id == Review.author_id)
                    .where(
                        Review.subject_id == subject_id,
                        Review.published_at.is_not(None),
                        Review.hidden.is_(False),
                    )
                    .order_by(Review.published_at.desc(), Review.id)
                    .limit(limit)
                )
            )
        return [
            ReviewLine(r.id, name, r.stars, r.text, r.published_at, r.reply_text)  # type: ignore[arg-type]
            for r, name in rows
        ]


async def _locale(db: AsyncSession, person_id: str) -> str:
    return await db.scalar(select(Person.locale).where(Person.id == person_id)) or "en"


async def _other_party(db: AsyncSession, session: Session, author_id: str) -> str:
    expert_person = await db.scalar(select(Expert.person_id).where(Expert.id == session.expert_id))
    if author_id == session.customer_id and expert_person is not None:
        return expert_person
    if author_id == expert_person:
        return session.customer_id
    raise ReviewRefused("not_yours")


async def _publish(db: AsyncSession, review: Review, now: datetime) -> None:
    if review.published_at is not None:
        return
    review.published_at = now
    if not review.hidden:
        await _count(db, review, +1)


async def _count(db: AsyncSession, review: Review, sign: int) -> None:
    # Only customers' ratings of experts make an expert's rating.
    await db.execute(
        update(Expert)
        .where(Expert.person_id == review.subject_id)
        .values(
            rating_count=Expert.rating_count + sign,
            rating_total=Expert.rating_total + sign * review.stars,
        )
        .execution_options(synchronize_session=False)
    )
