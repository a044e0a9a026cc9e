"""Reading a request: its language, when it is for, the budget, and whether it says anything."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from matcher.budget import Budget, parse_budget
from matcher.language import LanguageSource
from matcher.understanding import Problem, clean
from matcher.when import parse_when

PARIS = ZoneInfo("Europe/Paris")
TUESDAY_10AM = datetime(2026, 11, 24, 10, 0, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "tomorrow at 3pm", "2026-11-25 15:00"),
        ("fr", "demain à 15h", "2026-11-25 15:00"),
        ("de", "morgen um 15 Uhr", "2026-11-25 15:00"),
        ("zh", "明天下午3点", "2026-11-25 15:00"),
        ("ja", "明日の午後3時", "2026-11-25 15:00"),
        ("es", "mañana a las 3 de la tarde", "2026-11-25 15:00"),
        ("pt", "amanhã às 15h", "2026-11-25 15:00"),
        ("it", "domani alle 15", "2026-11-25 15:00"),
        ("en", "Can someone fix my wifi tomorrow at 3pm?", "2026-11-25 15:00"),
        ("zh", "明天下午3点有人能帮我修电脑吗", "2026-11-25 15:00"),
        ("ja", "明日の午後3時にパソコンを直してほしい", "2026-11-25 15:00"),
        ("de", "Kann mir morgen um 15 Uhr jemand mit dem Fahrrad helfen", "2026-11-25 15:00"),
        ("en", "next monday at 10", "2026-11-30 10:00"),
        ("fr", "samedi matin", "2026-11-28 09:00"),
        ("es", "el viernes a las 18:00", "2026-11-27 18:00"),
        ("es", "necesito ayuda por la mañana", "2026-11-25 09:00"),
        ("de", "heute Abend", "2026-11-24 19:00"),
        ("zh", "下周一上午十点", "2026-11-30 10:00"),
        ("ja", "来週の月曜日の午前10時", "2026-11-30 10:00"),
        ("en", "in 2 hours", "2026-11-24 12:00"),
        ("fr", "dans une heure", "2026-11-24 11:00"),
        ("zh", "两小时后", "2026-11-24 12:00"),
        ("ja", "30分後", "2026-11-24 10:30"),
        ("en", "on December 3 at 10am", "2026-12-03 10:00"),
        ("fr", "le 3 décembre à 10h", "2026-12-03 10:00"),
        ("en", "tomorrow", "2026-11-25 09:00"),
        ("en", "at 9", "2026-11-25 09:00"),  # 9:00 has passed today
        ("en", "at 3", "2026-11-24 15:00"),  # "at 3" for a help session is the afternoon
        ("ja", "今夜", "2026-11-24 20:00"),
    ],
)
def test_times_in_every_supported_language(language: str, text: str, expected: str) -> None:
    moment = parse_when(text, language, PARIS, TUESDAY_10AM)
    assert moment is not None
    assert moment.strftime("%Y-%m-%d %H:%M") == expected
    assert moment.tzinfo is not None


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "my wifi is broken"),
        ("en", "I need help with 3 computers"),
        ("en", "Python 3.12 help"),
        ("de", "Ich habe 2 Fahrräder"),
        ("en", "I have 15 minutes of questions"),
        ("es", "mi bici hace ruido"),
        ("zh", "我的电脑坏了"),
        # Phone numbers are not dates (dateparser reads "7700 900123" as a year 18 years on).
        ("en", "My wifi router keeps dropping, call me on +44 7700 900123"),
        ("fr", "mon routeur ne marche plus, appelez le 06 12 34 56 78"),
    ],
)
def test_no_time_means_now(language: str, text: str) -> None:
    assert parse_when(text, language, PARIS, TUESDAY_10AM) is None


def test_a_time_inside_the_spring_forward_gap_moves_past_it() -> None:
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=PARIS)  # clocks jump 02:00 → 03:00 on Sunday
    moment = parse_when("demain à 2h30", "fr", PARIS, saturday)
    assert moment is not None
    assert moment.isoformat() == "2026-03-29T03:30:00+02:00"


def test_an_ambiguous_fall_back_time_takes_the_first_occurrence() -> None:
    new_york = ZoneInfo("America/New_York")
    saturday = datetime(2026, 10, 31, 12, 0, tzinfo=new_york)  # 01:00–02:00 happens twice on Sunday
    moment = parse_when("tomorrow at 1:30am", "en", new_york, saturday)
    assert moment is not None
    assert moment.isoformat() == "2026-11-01T01:30:00-04:00"


@pytest.mark.parametrize(
    ("zone", "utc"), [("Asia/Kolkata", "09:30"), ("Asia/Kathmandu", "09:15"), ("America/St_Johns", "18:30")]
)
def test_half_and_quarter_hour_zones(zone: str, utc: str) -> None:
    moment = parse_when("tomorrow at 3pm", "en", ZoneInfo(zone), datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    assert moment is not None
    assert moment.strftime("%H:%M") == "15:00"
    assert moment.astimezone(UTC).strftime("%H:%M") == utc


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "under 20 euros", Budget(2000, "EUR")),
        ("en", "max $30", Budget(3000, "USD")),
        ("fr", "moins de 20 €", Budget(2000, "EUR")),
        ("de", "höchstens 30 Euro", Budget(3000, "EUR")),
        ("es", "menos de 15,50 euros", Budget(1550, "EUR")),
        ("zh", "预算100元以内", Budget(10000, "CNY")),
        ("zh", "¥200以内", Budget(20000, "CNY")),
        ("ja", "予算は3000円以内", Budget(3000, "JPY")),
        ("ja", "¥3000まで", Budget(3000, "JPY")),
        ("en", "£1,200 max", Budget(120000, "GBP")),
        ("de", "bis 1.000 €", Budget(100000, "EUR")),
        ("en", "between $10 and $25", Budget(2500, "USD")),
        ("pt", "até R$ 50", Budget(5000, "BRL")),
        ("sv", "högst 200 kr", Budget(20000, "SEK")),
    ],
)
def test_budgets(language: str, text: str, expected: Budget) -> None:
    assert parse_budget(text, language, "EUR") == expected


def test_dollars_are_the_customers_own_dollars() -> None:
    assert parse_budget("max $30", "en", "CAD") == Budget(3000, "CAD")


@pytest.mark.parametrize("text", ["I have 3 computers", "Python 3.12", "help with my euro coins", "mon wifi"])
def test_no_budget(text: str) -> None:
    assert parse_budget(text, "en", "EUR") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hilfe mit Fahrrad", "de"),
        ("我的电脑坏了", "zh"),
        ("パソコンが壊れた", "ja"),
        ("ayuda por favor", "es"),
        ("Bonjour, mon wifi ne marche plus", "fr"),
        ("I need help with my bike", "en"),
        ("Мне нужна помощь с компьютером", "ru"),
        ("wifi 坏了", "zh"),
    ],
)
def test_short_messages_are_detected(detector: Any, text: str, expected: str) -> None:
    guess = detector.detect(text, fallback="en" if expected != "en" else "fr")
    assert guess.code == expected
    assert guess.source is LanguageSource.DETECTED


def test_a_message_too_short_to_tell_falls_back_to_the_locale(detector: Any) -> None:
    for text in ("ok", "wifi?"):
        guess = detector.detect(text, fallback="fr")
        assert guess.code == "fr"
        assert guess.source is LanguageSource.LOCALE


def test_unknown_detector_languages_are_refused() -> None:
    from matcher.language import LanguageDetectorPort

    with pytest.raises(ValueError, match="does not know 'xx'"):
        LanguageDetectorPort(["en", "xx"])


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", Problem.EMPTY),
        ("   \n\t  ", Problem.EMPTY),
        ("😀😀😀 🙏", Problem.NO_WORDS),
        ("12345 678", Problem.NO_WORDS),
        ("\x00\x01\x02\ufffd\ufffd\ufffd\x7f", Problem.NO_WORDS),
        (bytes(range(256)).decode("latin-1") * 3, Problem.NO_WORDS),
        ("help " * 20_000, Problem.TOO_LONG),
        ("a" * 100_000, Problem.TOO_LONG),
    ],
)
def test_nothing_to_understand(raw: str, problem: Problem) -> None:
    assert clean(raw)[1] is problem


def test_mixed_scripts_and_control_characters_are_understood() -> None:
    text, problem = clean("my wifi\x00 坏了\u200b, please   help")
    assert problem is None
    assert text == "my wifi 坏了 , please help"
