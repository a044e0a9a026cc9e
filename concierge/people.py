"""Who is writing: channel identities resolved to people, and the age gate.

Customers must be 13 or older, experts 18 or older, and sessions with a customer under 18 are
recorded. Someone under 13 is refused; what is kept is only what refusing them again needs
(their channel identity and the day they turn 13), not their name or birth date. A stated birth
date cannot be changed afterwards to pass a gate: that takes an operator.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, NotFound
from concierge.model import Channel, ChannelIdentity, Person

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
        if birthday(born, MIN_CUSTOMER_AGE) > today:
            person.refused_until = birthday(born, MIN_CUSTOMER_AGE)
            person.birth_date = None
            person.display_name = ""
            return AgeGate.REFUSED
        person.birth_date = born
        return age_gate(person, today)
