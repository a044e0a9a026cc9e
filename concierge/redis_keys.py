"""Every Redis key the service writes is built here, so the namespace stays documented.

Keys look like `concierge:{<kind>:<id>}:<field>`. The part in braces is a Redis Cluster
hash tag: all keys of one entity land in the same slot, so a Lua script or MULTI touching
several of them (a claim and its offer list, say) keeps working on Cluster. The README's
"Redis keys" table lists each family.
"""

from __future__ import annotations

import re

PREFIX = "concierge"
_PART = re.compile(r"^[A-Za-z0-9_.\-@]+$")


def _check(part: str) -> str:
    # Braces or colons inside an id would move the hash tag or forge another key.
    if not _PART.match(part):
        raise ValueError(f"unsafe Redis key part {part!r}")
    return part


def entity_key(kind: str, entity_id: str, *fields: str) -> str:
    """`concierge:{kind:id}:field…` — the key of one entity's data."""
    tail = "".join(f":{_check(field)}" for field in fields)
    return f"{PREFIX}:{{{_check(kind)}:{_check(entity_id)}}}{tail}"


def channel_name(topic: str) -> str:
    """A pub/sub channel: `concierge:events:<topic>`."""
    return f"{PREFIX}:events:{_check(topic)}"
