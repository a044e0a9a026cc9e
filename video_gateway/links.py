"""One-off room links: `/r/<token>`, signed, expiring, bound to one participant of one room.

A token is `<payload>.<mac>`, both base64url without padding. The payload is compact JSON:
`{"r": room id, "p": "customer"|"expert", "x": expiry (unix s), "l": language}`. The MAC is
HMAC-SHA256 under a key derived from the service's secret for this purpose only, so a token
for another feature (a chat visitor token, say) can never pass as a room link. The language
travels in the token so that a refusal of an *expired* link is still in the person's
language; a forged token's language is never trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from enum import StrEnum

from video_gateway.errors import LinkRefused, RefusalReason

_MAX_TOKEN_CHARS = 600
_ROOM_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


class Role(StrEnum):
    CUSTOMER = "customer"
    EXPERT = "expert"

    @property
    def other(self) -> Role:
        return Role.EXPERT if self is Role.CUSTOMER else Role.CUSTOMER


@dataclass(frozen=True, slots=True)
class LinkClaims:
    room_id: str
    role: Role
    expires_at: int  # unix seconds
    language: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"room-link:" + secret).digest()

    def sign(self, claims: LinkClaims) -> str:
        if not _ROOM_ID.match(claims.room_id):
            raise ValueError(f"unsafe room id {claims.room_id!r}")
        payload = json.dumps(
            {"r": claims.room_id, "p": claims.role.value, "x": claims.expires_at, "l": claims.language},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float) -> LinkClaims:
        """The token's claims, or LinkRefused saying why (forged, malformed or expired)."""
        claims = self.authentic(token)
        if now >= claims.expires_at:
            raise LinkRefused(RefusalReason.EXPIRED, claims.language)
        return claims

    def authentic(self, token: str) -> LinkClaims:
        """The claims of a token this service signed, expired or not; LinkRefused otherwise."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
            raise LinkRefused(RefusalReason.INVALID)
        encoded, _, mac = token.partition(".")
        try:
            payload, given = _unb64(encoded), _unb64(mac)
        except (binascii.Error, ValueError) as exc:
            raise LinkRefused(RefusalReason.INVALID) from exc
        if not hmac.compare_digest(given, self._mac(payload)):
            raise LinkRefused(RefusalReason.INVALID)
        try:
            fields = json.loads(payload)
            claims = LinkClaims(
                room_id=fields["r"], role=Role(fields["p"]), expires_at=fields["x"], language=fields["l"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            # Authentic but unreadable: only a key shared with a buggy signer could produce this.
            raise LinkRefused(RefusalReason.INVALID) from exc
        if (
            not isinstance(claims.room_id, str)
            or not _ROOM_ID.match(claims.room_id)
            or not isinstance(claims.expires_at, int)
            or not isinstance(claims.language, str)
            or not _LANGUAGE.match(claims.language)
        ):
            raise LinkRefused(RefusalReason.INVALID)
        return claims

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()
