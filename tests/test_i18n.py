"""Message catalogues: complete in every language, plural rules per language, local formats."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from knowledge.i18n import LANGUAGES, CatalogueError, load_catalogues, moment, money, negotiate, validate


def test_the_shipped_catalogues_are_complete_and_consistent() -> None:
    catalogues = load_catalogues()  # validates on load
    assert set(catalogues.messages) == set(LANGUAGES)
    for language in LANGUAGES:
        assert catalogues.text("landing.tagline", language)


@pytest.mark.parametrize(
    ("language", "count", "expected"),
    [
        ("en", 0, "0 expert listings"),
        ("en", 1, "1 expert listing"),
        ("en", 2, "2 expert listings"),
        ("fr", 0, "0 fiche d'expert"),  # French counts zero as singular
        ("fr", 1, "1 fiche d'expert"),
        ("fr", 168, "168 fiches d'experts"),
        ("fr", 1_000_000, "1000000 fiches d'experts"),  # CLDR "many" falls back to "other"
        ("de", 1, "1 Expertenprofil"),
        ("es", 2, "2 perfiles de expertos"),
        ("zh", 1, "1 位专家"),
        ("ja", 168, "専門家 168 名"),
    ],
)
def test_plural_rules_follow_the_language(language: str, count: int, expected: str) -> None:
    assert load_catalogues().text("landing.listings", language, count=count) == expected


def test_an_unsupported_language_reads_english() -> None:
    assert load_catalogues().text("landing.listings", "tlh", count=2) == "2 expert listings"
    with pytest.raises(KeyError):
        load_catalogues().text("no.such.message", "en")


def test_validation_names_every_gap() -> None:
    messages = {
        "en": {"a": "Hello {name}", "b": {"one": "{count} item", "other": "{count} items"}},
        "fr": {"a": "Bonjour", "b": {"other": "{count} objets"}, "c": "extra"},
        "ja": {"b": {"other": "{count} 個"}},
    }
    with pytest.raises(CatalogueError) as caught:
        validate(messages)
    text = str(caught.value)
    assert "fr: 'a' has placeholders [], English has ['name']" in text
    assert "fr: 'b' needs the plural forms ['one', 'other']" in text
    assert "fr: 'c' is not in English" in text
    assert "ja: missing 'a'" in text
    assert "ja: 'b' needs" not in text  # Japanese has no singular


def test_negotiation_takes_the_first_supported_language() -> None:
    assert negotiate(["fr-CA", "en"]) == "fr"
    assert negotiate(["pt-BR", "es_MX"]) == "es"
    assert negotiate(["tlh", ""]) == "en"
    assert negotiate([]) == "en"


def test_money_and_moments_in_each_language() -> None:
    assert money(150, "EUR", "en") == "€1.50"
    assert money(150, "EUR", "fr") == "1,50\u00a0€"
    assert money(1500, "JPY", "ja") == "￥1,500"
    assert money(1234, "BHD", "en").endswith("1.234")
    when = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert moment(when, "en", "Europe/Paris") == "Nov 25, 2026, 4:00\u202fPM"
    assert moment(when, "de", "Europe/Paris") == "25.11.2026, 16:00"
    assert moment(when, "ja", "Asia/Tokyo") == "2026/11/26 0:00"
    assert moment(when, "zh", "Asia/Kathmandu") == "2026年11月25日 20:45"
