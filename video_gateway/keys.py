"""The gateway's Redis keys, in the service's convention `concierge:{<kind>:<id>}:<field>`.

The braces are a Redis Cluster hash tag: one room's keys share a slot. The README's "Redis
keys" table lists every family.
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def room_key(room_id: str, field: str) -> str:
    if not _SAFE.match(room_id) or not _SAFE.match(field):
        raise ValueError(f"unsafe Redis key part in {room_id!r}/{field!r}")
    return f"concierge:{{room:{room_id}}}:{field}"


EVENTS_STREAM = "concierge:{rooms}:events"
