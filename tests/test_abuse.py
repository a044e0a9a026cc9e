"""Abuse is a short list of insults and threats aimed at a person; a help chat's words are not."""

from __future__ import annotations

import pytest

from knowledge.abuse import PHRASES, is_abusive
from knowledge.i18n import LANGUAGES


@pytest.mark.parametrize(
    "text",
    [
        "Fuck   YOU, useless",
        "I'll kill you if it breaks again",
        "Va te faire foutre !",
        "Crève.",
        "Fick dich, du Idiot",
        "¡Te voy a matar!",
        "你去死吧",
        "死ね",
        "ｆｕｃｋ ｙｏｕ",  # full-width
    ],
)
def test_insults_and_threats_are_abuse(text: str) -> None:
    assert is_abusive(text)


@pytest.mark.parametrize(
    "text",
    [
        "How do I kill the process that hangs?",
        "My battery died and the screen went dark",
        "troubleshoot my router",
        "Le crèvecoeur est une race de poule",
        "我的电脑过去死机了",
        "Kill switch on my VPN",
        "Mátalo: el proceso no responde",
    ],
)
def test_ordinary_help_requests_are_not_abuse(text: str) -> None:
    assert not is_abusive(text)


def test_every_language_has_phrases() -> None:
    assert set(PHRASES) == set(LANGUAGES)
