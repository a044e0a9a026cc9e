"""Blocking: either person of a pair blocks the other, and the pair is never matched again."""

from __future__ import annotations

from sqlalchemy import Connection, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.database import read
from concierge.errors import DomainError, NotFound
from concierge.model import Block, Expert, Person, Session


class Blocks:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def block_other_party(self, person_id: str, session_id: str) -> str:
        """Block the other person of a session one took part in; their id."""
        async with self._sessions() as db:
            session = await db.get(Session, session_id)
            if session is None:
                raise NotFound("session", session_id)
            expert_person = await db.scalar(select(Expert.person_id).where(Expert.id == session.expert_id))
        if person_id == session.customer_id and expert_person is not None:
            other = expert_person
        elif person_id == expert_person:
            other = session.customer_id
        else:
            raise DomainError("you were not part of this session")
        try:
            async with self._sessions.begin() as db:
                db.add(Block(person_id=person_id, blocked_id=other))
        except IntegrityError:
            pass  # blocked already: the same outcome
        return other

    async def unblock(self, person_id: str, blocked_id: str) -> None:
        async with self._sessions.begin() as db:
            await db.execute(
                delete(Block).where(Block.person_id == person_id, Block.blocked_id == blocked_id)
            )

    async def blocked_by(self, person_id: str) -> list[tuple[str, str]]:
        """(person id, name) of everyone `person_id` blocked."""
        async with self._sessions() as db:
            rows = await db.execute(
                select(Person.id, Person.display_name)
                .join(Block, Block.blocked_id == Person.id)
                .where(Block.person_id == person_id)
                .order_by(Block.created_at)
            )
            return [(ident, name) for ident, name in rows]

    async def experts_apart_from(self, person_id: str) -> frozenset[str]:
        """Expert ids the person must never be matched with: blocked by them, or blocking them."""

        def query(db: Connection) -> frozenset[str]:
            rows = db.execute(
                select(Expert.id).join(
                    Block,
                    or_(
                        (Block.person_id == person_id) & (Block.blocked_id == Expert.person_id),
                        (Block.blocked_id == person_id) & (Block.person_id == Expert.person_id),
                    ),
                )
            )
            return frozenset(row[0] for row in rows)

        # On the request's hot path: one indexed lookup, inline on SQLite like the other reads.
        return await read(self._sessions, query)
