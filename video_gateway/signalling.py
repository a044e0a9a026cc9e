"""The room protocol's frames (video_gateway/PROTOCOL.md), parsed and serialised in pure code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from video_gateway.errors import SignallingError

MAX_FRAME_BYTES = 64 * 1024
# The page's timer runs on its own between ticks; ticks correct it this often (and at once when the
# meter changes state). Every message costs the gateway a DTLS record and an SCTP acknowledgement.
TICK_SECONDS = 5
# Direct mode: the page looks at its media connection every second, and reports at once when what
# it sees changes, and otherwise this often.
REPORT_SECONDS = 5
_MAX_SDP_CHARS = 60_000


@dataclass(frozen=True, slots=True)
class Offer:
    sdp: str


@dataclass(frozen=True, slots=True)
class Signal:
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class Pong:
    t: float


@dataclass(frozen=True, slots=True)
class Stats:
    connected: bool
    bytes_received: int
    flowing: bool | None = None  # None from a page that predates the field: the gateway compares bytes


SocketFrame = Offer | Signal | Hangup
ControlFrame = Pong | Stats | Hangup


def _object(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_FRAME_BYTES:
        raise SignallingError("too_big", f"frames are limited to {MAX_FRAME_BYTES} bytes")
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignallingError("malformed", "not JSON") from exc
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise SignallingError("malformed", "expected an object with a type")
    return value


def parse_socket_frame(text: str | bytes) -> SocketFrame:
    frame = _object(text)
    kind = frame["type"]
    if kind == "offer":
        sdp = frame.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0") or len(sdp) > _MAX_SDP_CHARS:
            raise SignallingError("malformed", "offer needs an SDP")
        return Offer(sdp)
    if kind == "signal":
        data = frame.get("data")
        if not isinstance(data, dict) or not ({"sdp", "candidate"} & data.keys()):
            raise SignallingError("malformed", "signal needs data with sdp or candidate")
        return Signal(data)
    if kind == "hangup":
        return Hangup()
    raise SignallingError("unexpected", f"unknown frame type {kind[:40]!r}")


def parse_control_frame(text: str | bytes) -> ControlFrame:
    frame = _object(text)
    kind = frame["type"]
    if kind == "pong":
        t = frame.get("t")
        if not isinstance(t, int | float) or isinstance(t, bool):
            raise SignallingError("malformed", "pong needs t")
        return Pong(float(t))
    if kind == "stats":
        connected, received = frame.get("connected"), frame.get("bytes_received")
        if not isinstance(connected, bool) or not isinstance(received, int) or isinstance(received, bool):
            raise SignallingError("malformed", "stats needs connected and bytes_received")
        if received < 0:
            raise SignallingError("malformed", "bytes_received cannot be negative")
        flowing = frame.get("flowing")
        if flowing is not None and not isinstance(flowing, bool):
            raise SignallingError("malformed", "flowing is true or false")
        return Stats(connected, received, flowing)
    if kind == "hangup":
        return Hangup()
    raise SignallingError("unexpected", f"unknown frame type {kind[:40]!r}")


def dump(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), ensure_ascii=False)
