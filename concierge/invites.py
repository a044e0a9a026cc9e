"""Invitation codes: needed to create an expert listing, optionally tied to a business roster."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, InviteRefused, NotFound
from concierge.model import Business, InviteCode, utcnow

# Crockford base32: no I, L, O or U, so a code read aloud or retyped survives.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CODE_LENGTH = 10
MAX_USES = 10_000
MAX_DAYS = 3650


def generate_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LENGTH))


def normalise_code(text: str) -> str:
    """What a person typed → the stored form: case, dashes, spaces and look-alikes forgiven."""
    return "".join(ch for ch in text.upper() if ch.isalnum()).translate(_CONFUSABLE)


def display_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


async def create_invite(
    sessions: async_sessionmaker[AsyncSession],
    *,
    business_id: str | None = None,
    uses: int = 1,
    expires_in_days: int | None = 30,
    clock: Callable[[], datetime] = utcnow,
) -> InviteCode:
    if not 1 <= uses <= MAX_USES:
        raise DomainError(f"uses must be between 1 and {MAX_USES}")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
        raise DomainError(f"expiry must be between 1 and {MAX_DAYS} days")
    now = clock()
    invite = InviteCode(
        code=generate_code(),
        business_id=business_id,
        uses_left=uses,
        expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days),
        created_at=now,
    )
    async with sessions.begin() as db:
        if business_id is not None and await db.get(Business, business_id) is None:
            raise NotFound("business", business_id)
        db.add(invite)
    return invite


async def redeem_invite(db: AsyncSession, text: str, now: datetime) -> InviteCode:
    """Use one use of a code inside the caller's transaction, or raise InviteRefused."""
    code = normalise_code(text)
    result = await db.execute(
        update(InviteCode)
        .where(
            InviteCode.code == code,
            InviteCode.uses_left > 0,
            or_(InviteCode.expires_at.is_(None), InviteCode.expires_at > now),
        )
        .values(uses_left=InviteCode.uses_left - 1)
        .execution_options(synchronize_session=False)
    )
    invite = await db.get(InviteCode, code, populate_existing=True)
    if result.rowcount == 1 and invite is not None:  # type: ignore[attr-defined]
        return invite
    if invite is None:
        raise InviteRefused("invalid")
    if invite.uses_left <= 0:
        raise InviteRefused("used_up")
    raise InviteRefused("expired")
