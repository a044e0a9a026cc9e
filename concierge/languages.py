"""Language codes: ISO 639-1, checked against the languages Babel's CLDR data names."""

from __future__ import annotations

from functools import cache

from babel import Locale


@cache
def _known_languages() -> frozenset[str]:
    names: dict[str, str] = dict(Locale("en").languages)
    return frozenset(code for code in names if len(code) == 2)


def check_language(code: str) -> str:
    if not isinstance(code, str) or len(code) != 2 or not code.isascii() or not code.islower():
        raise ValueError(f"language must be a two-letter lower-case ISO 639-1 code, got {code!r}")
    if code not in _known_languages():
        raise ValueError(f"unknown language {code!r}")
    return code
