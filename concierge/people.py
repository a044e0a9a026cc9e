"""Who is writing: channel identities resolved to people, and the age gate.

Customers must be 13 or older, experts 18 or older, and sessions with a customer under 18 are
recorded. Someone under 13 is refused; what is kept is only what refusing them again needs
(their channel identity and the day they turn 13), not their name or birth date. A stated birth
date cannot be changed afterwards to pass a gate: a change that would move someone across one
(under 13 / 13–17 / 18+, either way) waits as a `BirthDateReview` for an operator, and one
within the same gate (a typo) applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, NotFound
from concierge.model import BirthDateReview, Channel, ChannelIdentity, Person, ReviewStatus, utcnow

MIN_CUSTOMER_AGE = 13
ADULT_AGE = 18
_OLDEST = 120
_MAX_EXTERNAL_ID = 128
_MAX_NAME = 200


class AgeGate(StrEnum):
    UNKNOWN = "unknown"  # not asked yet
    REFUSED = "refused"  # under 13
    MINOR = "minor"  # 13–17: may ask for help, every session is recorded
    ADULT = "adult"  # 18+: may also become an expert


def birthday(born: date, age: int) -> date:
    """The day someone born on `born` turns `age` (29 February → 1 March in common years)."""
    try:
        return born.replace(year=born.year + age)
    except ValueError:
        return date(born.year + age, 3, 1)


def age_gate(person: Person, today: date) -> AgeGate:
    if person.refused_until is not None and today < person.refused_until:
        return AgeGate.REFUSED
    age = person.age_on(today)
    if age is None:
        return AgeGate.UNKNOWN
    if age < MIN_CUSTOMER_AGE:
        return AgeGate.REFUSED
    return AgeGate.MINOR if age < ADULT_AGE else AgeGate.ADULT


async def identify(
    sessions: async_sessionmaker[AsyncSession],
    channel: Channel,
    external_id: str,
    *,
    display_name: str,
    locale: str = "en",
    time_zone: str = "UTC",
) -> Person:
    """The person behind a channel identity, created on first contact."""
    external_id = external_id.strip()
    if not external_id or len(external_id) > _MAX_EXTERNAL_ID:
        raise DomainError(f"a {channel.value} identity must be 1–{_MAX_EXTERNAL_ID} characters")
    existing = await _find(sessions, channel, external_id)
    if existing is not None:
        return existing
    person = Person(
        display_name=" ".join(display_name.split())[:_MAX_NAME], locale=locale, time_zone=time_zone
    )
    try:
        async with sessions.begin() as db:
            db.add(person)
            db.add(ChannelIdentity(channel=channel, external_id=external_id, person_id=person.id))
    except IntegrityError:
        # Two first messages at once: the other one created the identity; use its person.
        found = await _find(sessions, channel, external_id)
        if found is None:
            raise
        return found
    return person


async def _find(
    sessions: async_sessionmaker[AsyncSession], channel: Channel, external_id: str
) -> Person | None:
    async with sessions() as db:
        return await db.scalar(
            select(Person)
            .join(ChannelIdentity, ChannelIdentity.person_id == Person.id)
            .where(ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id)
        )


async def state_birth_date(
    sessions: async_sessionmaker[AsyncSession], person_id: str, born: date, today: date
) -> AgeGate:
    """Record what a person says their birth date is, and what that lets them do."""
    if born > today or born < birthday(today, -_OLDEST):
        raise DomainError("that is not a plausible birth date")
    async with sessions.begin() as db:
        person = await db.get(Person, person_id, with_for_update=True)
        if person is None:
            raise NotFound("person", person_id)
        gate = age_gate(person, today)
        if gate is AgeGate.REFUSED:
            return gate  # restating an older age does not lift a refusal
        if person.birth_date is not None and person.birth_date != born:
            raise DomainError("a stated birth date can only be changed by an operator")
        return _apply(person, born, today)


def _apply(person: Person, born: date, today: date) -> AgeGate:
    if birthday(born, MIN_CUSTOMER_AGE) > today:
        person.refused_until = birthday(born, MIN_CUSTOMER_AGE)
        person.birth_date = None
        person.display_name = ""
        return AgeGate.REFUSED
    person.birth_date = born
    person.refused_until = None
    return age_gate(person, today)


def _gate_of(born: date, today: date) -> AgeGate:
    if birthday(born, MIN_CUSTOMER_AGE) > today:
        return AgeGate.REFUSED
    return AgeGate.MINOR if birthday(born, ADULT_AGE) > today else AgeGate.ADULT


@dataclass(frozen=True, slots=True)
class BirthDateChange:
    gate: AgeGate  # in force after the change (unchanged while a review is pending)
    review_id: str | None = None  # set when an operator must decide


async def change_birth_date(
    sessions: async_sessionmaker[AsyncSession], person_id: str, born: date, today: date
) -> BirthDateChange:
    """A correction of the stated birth date: applied within the same gate, otherwise left for
    an operator (one pending review per person: a newer correction replaces its date)."""
    if born > today or born < birthday(today, -_OLDEST):
        raise DomainError("that is not a plausible birth date")
    async with sessions.begin() as db:
        person = await db.get(Person, person_id, with_for_update=True)
        if person is None:
            raise NotFound("person", person_id)
        gate = age_gate(person, today)
        if gate is AgeGate.UNKNOWN:
            return BirthDateChange(_apply(person, born, today))
        if gate is _gate_of(born, today):
            if gate is not AgeGate.REFUSED:  # a refused child's corrected date is not kept either
                person.birth_date = born
            return BirthDateChange(gate)
        pending = await db.scalar(
            select(BirthDateReview).where(
                BirthDateReview.person_id == person_id, BirthDateReview.status == ReviewStatus.PENDING
            )
        )
        if pending is None:
            pending = BirthDateReview(person_id=person_id, stated=born, previous=person.birth_date)
            db.add(pending)
            await db.flush()
        else:
            pending.stated = born
        return BirthDateChange(gate, pending.id)


@dataclass(frozen=True, slots=True)
class ReviewLine:
    id: str
    person_id: str
    name: str
    stated: date
    previous: date | None
    status: ReviewStatus
    created_at: datetime
    note: str | None


async def birth_date_reviews(
    sessions: async_sessionmaker[AsyncSession], status: ReviewStatus | None = ReviewStatus.PENDING
) -> list[ReviewLine]:
    query = (
        select(BirthDateReview, Person.display_name)
        .join(Person, Person.id == BirthDateReview.person_id)
        .order_by(BirthDateReview.created_at, BirthDateReview.id)
    )
    if status is not None:
        query = query.where(BirthDateReview.status == status)
    async with sessions() as db:
        rows = list(await db.execute(query))
    return [
        ReviewLine(r.id, r.person_id, name, r.stated, r.previous, r.status, r.created_at, r.note)
        for r, name in rows
    ]


async def decide_birth_date(
    sessions: async_sessionmaker[AsyncSession], review_id: str, *, approve: bool, note: str, today: date
) -> AgeGate:
    """An operator's decision; approving applies the stated date. The gate in force after it."""
    async with sessions.begin() as db:
        review = await db.get(BirthDateReview, review_id, with_for_update=True)
        if review is None:
            raise NotFound("birth date review", review_id)
        if review.status is not ReviewStatus.PENDING:
            raise DomainError(f"review {review_id} is {review.status.value} already")
        person = await db.get(Person, review.person_id, with_for_update=True)
        assert person is not None  # the review goes with the person
        review.status = ReviewStatus.APPROVED if approve else ReviewStatus.REFUSED
        review.note = note.strip()[:500] or None
        review.decided_at = utcnow().replace(tzinfo=UTC)
        if approve:
            return _apply(person, review.stated, today)
        return age_gate(person, today)
