"""The gateway's exceptions: one hierarchy, third-party errors translated where they arise."""

from __future__ import annotations

from enum import StrEnum


class GatewayError(Exception):
    """Base of every error the video gateway raises."""


class RefusalReason(StrEnum):
    INVALID = "invalid"  # forged, altered or malformed: nothing in it can be trusted
    EXPIRED = "expired"
    ENDED = "ended"  # the room is over (or never existed)


class LinkRefused(GatewayError):
    """A room link that opens nothing; `language` is set only when the token was authentic."""

    def __init__(self, reason: RefusalReason, language: str | None = None) -> None:
        super().__init__(f"room link refused: {reason}")
        self.reason = reason
        self.language = language


class RoomClosing(GatewayError):
    """This process is letting the room go (shutting down): the page should reconnect."""


class SignallingError(GatewayError):
    """A frame from a browser that the protocol does not allow; `code` goes back to it."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
