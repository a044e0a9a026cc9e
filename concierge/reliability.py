"""Whether experts turn up to the sessions booked with them: counters the ranking reads.

The booking code records each booked session's outcome in its own transaction; once that has
committed, `MatcherHost.refresh([expert_id])` (or `Concierge.attendance_changed`) brings the
new counts to the matcher, as a published rating does.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from concierge.errors import NotFound
from concierge.model import Expert


async def record_attendance(db: AsyncSession, expert_id: str, *, kept: bool) -> None:
    """One booked session kept by the expert, or missed (a no-show), in the caller's transaction."""
    column = Expert.sessions_kept if kept else Expert.no_shows
    # In SQL, not read-modify-write: two sessions ending at once both count.
    found = await db.scalar(
        update(Expert)
        .where(Expert.id == expert_id)
        .values({column: column + 1})
        .returning(Expert.id)
        .execution_options(synchronize_session=False)
    )
    if found is None:
        raise NotFound("expert", expert_id)
