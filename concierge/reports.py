"""Either party of a session reporting the other to the operators.

A report keeps the reason and a snapshot of the session's facts as they were when reported
(times, billed seconds, lifecycle events, the room's end and recording, the payments), so a
later change cannot hide what happened. The reported person is never told who reported them.
Operators close a report with a note; upholding it mutes the reported person (`moderation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, NotFound, Refused
from concierge.model import Expert, Report, ReportStatus, Session, new_id, utcnow
from concierge.session_facts import session_facts

MIN_REASON_CHARS = 10
MAX_REASON_CHARS = 1000
MAX_NOTE_CHARS = 500


class ReportRefused(Refused):
    """A report that cannot be taken; `reason` names a message for people."""


@dataclass(frozen=True, slots=True)
class ReportView:
    id: str
    session_id: str
    reporter_id: str
    reported_id: str
    reason: str
    status: ReportStatus
    created_at: datetime
    note: str | None


def _view(report: Report) -> ReportView:
    return ReportView(
        report.id,
        report.session_id,
        report.reporter_id,
        report.reported_id,
        report.reason,
        report.status,
        report.created_at,
        report.note,
    )


async def other_party(db: AsyncSession, session_id: str, person_id: str) -> str:
    """The person on the other side of `person_id` in a session (ReportRefused if not theirs)."""
    session = await db.get(Session, session_id)
    if session is None:
        raise NotFound("session", session_id)
    expert_person = await db.scalar(select(Expert.person_id).where(Expert.id == session.expert_id))
    if person_id == session.customer_id and expert_person is not None:
        return expert_person
    if person_id == expert_person:
        return session.customer_id
    raise ReportRefused("not_yours")


class Reports:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    def _now(self) -> datetime:
        return self._clock().replace(tzinfo=UTC)

    async def check(self, session_id: str, reporter_id: str) -> str:
        """Whether `reporter_id` may still report the session; the reported person's id."""
        async with self._sessions() as db:
            reported = await other_party(db, session_id, reporter_id)
            if await self._existing(db, session_id, reporter_id) is not None:
                raise ReportRefused("already")
        return reported

    async def file(self, session_id: str, reporter_id: str, reason: str) -> ReportView:
        reason = reason.strip()
        if not MIN_REASON_CHARS <= len(reason) <= MAX_REASON_CHARS:
            raise ReportRefused("text_length")
        report_id = new_id("rep")
        try:
            async with self._sessions.begin() as db:
                reported = await other_party(db, session_id, reporter_id)
                if await self._existing(db, session_id, reporter_id) is not None:
                    raise ReportRefused("already")
                report = Report(
                    id=report_id,
                    session_id=session_id,
                    reporter_id=reporter_id,
                    reported_id=reported,
                    reason=reason,
                    facts=await session_facts(db, session_id),
                    created_at=self._now(),
                )
                db.add(report)
        except IntegrityError:  # the same report twice at once
            raise ReportRefused("already") from None
        return _view(report)

    @staticmethod
    async def _existing(db: AsyncSession, session_id: str, reporter_id: str) -> str | None:
        return await db.scalar(
            select(Report.id).where(Report.session_id == session_id, Report.reporter_id == reporter_id)
        )

    async def listed(self, status: ReportStatus | None = ReportStatus.OPEN) -> list[ReportView]:
        """Reports oldest first (the open ones by default)."""
        query = select(Report).order_by(Report.created_at, Report.id)
        if status is not None:
            query = query.where(Report.status == status)
        async with self._sessions() as db:
            return [_view(r) for r in await db.scalars(query)]

    async def show(self, report_id: str) -> dict[str, Any]:
        """Everything operators need to decide, as JSON values."""
        async with self._sessions() as db:
            report = await db.get(Report, report_id)
            if report is None:
                raise NotFound("report", report_id)
            earlier = list(
                await db.scalars(
                    select(Report.id).where(Report.reported_id == report.reported_id, Report.id != report.id)
                )
            )
        return {
            "id": report.id,
            "status": report.status.value,
            "reporter": report.reporter_id,
            "reported": report.reported_id,
            "reason": report.reason,
            "created_at": report.created_at.isoformat(),
            "note": report.note,
            "other_reports_about_reported": earlier,
            "facts": report.facts,
        }

    async def close(self, report_id: str, note: str) -> ReportView:
        note = note.strip()
        if not note:
            raise DomainError("a closing note is required")
        async with self._sessions.begin() as db:
            report = await db.get(Report, report_id, with_for_update=True)
            if report is None:
                raise NotFound("report", report_id)
            if report.status is ReportStatus.CLOSED:
                raise DomainError(f"report {report_id} is closed already")
            report.status = ReportStatus.CLOSED
            report.note = note[:MAX_NOTE_CHARS]
            report.closed_at = self._now()
        return _view(report)
