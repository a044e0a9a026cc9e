"""Channel identities resolve to one person; the age gate refuses under-13s and keeps little."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError
from concierge.model import Channel, ChannelIdentity, Person
from concierge.people import AgeGate, age_gate, birthday, identify, state_birth_date

TODAY = date(2026, 11, 24)


async def test_first_contact_creates_a_person_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    first = await identify(sessions, Channel.TELEGRAM, "42", display_name="  Ana   María ", locale="es")
    again = await identify(sessions, Channel.TELEGRAM, "42", display_name="Someone else")
    other_channel = await identify(sessions, Channel.DISCORD, "42", display_name="Ana")
    assert first.id == again.id
    assert first.display_name == "Ana María"
    assert first.locale == "es"
    assert other_channel.id != first.id
    with pytest.raises(DomainError, match="1–128"):
        await identify(sessions, Channel.WEB, "  ", display_name="x")


async def test_simultaneous_first_messages_make_one_person(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    people = await asyncio.gather(
        *(identify(sessions, Channel.WEB, "visitor-7", display_name=f"tab {i}") for i in range(5))
    )
    assert len({person.id for person in people}) == 1
    async with sessions() as db:
        assert await db.scalar(select(func.count()).select_from(ChannelIdentity)) == 1
        assert await db.scalar(select(func.count()).select_from(Person)) == 1


@pytest.mark.parametrize(
    ("born", "gate"),
    [
        (date(1990, 5, 1), AgeGate.ADULT),
        (date(2008, 11, 24), AgeGate.ADULT),  # 18 today
        (date(2008, 11, 25), AgeGate.MINOR),  # 18 tomorrow
        (date(2013, 11, 24), AgeGate.MINOR),  # 13 today
    ],
)
async def test_adults_and_minors(
    sessions: async_sessionmaker[AsyncSession], born: date, gate: AgeGate
) -> None:
    person = await identify(sessions, Channel.WEB, "v", display_name="Kim")
    assert await state_birth_date(sessions, person.id, born, TODAY) is gate
    async with sessions() as db:
        stored = await db.get(Person, person.id)
        assert stored is not None
        assert stored.birth_date == born
        assert age_gate(stored, TODAY) is gate


async def test_under_13_is_refused_and_only_the_refusal_is_kept(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    person = await identify(sessions, Channel.TELEGRAM, "kid", display_name="Little Tom")
    assert await state_birth_date(sessions, person.id, date(2013, 11, 25), TODAY) is AgeGate.REFUSED
    async with sessions() as db:
        stored = await db.get(Person, person.id)
        assert stored is not None
        assert stored.birth_date is None
        assert stored.display_name == ""
        assert stored.refused_until == date(2026, 11, 25)
    # Saying an older age afterwards does not get past the gate…
    assert await state_birth_date(sessions, person.id, date(1990, 1, 1), TODAY) is AgeGate.REFUSED
    async with sessions() as db:
        stored = await db.get(Person, person.id)
        assert stored is not None
        assert stored.birth_date is None
        # …until the day they really turn 13.
        assert age_gate(stored, date(2026, 11, 25)) is AgeGate.UNKNOWN


async def test_a_stated_birth_date_is_not_changed_to_pass_a_gate(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    person = await identify(sessions, Channel.DISCORD, "teen", display_name="Sam")
    assert await state_birth_date(sessions, person.id, date(2010, 3, 3), TODAY) is AgeGate.MINOR
    assert await state_birth_date(sessions, person.id, date(2010, 3, 3), TODAY) is AgeGate.MINOR
    with pytest.raises(DomainError, match="only be changed by an operator"):
        await state_birth_date(sessions, person.id, date(2000, 3, 3), TODAY)
    for implausible in (date(2027, 1, 1), date(1890, 1, 1)):
        with pytest.raises(DomainError, match="plausible"):
            await state_birth_date(sessions, person.id, implausible, TODAY)


def test_leap_day_birthdays() -> None:
    born = date(2012, 2, 29)
    assert birthday(born, 13) == date(2025, 3, 1)
    assert birthday(born, 16) == date(2028, 2, 29)
    person = Person(display_name="Lea", birth_date=born)
    assert age_gate(person, date(2025, 2, 28)) is AgeGate.REFUSED
    assert age_gate(person, date(2025, 3, 1)) is AgeGate.MINOR
