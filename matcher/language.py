"""Which language a message is written in: lingua's detector, with the person's locale as the
fallback when a message is too short or too ambiguous to tell.

Lingua's high-accuracy mode is what makes two- and three-word messages work; it costs memory
per language, so the detector only considers the languages the service is configured for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

# Languages the detector considers by default: the UI languages and the most spoken others.
DEFAULT_LANGUAGES = [
    "en",
    "fr",
    "de",
    "es",
    "zh",
    "ja",
    "pt",
    "it",
    "ru",
    "ar",
    "hi",
    "ko",
    "nl",
    "pl",
    "tr",
    "sv",
    "uk",
    "id",
    "vi",
    "th",
]

_SURE = 0.5  # above this, the detector's top language wins outright
_MARGIN = 0.1  # otherwise it must lead the runner-up by this much


def detectable(code: str) -> bool:
    """Whether lingua can detect the ISO 639-1 language `code`."""
    return hasattr(IsoCode639_1, code.upper()) and len(code) == 2


class LanguageSource(StrEnum):
    DETECTED = "detected"
    LOCALE = "locale"


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    code: str
    confidence: float
    source: LanguageSource


class LanguageDetectorPort:
    """Detects among `languages` (ISO 639-1 codes); unknown codes are refused at construction."""

    def __init__(self, languages: Iterable[str] = DEFAULT_LANGUAGES) -> None:
        wanted = []
        for code in languages:
            try:
                wanted.append(Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())))
            except AttributeError:
                raise ValueError(f"the language detector does not know {code!r}") from None
        if len(wanted) < 2:
            raise ValueError("the language detector needs at least two languages")
        self._codes = frozenset(languages)
        self._detector: LanguageDetector = (
            LanguageDetectorBuilder.from_languages(*wanted).with_preloaded_language_models().build()
        )

    @property
    def languages(self) -> frozenset[str]:
        return self._codes

    def detect(self, text: str, fallback: str) -> LanguageGuess:
        """The language of `text`, or `fallback` (the person's locale) when it cannot tell."""
        values = self._detector.compute_language_confidence_values(text)
        if not values or values[0].value <= 0:
            return LanguageGuess(fallback, 0.0, LanguageSource.LOCALE)
        top = values[0]
        runner_up = values[1].value if len(values) > 1 else 0.0
        code = top.language.iso_code_639_1.name.lower()
        if code == fallback or top.value >= _SURE or top.value - runner_up >= _MARGIN:
            return LanguageGuess(code, float(top.value), LanguageSource.DETECTED)
        # Ambiguous: trust the person's locale if the detector found it plausible at all.
        return LanguageGuess(fallback, float(top.value), LanguageSource.LOCALE)
