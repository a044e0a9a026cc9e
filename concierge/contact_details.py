"""Finding off-platform contact details in what people write, and hiding them.

Helpouts forbade taking sessions off the platform, so phone numbers, email addresses (also
spelled out: "name at gmail dot com", "(at)", "arobase", "ät", "arroba", "艾特", "アット"),
messenger and payment links (wa.me, t.me, paypal.me…), messenger or payment handles named
as such ("telegram: @name", "微信：name88"), $cashtags and IBANs are found and replaced by a
marker. Pure text in, text out: no I/O, no catalogues (the caller passes the marker).

Few false positives matter as much as catching: prices, dates, times and order numbers are
shielded before digits are read as a phone number, and a bare word such as "signal" or "line"
is only a messenger when a handle follows with a colon, an id word or an "@".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    LINK = "link"  # a messenger's or payment app's address
    HANDLE = "handle"  # a named messenger or payment account
    CASHTAG = "cashtag"
    IBAN = "iban"


@dataclass(frozen=True, slots=True)
class Hit:
    kind: Kind
    start: int
    end: int
    text: str


MIN_PHONE_DIGITS = 8
MAX_PHONE_DIGITS = 15


_FOLD = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def _fold(text: str) -> str:
    """Full-width ASCII (ＡＢＣ１２３＠) and the ideographic space as their ASCII forms, one
    character for one, so positions in the folded text are positions in the original."""
    return text.translate(_FOLD)


# No dot inside a part: dots only separate parts, so matching never backtracks over them.
_NAME_PART = r"[A-Za-z0-9_%+\-]{1,64}"
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_TLD = r"[A-Za-z]{2,6}"
_AT_WORDS = r"at|arobase|ät|aet|arroba|艾特|アット|あっと"
_DOT_WORDS = r"dot|point|punkt|punto|点|點|ドット|どっと"
_AT_BRACKETED = rf"[(\[{{<]\s*(?:{_AT_WORDS}|@)\s*[)\]}}>]"
_DOT_BRACKETED = rf"[(\[{{<]\s*(?:{_DOT_WORDS}|\.)\s*[)\]}}>]"
_AT = rf"(?:\s*@\s*|\s*{_AT_BRACKETED}\s*|\s+(?:{_AT_WORDS})\s+|\s*(?:艾特|アット|あっと)\s*)"
_DOT = rf"(?:\.|\s*{_DOT_BRACKETED}\s*|\s+(?:{_DOT_WORDS})\s+|\s*(?:点|點|ドット|どっと)\s*)"
_EMAIL = re.compile(
    rf"(?<![A-Za-z0-9._%+\-]){_NAME_PART}(?:{_DOT}{_NAME_PART}){{0,5}}{_AT}{_DOMAIN}(?:{_DOT}{_DOMAIN})*{_DOT}{_TLD}(?![A-Za-z0-9])",
    re.IGNORECASE,
)

_LINK = re.compile(
    r"(?<![\w.])(?:https?://)?(?:www\.)?"
    r"(?:wa\.me|api\.whatsapp\.com|chat\.whatsapp\.com|t\.me|telegram\.me|telegram\.dog|paypal\.me|"
    r"paypal\.com/(?:paypalme|donate)|venmo\.com|account\.venmo\.com|cash\.app|revolut\.me|line\.me|"
    r"signal\.me|m\.me|u\.wechat\.com|weixin\.qq\.com|join\.skype\.com|ko-fi\.com|buymeacoffee\.com|"
    r"wise\.com/pay|monzo\.me|lydia-app\.com|bizum\.es)"
    r"(?:/[^\s<>\"'，。、）)]*)?",
    re.IGNORECASE,
)

_MESSENGERS = (
    r"whats\s?app|telegram|signal|wechat|weixin|微信|vx|line|ライン|skype|viber|kakao(?:talk)?|"
    r"discord|snapchat|snap|insta(?:gram)?|facebook|messenger|threema|tg|wa|"
    r"pay\s?pal|venmo|cash\s?app|revolut|zelle|lydia|bizum|wise|alipay|支付宝|paypay|wx"
)
_ID_WORDS = r"id|ID|号|帳號|账号|番号|account|compte|konto|cuenta|handle|user(?:name)?|pseudo|nom"
_HANDLE_AFTER = re.compile(
    rf"(?<![A-Za-z0-9_])(?:{_MESSENGERS})"
    rf"(?:\s*(?:{_ID_WORDS}))?"
    r"(?:\s*[:：=]\s*|\s+(?:is|est|ist|es|:)?\s*(?=@)|\s*(?=@)|(?<=号)\s*|(?<=ID)\s+|(?<=id)\s+)"
    r"(@?[A-Za-z0-9][A-Za-z0-9_.\-]{2,31})",
    re.IGNORECASE,
)
_HANDLE_BEFORE = re.compile(
    rf"(?<![\w@])(@[A-Za-z0-9_][A-Za-z0-9_.]{{2,31}})\s*(?:on|sur|auf|en|in|im|über|via|@)?\s*"
    rf"(?:{_MESSENGERS})(?![A-Za-z])",
    re.IGNORECASE,
)
_CASHTAG = re.compile(r"(?<![\w$])\$[A-Za-z][A-Za-z0-9_]{2,19}(?![\w])")
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)
# Each pattern with a cheap test that must pass first: most messages hold none of these, and
# this runs on every request, listing edit and review.
_PATTERNS = (
    (Kind.EMAIL, _EMAIL, re.compile(rf"@|(?<![A-Za-z])(?:{_AT_WORDS})(?![A-Za-z])|艾特|アット|あっと", re.I)),
    (Kind.LINK, _LINK, re.compile(r"\.")),
    (Kind.CASHTAG, _CASHTAG, re.compile(r"\$")),
    (Kind.HANDLE, _HANDLE_AFTER, re.compile(r"[@:=号]|id\b", re.I)),
    (Kind.HANDLE, _HANDLE_BEFORE, re.compile("@")),
    (Kind.IBAN, _IBAN, re.compile(r"\d\d")),
)

# Numbers that are not phone numbers: shielded (overwritten) before the phone search.
_CURRENCY = (
    r"(?:[A-Z]{0,3}[$¥£€]|￥|₹|元|円|块|塊|EUR|USD|GBP|JPY|CNY|RMB|CHF|CAD|AUD|euros?|dollars?|yen|yuan)"
)
_NUMBER = r"\d[\d\s.,'\u00a0\u202f]{0,24}\d|\d"  # bounded: no quadratic scans
_NOT_PHONE = re.compile(
    "|".join(
        (
            rf"{_CURRENCY}\s?(?:{_NUMBER})",  # € 1 234,50
            rf"(?:{_NUMBER})\s?{_CURRENCY}",  # 1 234,50 €
            r"(?<!\d)(?<!\d[.,])\d+[.,]\d{1,2}(?!\d|[.,]\d)",  # decimals, not the groups of 06.12.34.56.78
            r"(?<!\d)\d{1,3}(?:[.,'\s\u00a0\u202f]\d{3})+[.,]\d{1,2}(?!\d)",  # 10.000.000,00
            # 2024-11-24, 2024年11月24日, 24/11/2024, 24.11.24; not the groups of 06.12.34.56.78
            r"(?<!\d)(?<!\d[-./])\d{4}\s?[-./年]\s?\d{1,2}\s?[-./月]\s?\d{1,2}日?(?![-./]\d)",
            r"(?<!\d)(?<!\d[-./])\d{1,2}\s?[-./]\s?\d{1,2}\s?[-./]\s?\d{2,4}(?![-./]\d)",
            r"\d{1,2}\s?[:h時]\s?\d{2}(?::\d{2})?",  # 14:30, 14h30, 14時30
            r"ISBN(?:-1[03])?:?\s*[\dX][\dX \-]*",
            r"(?:(?<![A-Za-z])(?:order|commande|bestellung|pedido|invoice|facture|rechnung|factura|ticket|"
            r"tracking|ref(?:erence)?)|订单|訂單|注文|#)\.?\s*(?:no\.?|nr\.?|n°|nº|number|numéro|nummer|"
            r"número|号|番号|#)?\s*[:：#]?\s*[A-Za-z0-9\-]+",
        )
    ),
    re.IGNORECASE,
)
_DIGITS_RUN = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d \-./()\u00a0]*\d(?![\w])")


def _phones(text: str) -> list[Hit]:
    shielded = _NOT_PHONE.sub(lambda m: "x" * len(m.group()), text)
    hits = []
    for match in _DIGITS_RUN.finditer(shielded):
        start, end = match.span()
        for piece_start, piece_end in _split_long(shielded, start, end):
            candidate = text[piece_start:piece_end]
            digits = sum(c.isdigit() for c in candidate)
            if MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS:
                hits.append(Hit(Kind.PHONE, piece_start, piece_end, candidate))
    return hits


def _split_long(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """A run with more digits than any phone number is several numbers side by side: group its
    space-separated parts from the left into numbers of at most the longest length."""
    if sum(c.isdigit() for c in text[start:end]) <= MAX_PHONE_DIGITS:
        return [(start, end)]
    grouped: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    digits = 0
    for match in re.finditer(r"\S+", text[start:end]):
        piece = (match.start() + start, match.end() + start)
        count = sum(c.isdigit() for c in match.group())
        if current is not None and digits + count <= MAX_PHONE_DIGITS:
            current, digits = (current[0], piece[1]), digits + count
        else:
            if current is not None:
                grouped.append(current)
            current, digits = piece, count
    if current is not None:
        grouped.append(current)
    return grouped


def _iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    rotated = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rotated)
    return 15 <= len(compact) <= 34 and int(number) % 97 == 1


def find(text: str) -> list[Hit]:
    """Every piece of contact details in `text`, in order, none overlapping."""
    folded = _fold(text)
    found = [
        Hit(kind, m.start(), m.end(), "")
        for kind, pattern, maybe in _PATTERNS
        if maybe.search(folded)
        for m in pattern.finditer(folded)
        if kind is not Kind.IBAN or _iban_valid(m.group())
    ]
    if sum(c.isdigit() for c in folded) >= MIN_PHONE_DIGITS:
        found += _phones(folded)
    # The earliest, then the longest, wins where two overlap.
    found.sort(key=lambda hit: (hit.start, -hit.end))
    kept: list[Hit] = []
    for hit in found:
        if kept and hit.start < kept[-1].end:
            if hit.end > kept[-1].end:
                last = kept[-1]
                kept[-1] = Hit(last.kind, last.start, hit.end, "")
            continue
        kept.append(hit)
    return [Hit(h.kind, h.start, h.end, text[h.start : h.end]) for h in kept]


@dataclass(frozen=True, slots=True)
class Masked:
    text: str
    hits: tuple[Hit, ...]


def mask(text: str, marker: str) -> Masked:
    """`text` with every piece of contact details replaced by `marker`."""
    hits = find(text)
    if not hits:
        return Masked(text, ())
    parts, position = [], 0
    for hit in hits:
        parts += [text[position : hit.start], marker]
        position = hit.end
    parts.append(text[position:])
    return Masked("".join(parts), tuple(hits))
