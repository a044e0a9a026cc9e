"""Everything the matcher reads out of a request before it looks for experts."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from matcher.budget import Budget
from matcher.categories import CategoryGuess
from matcher.language import LanguageGuess

MAX_REQUEST_CHARS = 2000


class Problem(StrEnum):
    """Why a request cannot be understood; the dialogue turns each into a question."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    NO_WORDS = "no_words"  # emoji only, digits only, binary garbage


@dataclass(frozen=True, slots=True)
class Understanding:
    text: str
    problem: Problem | None = None
    language: LanguageGuess | None = None
    category: CategoryGuess | None = None
    when: datetime | None = None
    budget: Budget | None = None

    @property
    def understood(self) -> bool:
        return self.problem is None


def clean(text: str) -> tuple[str, Problem | None]:
    """Normalise a raw message and say whether there is anything to understand in it."""
    if len(text) > MAX_REQUEST_CHARS * 4:
        return "", Problem.TOO_LONG
    # Binary data decoded as text is full of control characters, which real messages never
    # carry (beyond newlines and tabs), and of U+FFFD where decoding failed.
    binary = sum(
        1 for ch in text if ch == "\ufffd" or (unicodedata.category(ch) == "Cc" and ch not in "\n\r\t")
    )
    normalised = unicodedata.normalize("NFC", text)
    printable = "".join(ch if ch.isprintable() else " " for ch in normalised)
    collapsed = " ".join(printable.split())
    if not collapsed:
        return "", Problem.EMPTY
    if len(collapsed) > MAX_REQUEST_CHARS:
        return "", Problem.TOO_LONG
    letters = sum(1 for ch in collapsed if unicodedata.category(ch).startswith("L"))
    if letters < 2 or binary > max(2, len(text) // 20):
        return collapsed, Problem.NO_WORDS
    return collapsed, None
