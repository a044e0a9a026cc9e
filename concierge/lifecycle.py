"""The request→session lifecycle as a pure transition table; persistence lives in `transitions`.

    open → offered → claimed → awaiting_payment → ready → live → ended → settled → refunded
                         └──────── (free) ───────────┘
    cancelled: from open, offered, claimed, awaiting_payment, ready
    forfeit:   ready → ended, a booking called off too late or missed by the customer: charged
               for the booked time under the expert's cancellation policy, as if it had been used
    lapse:     awaiting_payment → claimed, a booking's payment page expired with time left to
               pay: the customer is asked again
    expired:   from open, offered (nobody accepted), awaiting_payment (never paid), ready (nobody came)

A dropped connection does not leave `live`: the gateway pauses the meter; only `end` does.
"""

from __future__ import annotations

from enum import StrEnum

from concierge.errors import IllegalTransition


class State(StrEnum):
    OPEN = "open"
    OFFERED = "offered"
    CLAIMED = "claimed"
    AWAITING_PAYMENT = "awaiting_payment"
    READY = "ready"
    LIVE = "live"
    ENDED = "ended"
    SETTLED = "settled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"


class Event(StrEnum):
    OFFER = "offer"
    CLAIM = "claim"
    REQUEST_PAYMENT = "request_payment"
    PAYMENT_AUTHORISED = "payment_authorised"
    CONFIRM_FREE = "confirm_free"
    GO_LIVE = "go_live"
    END = "end"
    SETTLE = "settle"
    CANCEL = "cancel"
    EXPIRE = "expire"
    REFUND = "refund"
    FORFEIT = "forfeit"
    LAPSE = "lapse"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.OPEN, Event.OFFER): State.OFFERED,
    (State.OFFERED, Event.CLAIM): State.CLAIMED,
    (State.CLAIMED, Event.REQUEST_PAYMENT): State.AWAITING_PAYMENT,
    (State.CLAIMED, Event.CONFIRM_FREE): State.READY,
    (State.AWAITING_PAYMENT, Event.PAYMENT_AUTHORISED): State.READY,
    (State.READY, Event.GO_LIVE): State.LIVE,
    (State.LIVE, Event.END): State.ENDED,
    (State.ENDED, Event.SETTLE): State.SETTLED,
    (State.SETTLED, Event.REFUND): State.REFUNDED,
    (State.READY, Event.FORFEIT): State.ENDED,
    (State.AWAITING_PAYMENT, Event.LAPSE): State.CLAIMED,
    **{
        (state, Event.CANCEL): State.CANCELLED
        for state in (
            State.OPEN,
            State.OFFERED,
            State.CLAIMED,
            State.AWAITING_PAYMENT,
            State.READY,
        )
    },
    **{
        (state, Event.EXPIRE): State.EXPIRED
        for state in (State.OPEN, State.OFFERED, State.AWAITING_PAYMENT, State.READY)
    },
}

# The request row carries the lifecycle until a session exists; from the claim on, the
# session row does and the request stays `claimed` for good.
REQUEST_STATES = frozenset({State.OPEN, State.OFFERED, State.CLAIMED, State.CANCELLED, State.EXPIRED})
TERMINAL_STATES = frozenset({State.CANCELLED, State.EXPIRED, State.REFUNDED})
STARTED_STATES = frozenset({State.LIVE, State.ENDED, State.SETTLED, State.REFUNDED})
FINISHED_STATES = frozenset({State.ENDED, State.SETTLED, State.REFUNDED})


def next_state(state: State, event: Event, subject: str = "request") -> State:
    """The state `event` leads to from `state`, or IllegalTransition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(subject, state.value, event.value) from None
