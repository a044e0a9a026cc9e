"""Opening a room: the durable record plus one signed link per participant.

Needs no media stack and no live connection, so the core and the CLI open rooms the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from video_gateway.links import LinkClaims, LinkSigner, Role
from video_gateway.rooms import MediaMode, Participant, RoomBook, RoomRecord, Tariff, new_room_id


@dataclass(frozen=True, slots=True)
class RoomLinks:
    room_id: str
    customer: str
    expert: str
    recorded: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"room": self.room_id, "links": {"customer": self.customer, "expert": self.expert}}


@dataclass(frozen=True, slots=True)
class RoomRequest:
    """What the core (or an operator) asks for: a room for one session, or an ad-hoc one."""

    customer: Participant
    expert: Participant
    budget_seconds: int | None = None
    recorded: bool = False
    session_id: str | None = None
    tariff: Tariff | None = None
    starts_at: datetime | None = None  # scheduled help; None: instant help, starting now
    relay: bool = False  # relay even when not recorded (server-authoritative metering)


class RoomOpener:
    """Creates rooms and signs their links; needs no live connections (the CLI uses it too)."""

    def __init__(
        self,
        book: RoomBook,
        signer: LinkSigner,
        public_url: str,
        *,
        instant_link_minutes: int,
        scheduled_grace_minutes: int,
        always_relay: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._book = book
        self._signer = signer
        self._public_url = public_url.rstrip("/")
        self._instant = timedelta(minutes=instant_link_minutes)
        self._grace = timedelta(minutes=scheduled_grace_minutes)
        self._always_relay = always_relay
        self._clock = clock

    async def open(self, request: RoomRequest) -> RoomLinks:
        if request.budget_seconds is not None and request.budget_seconds <= 0:
            raise ValueError("the budget must be a positive number of seconds")
        now = self._clock()
        expires = request.starts_at + self._grace if request.starts_at is not None else now + self._instant
        # A recorded session is always relayed: the recording is made of what the gateway forwards.
        relay = request.recorded or request.relay or self._always_relay
        record = RoomRecord(
            id=new_room_id(),
            customer=request.customer,
            expert=request.expert,
            mode=MediaMode.RELAY if relay else MediaMode.DIRECT,
            recorded=request.recorded,
            budget_seconds=request.budget_seconds,
            links_expire_at=expires,
            created_at=now,
            session_id=request.session_id,
            tariff=request.tariff,
        )
        await self._book.add(record)
        return self.links(record)

    def links(self, record: RoomRecord) -> RoomLinks:
        expiry = int(record.links_expire_at.timestamp())

        def link(role: Role) -> str:
            language = record.participant(role).language
            token = self._signer.sign(LinkClaims(record.id, role, expiry, language))
            return f"{self._public_url}/r/{token}"

        return RoomLinks(record.id, link(Role.CUSTOMER), link(Role.EXPERT), record.recorded)
