"""The room meter: billed time is the time both participants are connected with media flowing.

Pure: the caller says who is flowing and what time it is (monotonic seconds); the meter says
what happened. It knows nothing about money, sockets or Redis.

    waiting ──both flowing──▶ live ──one stops──▶ paused ──both again──▶ live …
                                 └──budget reached / hang-up / expiry──▶ ended
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from video_gateway.links import Role

WARNING_SECONDS = 60


class MeterState(StrEnum):
    WAITING = "waiting"  # never been live
    LIVE = "live"
    PAUSED = "paused"
    ENDED = "ended"


class EndReason(StrEnum):
    HANGUP = "hangup"
    BUDGET = "budget"
    EXPIRED = "expired"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class MeterEvent:
    kind: str  # live | paused | resumed | budget_warning | ended
    billed_seconds: int
    reason: EndReason | None = None
    remaining_seconds: int | None = None


@dataclass
class Meter:
    budget_seconds: int | None
    billed_ms: int = 0
    state: MeterState = MeterState.WAITING
    warned: bool = False
    _flowing: dict[Role, bool] = field(default_factory=lambda: dict.fromkeys(Role, False))
    _accrued_until: float | None = None  # while live: the instant billed_ms is counted up to
    _live_from_ms: int = 0  # billed_ms when the current live stretch began

    @property
    def billed_seconds(self) -> int:
        # To the nearest second: the meter's own detection lag is a fraction of a second either way.
        return (self.billed_ms + 500) // 1000

    @classmethod
    def resumed(cls, budget_seconds: int | None, billed_ms: int, state: MeterState, warned: bool) -> Meter:
        """A meter restored from its persisted form (after a gateway restart): nobody is flowing yet."""
        if state is MeterState.LIVE:
            state = MeterState.PAUSED
        return cls(budget_seconds, billed_ms=billed_ms, state=state, warned=warned)

    @property
    def ended(self) -> bool:
        return self.state is MeterState.ENDED

    def flowing(self, role: Role) -> bool:
        return self._flowing[role]

    def set_flowing(self, role: Role, flowing: bool, now: float) -> list[MeterEvent]:
        if self.state is MeterState.ENDED or self._flowing[role] == flowing:
            return []
        if not flowing:
            self._rewind(now)
        events = self.advance(now)
        if self.ended:  # the budget ran out up to now
            return events
        self._flowing[role] = flowing
        both = all(self._flowing.values())
        if both:
            kind = "live" if self.state is MeterState.WAITING else "resumed"
            self.state = MeterState.LIVE
            self._accrued_until = now
            self._live_from_ms = self.billed_ms
            events.append(MeterEvent(kind, self.billed_seconds))
        elif self.state is MeterState.LIVE:
            self.state = MeterState.PAUSED
            self._accrued_until = None
            events.append(MeterEvent("paused", self.billed_seconds))
        return events

    def _rewind(self, to: float) -> None:
        """Media stopped at `to`, which the meter learnt later: take back what it counted since."""
        if self.state is MeterState.LIVE and self._accrued_until is not None and to < self._accrued_until:
            overshoot = round((self._accrued_until - to) * 1000)
            self.billed_ms = max(self._live_from_ms, self.billed_ms - overshoot)
            self._accrued_until = to

    def advance(self, now: float) -> list[MeterEvent]:
        """Count the time since the last call; warn near the budget and stop at it."""
        if self.state is not MeterState.LIVE or self._accrued_until is None:
            return []
        elapsed_ms = max(0, round((now - self._accrued_until) * 1000))
        self._accrued_until = max(now, self._accrued_until)
        self.billed_ms += elapsed_ms
        events: list[MeterEvent] = []
        if self.budget_seconds is None:
            return events
        budget_ms = self.budget_seconds * 1000
        remaining_ms = budget_ms - self.billed_ms
        if not self.warned and remaining_ms <= WARNING_SECONDS * 1000:
            self.warned = True
            events.append(
                MeterEvent(
                    "budget_warning", self.billed_seconds, remaining_seconds=max(0, remaining_ms // 1000)
                )
            )
        if remaining_ms <= 0:
            self.billed_ms = budget_ms
            events += self.end(EndReason.BUDGET, now)
        return events

    def end(self, reason: EndReason, now: float) -> list[MeterEvent]:
        if self.state is MeterState.ENDED:
            return []
        events = [] if reason is EndReason.BUDGET else self.advance(now)
        if self.ended:
            return events
        self.state = MeterState.ENDED
        self._accrued_until = None
        self._flowing = dict.fromkeys(Role, False)
        return [*events, MeterEvent("ended", self.billed_seconds, reason=reason)]
