"""Operator accounts: created and disabled from the command line, checked at login.

Passwords are argon2id hashes (argon2-cffi's defaults); a hash made with older parameters is
replaced at the next successful login, so raising the cost needs no password reset.
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, NotFound
from concierge.model import Operator, utcnow

MIN_PASSWORD_CHARS = 12
# argon2 hashes any length, but a megabyte "password" is only a way to burn our CPU.
MAX_PASSWORD_CHARS = 256
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# argon2-cffi's current defaults (argon2id, RFC 9106's low-memory profile); a constant, not state.
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Verified when the name is unknown, so a wrong name costs as long as a wrong password;
    # made on first use rather than at import (every CLI command imports this module).
    return _HASHER.hash("not a password of anyone")


class OperatorRefused(DomainError):
    """A name or password the rules refuse; the message says which rule."""


@dataclass(frozen=True, slots=True)
class OperatorView:
    id: str
    name: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


def _view(row: Operator) -> OperatorView:
    return OperatorView(row.id, row.name, row.disabled, row.created_at, row.last_login_at)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise OperatorRefused(
            "an operator name is 2-64 characters: lower-case letters, digits, '.', '_' or '-'"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise OperatorRefused(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise OperatorRefused(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    return password


async def create_operator(
    sessions: async_sessionmaker[AsyncSession], name: str, password: str
) -> OperatorView:
    check_name(name)
    check_password(password)
    hashed = await asyncio.to_thread(_HASHER.hash, password)
    row = Operator(name=name, password_hash=hashed)
    try:
        async with sessions.begin() as db:
            db.add(row)
    except IntegrityError:
        raise OperatorRefused(f"an operator named {name!r} exists already") from None
    return _view(row)


async def list_operators(sessions: async_sessionmaker[AsyncSession]) -> list[OperatorView]:
    async with sessions() as db:
        return [_view(row) for row in await db.scalars(select(Operator).order_by(Operator.name))]


async def disable_operator(sessions: async_sessionmaker[AsyncSession], name: str) -> OperatorView:
    async with sessions.begin() as db:
        row = await db.scalar(select(Operator).where(Operator.name == name))
        if row is None:
            raise NotFound("operator", name)
        row.disabled = True
    return _view(row)


async def authenticate(
    sessions: async_sessionmaker[AsyncSession], name: str, password: str
) -> OperatorView | None:
    """The enabled operator with this name and password, or None (never saying which was wrong)."""
    if len(password) > MAX_PASSWORD_CHARS or len(name) > 64:
        return None
    async with sessions() as db:
        row = await db.scalar(select(Operator).where(Operator.name == name))
    if row is None or row.disabled:
        await asyncio.to_thread(_verifies, _dummy_hash(), password)
        return None
    if not await asyncio.to_thread(_verifies, row.password_hash, password):
        return None
    values: dict[str, object] = {"last_login_at": utcnow()}
    if _HASHER.check_needs_rehash(row.password_hash):
        values["password_hash"] = await asyncio.to_thread(_HASHER.hash, password)
    async with sessions.begin() as db:
        await db.execute(update(Operator).where(Operator.id == row.id).values(**values))
    return _view(row)


async def enabled_operator(
    sessions: async_sessionmaker[AsyncSession], operator_id: str
) -> OperatorView | None:
    async with sessions() as db:
        row = await db.get(Operator, operator_id)
    return None if row is None or row.disabled else _view(row)


def _verifies(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
