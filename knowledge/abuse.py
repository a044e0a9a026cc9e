"""Abuse: insults and threats aimed at a person, in the six languages, as short fixed phrases.

Deliberately narrow: a help chat is full of words like "kill" ("kill the process"), "die"
("my battery died") or "shoot" ("troubleshoot"), so single words are never enough; only
phrases that address or threaten someone count. Someone who writes one is muted for a while
(`concierge.moderation`); everything else is the operators' job through reports.
"""

from __future__ import annotations

import unicodedata
from functools import cache

PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        "fuck you",
        "fuck off",
        "kill yourself",
        "go die",
        "i will kill you",
        "i'll kill you",
        "i am going to kill you",
        "i'm going to kill you",
        "you piece of shit",
        "stupid bitch",
    ),
    "fr": (
        "va te faire foutre",
        "ta gueule",
        "je vais te tuer",
        "je vais vous tuer",
        "crève",
        "sale connard",
        "sale pute",
        "suicide-toi",
    ),
    "de": (
        "fick dich",
        "verpiss dich",
        "ich bringe dich um",
        "ich bring dich um",
        "ich werde dich umbringen",
        "du hurensohn",
        "bring dich um",
        "halt die fresse",
    ),
    "es": (
        "vete a la mierda",
        "te voy a matar",
        "hijo de puta",
        "mátate",
        "matate",
        "cállate la boca, pendejo",
        "puta madre",
    ),
    "zh": ("你去死", "去死吧", "我要杀了你", "我杀了你", "操你妈", "傻逼", "滚蛋吧你"),
    "ja": ("死ね", "殺すぞ", "殺してやる", "ぶっ殺す", "消えろクズ"),
}


def _normal(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    return " ".join(folded.split())


@cache
def _phrases() -> tuple[tuple[str, bool], ...]:
    """Each phrase normalised, and whether it must stand as whole words (not for CJK, which has
    no spaces: "crève" is not inside "crèvecoeur", but 死ね is inside 死ねよ)."""
    return tuple(
        (_normal(phrase), not any(ord(c) >= 0x2E80 for c in phrase))
        for phrases in PHRASES.values()
        for phrase in phrases
    )


def is_abusive(text: str) -> bool:
    # Substring search first: this runs on every message, and a regex alternation of the
    # phrases cost ten times more.
    normal = _normal(text)
    for phrase, whole_words in _phrases():
        start = normal.find(phrase)
        while start >= 0:
            end = start + len(phrase)
            if not whole_words or (
                (start == 0 or not normal[start - 1].isalnum())
                and (end == len(normal) or not normal[end].isalnum())
            ):
                return True
            start = normal.find(phrase, start + 1)
    return False
