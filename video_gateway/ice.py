"""ICE configuration: the STUN/TURN servers browsers and the gateway use, and nothing else.

aiortc falls back to a public STUN server when given no configuration, so the gateway always
passes an explicit list (possibly empty). TURN credentials follow coturn's REST API
(`use-auth-secret`): username `<expiry>:<user>`, password base64(HMAC-SHA1(secret, username)),
valid until the expiry, so no long-lived TURN password ever reaches a browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from aiortc import RTCConfiguration

_SCHEMES = {"stun", "stuns", "turn", "turns"}


def check_ice_urls(text: str) -> list[str]:
    """The URLs of `CONCIERGE_ICE_SERVERS` (space or comma separated), or ValueError."""
    urls = text.replace(",", " ").split()
    for url in urls:
        scheme, _, rest = url.partition(":")
        if scheme not in _SCHEMES or not rest or rest.startswith("/"):
            raise ValueError(f"{url!r} is not a stun:, stuns:, turn: or turns: URL (host:port)")
        host = urlsplit(f"//{rest.split('?')[0]}").hostname
        if not host:
            raise ValueError(f"{url!r} has no host")
    return urls


def _is_turn(url: str) -> bool:
    return url.startswith(("turn:", "turns:"))


@dataclass(frozen=True, slots=True)
class IceServers:
    urls: tuple[str, ...]
    turn_secret: bytes | None = None
    credential_seconds: int = 6 * 3600

    def credentials(self, user: str, now: float) -> tuple[str, str]:
        assert self.turn_secret is not None
        username = f"{int(now) + self.credential_seconds}:{user}"
        mac = hmac.new(self.turn_secret, username.encode(), hashlib.sha1).digest()
        return username, base64.b64encode(mac).decode("ascii")

    def for_browser(self, user: str, now: float) -> list[dict[str, Any]]:
        """The `iceServers` a participant's page uses for both of its connections."""
        stun = [url for url in self.urls if not _is_turn(url)]
        turn = [url for url in self.urls if _is_turn(url)]
        servers: list[dict[str, Any]] = []
        if stun:
            servers.append({"urls": stun})
        if turn and self.turn_secret is not None:
            username, credential = self.credentials(user, now)
            servers.append({"urls": turn, "username": username, "credential": credential})
        return servers

    def for_gateway(self, now: float) -> RTCConfiguration:
        from aiortc import RTCConfiguration, RTCIceServer  # settings load without the media stack

        servers = [
            RTCIceServer(
                urls=server["urls"], username=server.get("username"), credential=server.get("credential")
            )
            for server in self.for_browser("gateway", now)
        ]
        return RTCConfiguration(iceServers=servers)


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Offer only these local addresses as host candidates (e.g. 127.0.0.1 on a test machine).

    aioice has no per-connection setting for this and leaves out 127.0.0.1 by default, so the
    module function it calls is replaced for this process; the gateway's configuration is
    process-wide anyway.
    """
    import aioice.ice

    chosen = list(addresses)
    if chosen:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [
            a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)
        ]
