"""Message catalogues and locale-aware formatting: every text a person reads goes through here.

Catalogues are JSON files in knowledge/messages/, one per language, keyed by message id. A
message is a `str.format` template, or, when it counts something, an object of CLDR plural
categories ("one", "other", …) chosen by Babel's plural rules for the language and the
`count` value. English is the reference: every other catalogue must have the same ids and the
same placeholders, which `load_catalogues` checks (and the test suite runs).
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib.resources import files
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_time, format_timedelta, get_datetime_format
from babel.numbers import format_currency, get_currency_precision

LANGUAGES = ("en", "fr", "de", "es", "zh", "ja")
REFERENCE = "en"

Message = str | Mapping[str, str]


class CatalogueError(ValueError):
    """A catalogue is missing a message, a placeholder or a plural form."""


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _forms(message: Message) -> Mapping[str, str]:
    return {"other": message} if isinstance(message, str) else message


@dataclass(frozen=True, slots=True)
class Catalogues:
    messages: Mapping[str, Mapping[str, Message]]  # language → id → message

    def text(self, key: str, language: str, /, **values: object) -> str:
        """The message `key` in `language` (English when the language is not supported)."""
        language = language if language in self.messages else REFERENCE
        message = self.messages[language].get(key)
        if message is None:
            raise KeyError(f"no message {key!r}")
        if isinstance(message, str):
            return message.format(**values)
        count = values.get("count")
        category = Locale.parse(language).plural_form(count) if isinstance(count, int | Decimal) else "other"
        return message.get(category, message["other"]).format(**values)


def _placeholders_of(message: Message) -> set[str]:
    return set().union(*(_placeholders(template) for template in _forms(message).values()))


def validate(messages: Mapping[str, Mapping[str, Message]]) -> None:
    """Raise CatalogueError listing every gap against the English reference."""
    reference = messages[REFERENCE]
    problems = []
    for language, catalogue in messages.items():
        problems += [f"{language}: missing {key!r}" for key in sorted(set(reference) - set(catalogue))]
        problems += [
            f"{language}: {key!r} is not in English" for key in sorted(set(catalogue) - set(reference))
        ]
        plural_forms = {"other"} | ({"one"} & set(Locale.parse(language).plural_form.tags))
        for key in sorted(set(reference) & set(catalogue)):
            message = catalogue[key]
            if not isinstance(message, str) and not plural_forms <= set(message):
                problems.append(f"{language}: {key!r} needs the plural forms {sorted(plural_forms)}")
            if _placeholders_of(message) != _placeholders_of(reference[key]):
                problems.append(
                    f"{language}: {key!r} has placeholders {sorted(_placeholders_of(message))}, "
                    f"English has {sorted(_placeholders_of(reference[key]))}"
                )
    if problems:
        raise CatalogueError("message catalogues are inconsistent:\n  " + "\n  ".join(problems))


@cache
def load_catalogues() -> Catalogues:
    folder = files("knowledge").joinpath("messages")
    messages = {
        language: json.loads(folder.joinpath(f"{language}.json").read_text("utf-8")) for language in LANGUAGES
    }
    validate(messages)
    return Catalogues(messages)


def negotiate(preferred: Iterable[str]) -> str:
    """The first supported language among `preferred` (tags such as "fr-CA"), else English."""
    for tag in preferred:
        language = tag.replace("_", "-").split("-")[0].strip().lower()
        if language in LANGUAGES:
            return language
    return REFERENCE


def money(amount: int, currency: str, language: str) -> str:
    """Minor units in the language's format: 150 EUR → "€1.50" (en), "1,50 €" (fr); JPY has none."""
    value = Decimal(amount).scaleb(-int(get_currency_precision(currency)))
    return str(format_currency(value, currency, locale=language))


def lead_time(minutes: int, language: str) -> str:
    """How long until something, in words: "1 day", "10 minutes", "2 heures"."""
    return str(format_timedelta(timedelta(minutes=minutes), locale=Locale.parse(language), threshold=1.0))


def moment(when: datetime, language: str, zone: str) -> str:
    """A date and time in the reader's zone and language: "Nov 25, 2026, 4:00 PM", "2026/11/25 16:00"."""
    locale = Locale.parse(language)
    local = when.astimezone(ZoneInfo(zone))
    pattern = str(get_datetime_format("medium", locale=locale))
    return pattern.format(
        format_time(local, "short", locale=locale), format_date(local, "medium", locale=locale)
    )
