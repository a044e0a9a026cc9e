"""Scheduled help: a customer books one of an expert's free times, the slot is held at once, and
jobs carry the booking to its call — confirmation deadline, payment, reminders, attendance.

A booking creates its session straight away (claimed, with the booked start and end), so the
payment, room and settlement paths are the instant ones; what differs is *when* each step runs,
which the scheduler decides. Two customers racing for a time: the booking transaction first bumps
the expert's `booking_seq` (a row lock on PostgreSQL, the write lock on SQLite), then looks at the
expert's other bookings, so the second one sees the first; a partial unique index on (expert,
start) backs it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge import availability
from concierge.availability import Booked, Rules, Unavailable, zone_of
from concierge.config import Settings, reminder_minutes
from concierge.errors import DomainError, NotFound, Refused
from concierge.hours import WeeklyHours
from concierge.lifecycle import Event, State
from concierge.model import (
    Booking,
    BookingStatus,
    CancellationPolicy,
    Expert,
    HelpRequest,
    LifecycleEvent,
    Notice,
    Outcome,
    Session,
)
from concierge.model.booking import LIVE_STATUSES
from concierge.payments import Cashier, PaymentRefused
from concierge.pricing import PricingMode
from concierge.reliability import record_attendance
from concierge.scheduler import Job, Scheduler, schedule, unschedule
from concierge.transitions import Lifecycle

log = structlog.get_logger("concierge.bookings")

FREE_UNTIL = {
    CancellationPolicy.FLEXIBLE: timedelta(hours=1),
    CancellationPolicy.MODERATE: timedelta(hours=24),
    CancellationPolicy.STRICT: timedelta(hours=72),
}
MAX_RESCHEDULES = 3
# Before the room's own grace runs out (CONCIERGE_ROOM_GRACE_MINUTES, 15), so a ready session
# is still there to be charged when only the customer stayed away.
NO_SHOW_GRACE = timedelta(minutes=10)


class SlotUnavailable(DomainError):
    def __init__(self, reason: Unavailable) -> None:
        super().__init__(f"that time cannot be booked: {reason.value}")
        self.reason = reason


class BookingRefused(Refused):
    """A change the booking's state or policy does not allow; `reason` names the message."""


@dataclass(frozen=True, slots=True)
class BookingView:
    id: str
    request_id: str
    session_id: str | None
    customer_id: str
    expert_id: str
    starts_at: datetime
    ends_at: datetime
    status: BookingStatus
    policy: CancellationPolicy
    outcome: Outcome | None
    free_until: datetime  # the customer may cancel or move it for free until then

    @classmethod
    def of(cls, booking: Booking) -> BookingView:
        start = _aware(booking.starts_at)
        return cls(
            booking.id,
            booking.request_id,
            booking.session_id,
            booking.customer_id,
            booking.expert_id,
            start,
            _aware(booking.ends_at),
            booking.status,
            booking.policy,
            booking.outcome,
            start - FREE_UNTIL[booking.policy],
        )


@dataclass(frozen=True, slots=True)
class CallOff:
    booking: BookingView
    outcome: Outcome
    charged: bool  # the customer pays the booked time under the policy


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rules_of(expert: Expert) -> Rules:
    return Rules(
        hours=WeeklyHours.parse(expert.hours_json),
        zone=zone_of(expert.time_zone),
        length=timedelta(minutes=expert.booking_minutes),
        exceptions=availability.parse_exceptions(expert.hours_exceptions or {}),
        buffer_before=timedelta(minutes=expert.buffer_before_minutes),
        buffer_after=timedelta(minutes=expert.buffer_after_minutes),
        max_per_day=expert.max_sessions_per_day,
        min_notice=timedelta(minutes=expert.min_notice_minutes),
    )


def _job_key(booking: Booking, step: str) -> str:
    # A done job's key cannot run again: a moved booking's jobs get keys of their own.
    return f"booking:{booking.id}:{booking.reschedules}:{step}"


class Bookings:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        lifecycle: Lifecycle,
        cashier: Cashier,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._lifecycle = lifecycle
        self._cashier = cashier
        self._clock = clock
        self._reminders = reminder_minutes(settings.reminders)
        # Experts whose attendance counts changed here: the matcher rereads them on the next tick.
        self._attended: set[str] = set()

    def take_attended(self) -> list[str]:
        taken, self._attended = sorted(self._attended), set()
        return taken

    def _now(self) -> datetime:
        return _aware(self._clock())

    # ------------------------------------------------------------------ reading

    async def _booked(self, db: AsyncSession, expert_id: str, around: datetime, days: int) -> list[Booked]:
        rows = await db.execute(
            select(Booking.starts_at, Booking.ends_at).where(
                Booking.expert_id == expert_id,
                Booking.status.in_(LIVE_STATUSES),
                Booking.ends_at > around - timedelta(days=2),
                Booking.starts_at < around + timedelta(days=days + 2),
            )
        )
        return [Booked(_aware(start), _aware(end)) for start, end in rows]

    async def free_slots(
        self, expert_id: str, *, after: datetime | None = None, days: int | None = None
    ) -> list[datetime]:
        """Every bookable start from `after` (now) over `days` (the booking horizon)."""
        now = self._now()
        start = max(after or now, now)
        horizon = now + timedelta(days=self.settings.booking_days_ahead)
        end = min(start + timedelta(days=days or self.settings.booking_days_ahead), horizon)
        async with self._sessions() as db:
            expert = await db.get(Expert, expert_id)
            if expert is None:
                raise NotFound("expert", expert_id)
            booked = await self._booked(db, expert_id, start, (end - start).days + 1)
        return availability.free_slots(rules_of(expert), booked, start, end, now)

    async def offer(self, expert_id: str, wanted: datetime | None, count: int = 4) -> list[datetime]:
        """A few times to offer: the wanted one when free, then the nearest, an hour or more apart."""
        around = wanted or self._now()
        slots = await self.free_slots(expert_id, after=around - timedelta(days=1), days=3)
        if len(slots) < count:
            slots = await self.free_slots(expert_id, after=around, days=14)
        return availability.spread(slots, wanted, count, timedelta(minutes=60))

    async def around(self, expert_ids: list[str], wanted: datetime) -> dict[str, datetime | None]:
        """For a "tomorrow at 3pm" request: per expert, `wanted` when they can be booked then,
        otherwise their nearest free time (None: nothing in the next two weeks). Two queries for
        all of them: it runs for every such request."""
        now = self._now()
        horizon = wanted + timedelta(days=15)
        async with self._sessions() as db:
            experts = list(await db.scalars(select(Expert).where(Expert.id.in_(expert_ids))))
            rows = await db.execute(
                select(Booking.expert_id, Booking.starts_at, Booking.ends_at).where(
                    Booking.expert_id.in_(expert_ids),
                    Booking.status.in_(LIVE_STATUSES),
                    Booking.ends_at > wanted - timedelta(days=2),
                    Booking.starts_at < horizon,
                )
            )
        booked: dict[str, list[Booked]] = {}
        for expert_id, start, end in rows:
            booked.setdefault(expert_id, []).append(Booked(_aware(start), _aware(end)))
        found: dict[str, datetime | None] = {}
        for expert in experts:
            rules, theirs = rules_of(expert), booked.get(expert.id, [])
            if availability.check(rules, theirs, wanted, now) is None:
                found[expert.id] = wanted
                continue
            near = availability.free_slots(
                rules, theirs, wanted - timedelta(days=1), wanted + timedelta(days=2), now
            )
            if not near:
                near = availability.free_slots(rules, theirs, wanted, horizon, now, limit=1)
            found[expert.id] = (
                availability.spread(near, wanted, 1, timedelta(minutes=60))[0] if near else None
            )
        return found

    async def get(self, booking_id: str) -> BookingView:
        async with self._sessions() as db:
            booking = await db.get(Booking, booking_id)
        if booking is None:
            raise NotFound("booking", booking_id)
        return BookingView.of(booking)

    async def of_session(self, session_id: str) -> BookingView | None:
        async with self._sessions() as db:
            booking = await db.scalar(select(Booking).where(Booking.session_id == session_id))
        return None if booking is None else BookingView.of(booking)

    async def upcoming(self, person_id: str, expert_id: str | None) -> list[BookingView]:
        async with self._sessions() as db:
            query = select(Booking).where(
                Booking.status.in_(LIVE_STATUSES), Booking.ends_at > self._now() - NO_SHOW_GRACE
            )
            mine = Booking.customer_id == person_id
            if expert_id is not None:
                mine = mine | (Booking.expert_id == expert_id)
            rows = await db.scalars(query.where(mine).order_by(Booking.starts_at).limit(10))
            return [BookingView.of(b) for b in rows]

    # ------------------------------------------------------------------ booking

    async def book(
        self, customer_id: str, request_id: str, expert_id: str, at: datetime, *, commission: Decimal
    ) -> BookingView:
        """Hold `at` for this request, atomically; SlotUnavailable says why not. The session is
        claimed at once; an expert who confirms each booking is asked first."""
        now = self._now()
        at = _aware(at).astimezone(UTC)
        if at > now + timedelta(days=self.settings.booking_days_ahead):
            raise SlotUnavailable(Unavailable.OUTSIDE_HOURS)
        try:
            async with self._sessions.begin() as db:
                request = await db.get(HelpRequest, request_id)
                if request is None or request.customer_id != customer_id:
                    raise NotFound("request", request_id)
                if request.status not in (State.OPEN, State.OFFERED):
                    raise BookingRefused("closed", "this request is no longer open")
                await self._lock(db, expert_id)
                expert = await db.get(Expert, expert_id)
                if expert is None or not expert.published:
                    raise NotFound("expert", expert_id)
                rules = rules_of(expert)
                reason = availability.check(rules, await self._booked(db, expert_id, at, 1), at, now)
                if reason is not None:
                    raise SlotUnavailable(reason)
                end = at + rules.length
                if request.status is State.OPEN:
                    await self._lifecycle.offer_in(db, request_id, [(expert_id, 1.0)])
                else:
                    raise BookingRefused("closed", "this request is already booked")
                session = await self._lifecycle.claim_in(
                    db,
                    request_id,
                    expert_id,
                    commission_percent=commission,
                    scheduled_start=at,
                    scheduled_end=end,
                )
                await db.flush()
                booking = Booking(
                    request_id=request_id,
                    customer_id=customer_id,
                    expert_id=expert_id,
                    session_id=session.id,
                    starts_at=at,
                    ends_at=end,
                    status=BookingStatus.CONFIRMED if expert.auto_confirm else BookingStatus.PENDING,
                    policy=expert.cancellation_policy,
                    created_at=now,
                    updated_at=now,
                )
                db.add(booking)
                await db.flush()
                if booking.status is BookingStatus.PENDING:
                    confirm_by = min(now + timedelta(hours=self.settings.booking_confirm_hours), at)
                    booking.confirm_by = confirm_by
                    await schedule(
                        db,
                        "booking.confirm_by",
                        confirm_by,
                        {"booking": booking.id},
                        key=_job_key(booking, "confirm_by"),
                    )
                else:
                    await self._plan(db, booking)
                view = BookingView.of(booking)
        except IntegrityError as exc:  # the partial unique index: a racing booking took the time
            raise SlotUnavailable(Unavailable.TAKEN) from exc
        if view.status is BookingStatus.CONFIRMED:
            await self._pay_if_due(view)
        return view

    async def _lock(self, db: AsyncSession, expert_id: str) -> None:
        await db.execute(
            update(Expert)
            .where(Expert.id == expert_id)
            .values(booking_seq=Expert.booking_seq + 1)
            .execution_options(synchronize_session=False)
        )

    async def _plan(self, db: AsyncSession, booking: Booking) -> None:
        """The jobs of a confirmed booking: payment, reminders, attendance (moved when rescheduled)."""
        start = _aware(booking.starts_at)
        payload = {"booking": booking.id}
        lead = timedelta(hours=self.settings.booking_payment_lead_hours)
        await schedule(db, "booking.pay", start - lead, payload, key=_job_key(booking, "pay"))
        await schedule(
            db,
            "booking.pay_deadline",
            start - timedelta(minutes=self.settings.booking_pay_by_minutes),
            payload,
            key=_job_key(booking, "pay_deadline"),
        )
        for minutes in self._reminders:
            if start - timedelta(minutes=minutes) < self._now():
                # Booked after that reminder's time: the confirmation says it all. (A moved
                # booking's old reminder under the same key goes too.)
                await unschedule(db, _job_key(booking, f"remind:{minutes}"))
                continue
            await schedule(
                db,
                "booking.remind",
                start - timedelta(minutes=minutes),
                {**payload, "minutes": minutes, "last": minutes == min(self._reminders)},
                key=_job_key(booking, f"remind:{minutes}"),
            )
        await schedule(
            db, "booking.attendance", start + NO_SHOW_GRACE, payload, key=_job_key(booking, "attendance")
        )

    async def _unplan(self, db: AsyncSession, booking: Booking, running: str | None = None) -> None:
        """Drop the booking's jobs, except the one running now (it is marked done as it ends)."""
        keys = [_job_key(booking, step) for step in ("confirm_by", "pay", "pay_deadline", "attendance")]
        keys += [_job_key(booking, f"remind:{minutes}") for minutes in self._reminders]
        for key in keys:
            if key != running:
                await unschedule(db, key)

    async def _pay_if_due(self, booking: BookingView) -> None:
        """Hold the money once the start is close enough that the hold outlives the call."""
        lead = timedelta(hours=self.settings.booking_payment_lead_hours)
        if booking.session_id is None or booking.starts_at - lead > self._now():
            return
        await self._ask_payment(booking.id, booking.session_id)

    async def _ask_payment(self, booking_id: str, session_id: str) -> None:
        try:
            hand_off = await self._cashier.hand_off(session_id)
        except PaymentRefused as exc:
            log.warning("booking payment refused", booking=booking_id, code=exc.code, error=str(exc))
            await self._call_off(booking_id, Outcome.UNPAID, by="system", reason=f"payment: {exc.code}")
            return
        if hand_off.checkout_url:
            async with self._sessions.begin() as db:
                await _tell(
                    db,
                    session_id,
                    f"booking_pay:{hand_off.checkout_url[-24:]}",
                    {"url": hand_off.checkout_url},
                )

    # ------------------------------------------------------------------ the expert's answer

    async def confirm(self, expert_id: str, booking_id: str) -> BookingView:
        async with self._sessions.begin() as db:
            booking = await self._own(db, booking_id, expert_id=expert_id)
            if booking.status is BookingStatus.CONFIRMED:
                return BookingView.of(booking)
            if booking.status is not BookingStatus.PENDING:
                raise BookingRefused(booking.status.value, f"this booking is {booking.status.value}")
            booking.status = BookingStatus.CONFIRMED
            booking.updated_at = self._now()
            await unschedule(db, _job_key(booking, "confirm_by"))
            await self._plan(db, booking)
            assert booking.session_id is not None
            await _tell(db, booking.session_id, "booking_confirmed")
            view = BookingView.of(booking)
        await self._pay_if_due(view)
        return view

    async def decline(self, expert_id: str, booking_id: str) -> BookingView:
        async with self._sessions() as db:
            booking = await self._own(db, booking_id, expert_id=expert_id)
            if booking.status is not BookingStatus.PENDING:
                raise BookingRefused(booking.status.value, f"this booking is {booking.status.value}")
        return (await self._call_off(booking_id, None, by="expert", reason="declined")).booking

    # ------------------------------------------------------------------ calling off, moving

    async def cancel(self, person_id: str, expert_id: str | None, booking_id: str) -> CallOff:
        """Called off by the customer (free until the policy's limit, then charged for the booked
        time) or by the expert (always free for the customer; late ones count against the expert)."""
        async with self._sessions() as db:
            booking = await self._own(db, booking_id, person_id=person_id, expert_id=expert_id)
        if booking.status not in LIVE_STATUSES:
            raise BookingRefused(booking.status.value, f"this booking is {booking.status.value}")
        view = BookingView.of(booking)
        now = self._now()
        if expert_id is not None and booking.expert_id == expert_id:
            late = now >= view.starts_at - FREE_UNTIL[CancellationPolicy.MODERATE]
            if late and booking.status is BookingStatus.CONFIRMED:
                async with self._sessions.begin() as db:
                    await record_attendance(db, booking.expert_id, kept=False)
                self._attended.add(booking.expert_id)
            return await self._call_off(booking_id, Outcome.EXPERT_CANCELLED, by="expert", reason="expert")
        if now < view.free_until or booking.status is BookingStatus.PENDING:
            return await self._call_off(booking_id, Outcome.CANCELLED_FREE, by="customer", reason="in time")
        return await self._forfeit(booking_id, Outcome.CANCELLED_LATE, by="customer")

    async def reschedule(self, customer_id: str, booking_id: str, at: datetime) -> BookingView:
        """Move a booking to another free time of the same expert, while it could still be
        cancelled for free; the jobs move with it, the payment hold stays."""
        now = self._now()
        at = _aware(at).astimezone(UTC)
        try:
            async with self._sessions.begin() as db:
                booking = await self._own(db, booking_id, person_id=customer_id)
                view = BookingView.of(booking)
                if booking.status not in LIVE_STATUSES:
                    raise BookingRefused(booking.status.value, f"this booking is {booking.status.value}")
                if now >= view.free_until:
                    raise BookingRefused("too_late", "too close to the start to move it: you can cancel it")
                if booking.reschedules >= MAX_RESCHEDULES:
                    raise BookingRefused(
                        "too_often", "this booking was moved too often: cancel and book again"
                    )
                await self._lock(db, booking.expert_id)
                expert = await db.get(Expert, booking.expert_id)
                assert expert is not None
                rules = rules_of(expert)
                others = [
                    b
                    for b in await self._booked(db, booking.expert_id, at, 1)
                    if (b.start, b.end) != (view.starts_at, view.ends_at)
                ]
                reason = availability.check(rules, others, at, now)
                if reason is not None:
                    raise SlotUnavailable(reason)
                session = await db.get(Session, booking.session_id) if booking.session_id else None
                held = session is not None and session.state in (State.AWAITING_PAYMENT, State.READY)
                lead = timedelta(hours=self.settings.booking_payment_lead_hours)
                if held and at - lead > now:
                    raise BookingRefused(
                        "hold_window", "the payment is already held for the old time: cancel and book again"
                    )
                await self._unplan(db, booking)
                booking.starts_at, booking.ends_at = at, at + (view.ends_at - view.starts_at)
                booking.reschedules += 1
                booking.updated_at = now
                if session is not None:
                    session.scheduled_start, session.scheduled_end = booking.starts_at, booking.ends_at
                if booking.status is BookingStatus.PENDING and booking.confirm_by is not None:
                    booking.confirm_by = min(_aware(booking.confirm_by), at)
                    await schedule(
                        db,
                        "booking.confirm_by",
                        booking.confirm_by,
                        {"booking": booking.id},
                        key=_job_key(booking, "confirm_by"),
                    )
                if booking.status is BookingStatus.CONFIRMED:
                    await self._plan(db, booking)
                    await _tell(
                        db,
                        booking.session_id or "",
                        f"booking_moved:{booking.reschedules}",
                        {"starts_at": at.isoformat()},
                    )
                new = BookingView.of(booking)
        except IntegrityError as exc:
            raise SlotUnavailable(Unavailable.TAKEN) from exc
        return new

    async def _call_off(self, booking_id: str, outcome: Outcome | None, *, by: str, reason: str) -> CallOff:
        async with self._sessions.begin() as db:
            booking = await db.get(Booking, booking_id)
            if booking is None:
                raise NotFound("booking", booking_id)
            return await self._call_off_in(db, booking, outcome, by=by, reason=reason)

    async def _call_off_in(
        self,
        db: AsyncSession,
        booking: Booking,
        outcome: Outcome | None,
        *,
        by: str,
        reason: str,
        running: str | None = None,
    ) -> CallOff:
        """Nothing charged: the session is cancelled, a hold is released by the settlement sweep.
        `outcome` None: the expert declined (or never confirmed) a booking."""
        if booking.status not in LIVE_STATUSES:
            return CallOff(BookingView.of(booking), booking.outcome or Outcome.CANCELLED_FREE, False)
        declined = outcome is None
        booking.status = BookingStatus.DECLINED if declined else BookingStatus.CANCELLED
        booking.outcome = outcome
        booking.cancelled_by = by
        booking.updated_at = self._now()
        await self._unplan(db, booking, running)
        session = await db.get(Session, booking.session_id) if booking.session_id else None
        if session is not None and session.state in (State.CLAIMED, State.AWAITING_PAYMENT, State.READY):
            await self._lifecycle.advance(db, session, Event.CANCEL, {"reason": f"booking {reason}"})
            kind = "booking_declined" if declined else f"booking_cancelled_by_{by}"
            await _tell(db, session.id, kind, {"outcome": outcome.value if outcome else None})
        return CallOff(BookingView.of(booking), outcome or Outcome.CANCELLED_FREE, False)

    async def _forfeit(self, booking_id: str, outcome: Outcome, *, by: str) -> CallOff:
        async with self._sessions.begin() as db:
            booking = await db.get(Booking, booking_id)
            if booking is None:
                raise NotFound("booking", booking_id)
            return await self._forfeit_in(db, booking, outcome, by=by)

    async def _forfeit_in(
        self, db: AsyncSession, booking: Booking, outcome: Outcome, *, by: str, running: str | None = None
    ) -> CallOff:
        """Late: the booked time is charged as if it had been used (then settled like any call).
        Not paid yet: there is nothing to charge, the session is only cancelled."""
        if booking.status not in LIVE_STATUSES:
            return CallOff(BookingView.of(booking), booking.outcome or outcome, False)
        session = await db.get(Session, booking.session_id) if booking.session_id else None
        free = session is not None and session.pricing.mode is PricingMode.FREE
        charged = session is not None and session.state is State.READY and not free
        booking.status = BookingStatus.CANCELLED if by != "system" else BookingStatus.DONE
        booking.outcome = outcome
        booking.cancelled_by = by
        now = booking.updated_at = self._now()
        await self._unplan(db, booking, running)
        if session is not None and charged:
            start, end = _aware(booking.starts_at), _aware(booking.ends_at)
            began = min(start, now)
            await self._lifecycle.advance(
                db,
                session,
                Event.FORFEIT,
                {"reason": outcome.value, "policy": booking.policy.value},
                started_at=began,
                ended_at=now,
                billed_seconds=int((end - start).total_seconds()),
            )
            await _tell(db, session.id, f"booking_forfeit:{outcome.value}", {"outcome": outcome.value})
        elif session is not None and session.state in (State.CLAIMED, State.AWAITING_PAYMENT, State.READY):
            await self._lifecycle.advance(db, session, Event.CANCEL, {"reason": outcome.value})
            await _tell(db, session.id, f"booking_cancelled_by_{by}", {"outcome": outcome.value})
        return CallOff(BookingView.of(booking), outcome, charged)

    async def _own(
        self,
        db: AsyncSession,
        booking_id: str,
        *,
        person_id: str | None = None,
        expert_id: str | None = None,
    ) -> Booking:
        booking = await db.get(Booking, booking_id)
        mine = booking is not None and (
            (person_id is not None and booking.customer_id == person_id)
            or (expert_id is not None and booking.expert_id == expert_id)
        )
        if booking is None or not mine:
            raise NotFound("booking", booking_id)
        return booking

    # ------------------------------------------------------------------ jobs

    def register(self, scheduler: Scheduler) -> None:
        scheduler.handle("booking.confirm_by", self._job_confirm_by)
        scheduler.handle_outside("booking.pay", self._job_pay)
        scheduler.handle("booking.pay_deadline", self._job_pay_deadline)
        scheduler.handle("booking.remind", self._job_remind)
        scheduler.handle("booking.attendance", self._job_attendance)

    # Handlers whose effects are all in the database use the job's transaction (done exactly
    # once); the payment one calls the provider, so it reads and writes through its own and
    # relies on the hand-off being idempotent.

    async def _job_booking(self, db: AsyncSession, job: Job) -> Booking | None:
        booking = await db.get(Booking, str(job.payload.get("booking")))
        if booking is None or booking.status not in LIVE_STATUSES:
            return None  # called off since: nothing to do
        return booking

    async def _job_confirm_by(self, db: AsyncSession, job: Job) -> None:
        booking = await self._job_booking(db, job)
        if booking is not None and booking.status is BookingStatus.PENDING:
            await self._call_off_in(
                db, booking, None, by="system", reason="not confirmed in time", running=job.key
            )

    async def _job_pay(self, job: Job) -> None:
        async with self._sessions() as db:
            booking = await self._job_booking(db, job)
            state = (
                await db.scalar(select(Session.state).where(Session.id == booking.session_id))
                if booking is not None and booking.session_id
                else None
            )
        # Asked already (booked inside the lead time, or a run before a lost lease): nothing to do.
        if booking is not None and booking.status is BookingStatus.CONFIRMED and state is State.CLAIMED:
            assert booking.session_id is not None
            await self._ask_payment(booking.id, booking.session_id)

    async def _job_pay_deadline(self, db: AsyncSession, job: Job) -> None:
        booking = await self._job_booking(db, job)
        if booking is None or booking.session_id is None:
            return
        state = await db.scalar(select(Session.state).where(Session.id == booking.session_id))
        if state in (State.CLAIMED, State.AWAITING_PAYMENT):
            await self._call_off_in(
                db, booking, Outcome.UNPAID, by="system", reason="not paid", running=job.key
            )

    async def _job_remind(self, db: AsyncSession, job: Job) -> None:
        booking = await self._job_booking(db, job)
        if booking is None or booking.status is not BookingStatus.CONFIRMED or booking.session_id is None:
            return
        minutes = int(job.payload.get("minutes", 0))
        await _tell(
            db,
            booking.session_id,
            f"reminder:{minutes}:{_aware(booking.starts_at).isoformat()}",
            {"minutes": minutes, "last": bool(job.payload.get("last")), "booking": booking.id},
        )

    async def _job_attendance(self, db: AsyncSession, job: Job) -> None:
        """After the start and its grace: kept, or who did not come."""
        booking = await self._job_booking(db, job)
        if booking is None or booking.session_id is None:
            return
        session = await db.get(Session, booking.session_id)
        assert session is not None
        if session.state in (State.LIVE, State.ENDED, State.SETTLED, State.REFUNDED):
            booking.status, booking.outcome = BookingStatus.DONE, Outcome.KEPT
            await record_attendance(db, booking.expert_id, kept=True)
            self._attended.add(booking.expert_id)
            return
        arrived = await joined(db, session.id)
        if "expert" in arrived and "customer" not in arrived:
            await self._forfeit_in(db, booking, Outcome.CUSTOMER_NO_SHOW, by="system", running=job.key)
        elif "expert" not in arrived:
            await record_attendance(db, booking.expert_id, kept=False)
            self._attended.add(booking.expert_id)
            await self._call_off_in(
                db, booking, Outcome.EXPERT_NO_SHOW, by="system", reason="expert absent", running=job.key
            )
            booking.status = BookingStatus.DONE
        else:  # both opened the room but no call got going: nobody is charged or blamed
            await self._call_off_in(
                db, booking, Outcome.CANCELLED_FREE, by="system", reason="no call", running=job.key
            )
            booking.status = BookingStatus.DONE


async def joined(db: AsyncSession, session_id: str) -> set[str]:
    """The parties who opened the room (the gateway's "joined" events, kept as lifecycle notes)."""
    rows = await db.scalars(
        select(LifecycleEvent.detail).where(
            LifecycleEvent.session_id == session_id, LifecycleEvent.event == "joined"
        )
    )
    return {str(detail.get("role")) for detail in rows if detail}


async def _tell(db: AsyncSession, session_id: str, key: str, detail: dict[str, Any] | None = None) -> None:
    """A notice for both parties of a session (delivered once by the bots' ticker); the same news
    twice (a job run again) is one notice."""
    key = f"{session_id}:{key}"
    if await db.get(Notice, key) is None:
        db.add(Notice(key=key, session_id=session_id, kind=key.split(":")[1], detail=detail))
