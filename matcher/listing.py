"""What the matcher knows about one expert listing; the core fills it from its database."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Listing:
    id: str
    headline: str
    bio: str
    skills: Sequence[str]
    categories: Sequence[str]
    languages: Sequence[str]
    pricing_mode: str  # free | per_session | per_minute
    price_amount: int  # minor units
    currency: str
    timezone: str
    # Weekday ("mon"…"sun") → (start, end) minutes after local midnight.
    hours: Mapping[str, Sequence[tuple[int, int]]] = field(default_factory=dict)
    online: bool = False
    busy: bool = False  # in a session right now
    rating_count: int = 0
    rating_total: int = 0  # sum of 1–5 stars
    offers_accepted: int = 0
    offers_answered: int = 0  # accepted + declined + timed out
    sessions_kept: int = 0  # booked sessions the expert turned up for
    no_shows: int = 0  # booked sessions the expert missed
    business_id: str | None = None

    @property
    def text(self) -> str:
        """What gets embedded: the words a customer's request should meet."""
        return " · ".join(part for part in (self.headline, ", ".join(self.skills), self.bio) if part)

    @property
    def fingerprint(self) -> str:
        """Changes exactly when the embedded text changes (and the vector must be redone)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:20]
