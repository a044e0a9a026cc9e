"""When the customer wants help: "now" unless the message names a time.

A small rule-based parser over per-language lexicons (en, fr, de, es, pt, it, zh, ja) reads a
day ("tomorrow", "demain", "明天", "next Monday", "来週の月曜"), a time ("3pm", "15h", "15 Uhr",
"a las 3 de la tarde", "下午3点", "午後3時") or a part of the day ("tomorrow morning"), and
relative offsets ("in 2 hours", "2小时后"). The result is an aware datetime in the customer's
zone; DST gaps and overlaps are resolved by zoneinfo. dateparser handles what the lexicons do
not (absolute dates such as "3 December"), guarded against its false positives on common words.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_NUMBER = r"(?:\d{1,2}|[零〇一二两三四五六七八九十]{1,3})"

# Day words → days from today. Longer phrases are tried first.
_DAY_WORDS: dict[str, dict[str, int]] = {
    "en": {"day after tomorrow": 2, "tomorrow": 1, "today": 0, "tonight": 0, "this evening": 0},
    "fr": {
        "après-demain": 2,
        "apres-demain": 2,
        "après demain": 2,
        "demain": 1,
        "aujourd'hui": 0,
        "ce soir": 0,
        "ce matin": 0,
    },
    "de": {"übermorgen": 2, "uebermorgen": 2, "heute abend": 0, "heute morgen": 0, "morgen": 1, "heute": 0},
    "es": {"pasado mañana": 2, "mañana": 1, "hoy": 0, "esta noche": 0, "esta tarde": 0},
    "pt": {"depois de amanhã": 2, "amanhã": 1, "hoje": 0, "hoje à noite": 0},
    "it": {"dopodomani": 2, "domani": 1, "oggi": 0, "stasera": 0},
    "zh": {"后天": 2, "後天": 2, "明天": 1, "明早": 1, "明晚": 1, "今天": 0, "今晚": 0, "今早": 0},
    "ja": {
        "明後日": 2,
        "あさって": 2,
        "明日": 1,
        "あした": 1,
        "あす": 1,
        "今日": 0,
        "今夜": 0,
        "今晩": 0,
        "今朝": 0,
    },
}

_WEEKDAYS: dict[str, list[tuple[str, ...]]] = {
    "en": [("monday",), ("tuesday",), ("wednesday",), ("thursday",), ("friday",), ("saturday",), ("sunday",)],
    "fr": [("lundi",), ("mardi",), ("mercredi",), ("jeudi",), ("vendredi",), ("samedi",), ("dimanche",)],
    "de": [("montag",), ("dienstag",), ("mittwoch",), ("donnerstag",), ("freitag",), ("samstag", "sonnabend"), ("sonntag",)],
    "es": [("lunes",), ("martes",), ("miércoles", "miercoles"), ("jueves",), ("viernes",), ("sábado", "sabado"), ("domingo",)],
    "pt": [("segunda",), ("terça", "terca"), ("quarta",), ("quinta",), ("sexta",), ("sábado", "sabado"), ("domingo",)],
    "it": [("lunedì", "lunedi"), ("martedì", "martedi"), ("mercoledì", "mercoledi"), ("giovedì", "giovedi"), ("venerdì", "venerdi"), ("sabato",), ("domenica",)],
    "zh": [("周一", "星期一", "礼拜一"), ("周二", "星期二", "礼拜二"), ("周三", "星期三", "礼拜三"), ("周四", "星期四", "礼拜四"), ("周五", "星期五", "礼拜五"), ("周六", "星期六", "礼拜六"), ("周日", "周天", "星期日", "星期天", "礼拜天", "礼拜日")],
    "ja": [("月曜",), ("火曜",), ("水曜",), ("木曜",), ("金曜",), ("土曜",), ("日曜",)],
}  # fmt: skip

# Words that put a weekday in next calendar week (zh/ja say so explicitly; en "next" does not).
_NEXT_WEEK = {"zh": ("下周", "下星期", "下礼拜", "下個星期", "下个星期"), "ja": ("来週",)}

# Parts of the day → the hour assumed when no time is given.
_PARTS: dict[str, dict[str, int]] = {
    "en": {"morning": 9, "afternoon": 14, "evening": 19, "tonight": 20, "noon": 12, "midday": 12, "lunchtime": 12},
    "fr": {"matin": 9, "après-midi": 14, "apres-midi": 14, "soir": 19, "soirée": 19, "midi": 12},
    "de": {"morgens": 9, "vormittag": 10, "nachmittag": 14, "abend": 19, "abends": 19, "mittag": 12, "heute morgen": 9, "morgen früh": 9},
    "es": {"por la mañana": 9, "de la mañana": 9, "por la tarde": 16, "por la noche": 20, "esta noche": 20, "esta tarde": 16, "mediodía": 12},
    "pt": {"de manhã": 9, "à tarde": 15, "à noite": 20},
    "it": {"mattina": 9, "pomeriggio": 15, "sera": 19, "stasera": 20},
    "zh": {"上午": 9, "早上": 9, "明早": 9, "今早": 9, "中午": 12, "下午": 14, "傍晚": 18, "晚上": 19, "今晚": 20, "明晚": 20},
    "ja": {"朝": 9, "今朝": 9, "午前": 10, "昼": 12, "午後": 14, "夕方": 18, "夜": 20, "今夜": 20, "今晩": 20},
}  # fmt: skip

_PM_WORDS = ("下午", "傍晚", "晚上", "今晚", "明晚", "午後", "夜", "夕方", "今夜", "今晩")
_AM_WORDS = ("上午", "早上", "午前", "朝")


def _cn_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    if text == "十":
        return 10
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)
    return _CN_DIGITS[text]


@dataclass(frozen=True, slots=True)
class _Clock:
    hour: int
    minute: int = 0
    meridiem_known: bool = True


def _explicit_time(text: str, language: str) -> _Clock | None:
    lowered = text.lower()
    if language in ("zh", "ja"):
        unit = "[点點时時]" if language == "zh" else "時"
        prefix = "|".join(_PM_WORDS + _AM_WORDS + ("中午", "昼"))
        match = re.search(rf"({prefix})?\s*({_CN_NUMBER})\s*{unit}(?:\s*(半|(\d{{1,2}})\s*分))?", text)
        if match:
            hour, minute = _cn_number(match.group(2)), 0
            if match.group(3) == "半":
                minute = 30
            elif match.group(4):
                minute = int(match.group(4))
            part = match.group(1) or ""
            if part in _PM_WORDS and hour < 12:
                hour += 12
            return _Clock(hour % 24, minute, bool(part) or hour >= 12)
    match = re.search(r"\b(1[0-2]|0?[1-9])(?::([0-5]\d))?\s*([ap])\.?\s?m\b\.?", lowered)
    if match:
        hour = int(match.group(1)) % 12 + (12 if match.group(3) == "p" else 0)
        return _Clock(hour, int(match.group(2) or 0))
    match = re.search(r"\b([01]?\d|2[0-3])\s*(?::|h|uhr|heures?)\s*([0-5]\d)?\b", lowered)
    if match and (match.group(2) or re.search(r"h|uhr|heure", match.group(0))):
        return _Clock(int(match.group(1)), int(match.group(2) or 0))
    patterns = {
        "en": r"\bat\s+(\d{1,2})(?::([0-5]\d))?\b",
        "fr": r"\bà\s+(\d{1,2})(?::([0-5]\d))?\b",
        "de": r"\bum\s+(\d{1,2})(?:[:.]([0-5]\d))?\b",
        "es": r"\ba\s+las?\s+(\d{1,2})(?::([0-5]\d))?\b",
        "pt": r"\bàs?\s+(\d{1,2})(?::([0-5]\d))?\b",
        "it": r"\balle?\s+(\d{1,2})(?::([0-5]\d))?\b",
    }
    if language in patterns and (match := re.search(patterns[language], lowered)):
        hour = int(match.group(1))
        if hour > 23:
            return None
        if language == "es" and re.search(r"de la (tarde|noche)", lowered) and hour < 12:
            hour += 12
        return _Clock(hour, int(match.group(2) or 0), meridiem_known=hour == 0 or hour > 12)
    return None


def _part_of_day(text: str, language: str) -> int | None:
    lowered = text.lower()
    for phrase, hour in _longest_first("parts", language):
        if _contains(lowered, phrase, language):
            return hour
    return None


def _contains(text: str, phrase: str, language: str) -> bool:
    if language in ("zh", "ja"):
        return phrase in text
    return phrase in text and _whole_word(phrase).search(text) is not None


# Every request tries a few dozen phrases: the patterns and orders are built once, and the
# regular expression runs only where the phrase occurs at all.
@functools.cache
def _whole_word(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)")


@functools.cache
def _longest_first(table: str, language: str) -> list[tuple[str, int]]:
    words = {"parts": _PARTS, "days": _DAY_WORDS}[table].get(language, {})
    return sorted(words.items(), key=lambda kv: -len(kv[0]))


def _day_offset(text: str, language: str, today: date) -> date | None:
    lowered = text.lower()
    if language == "es":
        # "mañana" alone is tomorrow; "por/de la mañana" is the morning.
        lowered = re.sub(r"\b(?:por|de)\s+la\s+mañana\b", " ", lowered)
    if language == "de":
        lowered = lowered.replace("heute morgen", "heute")
    for phrase, offset in _longest_first("days", language):
        if _contains(lowered, phrase, language):
            return today + timedelta(days=offset)
    for index, names in enumerate(_WEEKDAYS.get(language, [])):
        for name in names:
            if not _contains(lowered, name, language):
                continue
            ahead = (index - today.weekday()) % 7 or 7
            if any(
                word + name in lowered or word + "の" + name in lowered
                for word in _NEXT_WEEK.get(language, ())
            ):
                monday_next_week = today - timedelta(days=today.weekday()) + timedelta(days=7)
                return monday_next_week + timedelta(days=index)
            return today + timedelta(days=ahead)
    return None


_RELATIVE = {
    "en": r"\bin\s+(an?|one|\d+)\s+(hours?|minutes?|mins?)\b",
    "fr": r"\bdans\s+(une?|\d+)\s+(heures?|minutes?)\b",
    "de": r"\bin\s+(einer|\d+)\s+(stunden?|minuten?)\b",
    "es": r"\ben\s+(una?|\d+)\s+(horas?|minutos?)\b",
    "pt": r"\bem\s+(uma?|\d+)\s+(horas?|minutos?)\b",
    "it": r"\btra\s+(un'?|una|\d+)\s+(ore|ora|minuti)\b",
    "zh": rf"({_CN_NUMBER})\s*个?\s*(小时|钟头|分钟)\s*(?:后|以后|之后)",
    "ja": rf"({_CN_NUMBER})\s*(時間|分)\s*後",
}


def _relative(text: str, language: str, now: datetime) -> datetime | None:
    pattern = _RELATIVE.get(language)
    match = re.search(pattern, text.lower()) if pattern else None
    if match is None:
        return None
    raw, unit = match.group(1), match.group(2)
    amount = int(raw) if raw.isdigit() else _cn_number(raw) if language in ("zh", "ja") else 1
    minutes = any(unit.startswith(u) for u in ("min", "分"))
    if amount <= 0 or amount > (7 * 24 * 60 if minutes else 7 * 24):
        return None
    return now + (timedelta(minutes=amount) if minutes else timedelta(hours=amount))


def _absolute_date(text: str, language: str, now: datetime) -> date | None:
    """dateparser for calendar dates ("3 December", "le 3 décembre", "12/03")."""
    if not re.search(r"\d", text):
        return None  # without a digit dateparser only finds false friends ("mit", "may")
    from dateparser.search import search_dates

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = search_dates(
                text,
                languages=[language],
                settings={"PREFER_DATES_FROM": "future", "RELATIVE_BASE": now.replace(tzinfo=None)},
            )
        except Exception:  # dateparser raises assorted errors on odd input; none is fatal here
            return None
    for phrase, value in found or []:
        has_day = re.search(r"\d", phrase) and not re.fullmatch(r"\s*\d{1,4}\s*", phrase)
        # More digits than a written date has is a phone or order number; and nobody books
        # help more than a year ahead.
        too_many_digits = any(
            sum(c.isdigit() for c in run) > 8 for run in re.findall(r"[\d\s().+-]+", phrase)
        )
        too_far = value.date() > now.date() + timedelta(days=366)
        if has_day and value.date() != now.date() and not too_many_digits and not too_far:
            return date(value.year, value.month, value.day)
    return None


def parse_when(text: str, language: str, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The moment `text` asks for, in `zone`, or None for "now"."""
    local_now = now.astimezone(zone)
    if (moment := _relative(text, language, local_now)) is not None:
        return moment
    day = _day_offset(text, language, local_now.date())
    clock = _explicit_time(text, language)
    part = _part_of_day(text, language)
    if day is None:
        day = _absolute_date(text, language, local_now)
        if day is None and clock is None and part is None:
            return None
    if clock is not None and not clock.meridiem_known and part is not None and part >= 12 and clock.hour < 12:
        clock = _Clock(clock.hour + 12, clock.minute)  # "tomorrow afternoon at 3"
    hour, minute = (clock.hour, clock.minute) if clock else (part if part is not None else 9, 0)
    if clock is not None and not clock.meridiem_known and 1 <= hour <= 7:
        hour += 12  # "at 3" for a help session means the afternoon
    if day is None:
        day = local_now.date()
        if time(hour, minute) <= local_now.time().replace(second=0, microsecond=0):
            day += timedelta(days=1)
    wall = datetime.combine(day, time(hour, minute), tzinfo=zone)
    # A wall time inside a DST gap does not exist: the round trip moves it past the gap.
    return wall.astimezone(UTC).astimezone(zone)
