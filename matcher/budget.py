"""A budget stated in a message: "under 20 euros", "max $30", "moins de 20 €", "预算100元以内".

The largest amount of money mentioned is taken as the ceiling. Symbols that several
currencies share ($, ¥, kr) resolve to the customer's own currency when it uses that symbol,
and ¥ means yuan in Chinese and yen otherwise. Amounts come back in integer minor units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from babel.numbers import get_currency_precision

# Currency words and symbols → ISO code. Matched case-insensitively, whole tokens.
_TOKENS: dict[str, str] = {
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR", "ユーロ": "EUR", "欧元": "EUR",
    "usd": "USD", "dollar": "USD", "dollars": "USD", "dólares": "USD", "dolares": "USD", "ドル": "USD", "美元": "USD",
    "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP", "livres": "GBP", "pfund": "GBP",
    "円": "JPY", "yen": "JPY", "jpy": "JPY", "日元": "JPY",
    "元": "CNY", "块": "CNY", "塊": "CNY", "人民币": "CNY", "rmb": "CNY", "cny": "CNY", "yuan": "CNY",
    "₩": "KRW", "원": "KRW", "won": "KRW", "krw": "KRW",
    "₹": "INR", "inr": "INR", "rupees": "INR", "rupee": "INR",
    "r$": "BRL", "brl": "BRL", "reais": "BRL", "real": "BRL",
    "chf": "CHF", "franken": "CHF", "francs": "CHF",
    "zł": "PLN", "zl": "PLN", "pln": "PLN", "złotych": "PLN",
    "sek": "SEK", "nok": "NOK", "dkk": "DKK", "cad": "CAD", "aud": "AUD", "mxn": "MXN", "ars": "ARS",
    "₺": "TRY", "try": "TRY", "lira": "TRY", "₽": "RUB", "rub": "RUB", "рублей": "RUB",
}  # fmt: skip
_DOLLAR_CURRENCIES = {"USD", "CAD", "AUD", "NZD", "MXN", "ARS", "CLP", "COP", "SGD", "HKD"}
_KRONA_CURRENCIES = {"SEK", "NOK", "DKK", "ISK"}

_NUMBER = r"\d{1,3}(?:[.,\s]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_SYMBOL = r"r\$|\$|€|£|¥|₩|₹|₺|₽|zł|kr"
_WORD = "|".join(
    sorted((re.escape(t) for t in _TOKENS if not re.fullmatch(_SYMBOL, t)), key=len, reverse=True)
)
_MONEY = re.compile(
    rf"(?P<pre>{_SYMBOL})\s?(?P<n1>{_NUMBER})"
    rf"|(?P<n2>{_NUMBER})\s?(?P<post>{_SYMBOL}|{_WORD})(?![a-zà-ÿ])",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Budget:
    amount: int  # minor units
    currency: str

    def to_json(self) -> dict[str, object]:
        return {"amount": self.amount, "currency": self.currency}


def _currency(token: str, language: str, home: str) -> str:
    token = token.lower()
    if token == "$":  # noqa: S105 - a currency symbol
        return home if home in _DOLLAR_CURRENCIES else "USD"
    if token == "¥":  # noqa: S105 - a currency symbol
        return "CNY" if language == "zh" else "JPY"
    if token == "kr":  # noqa: S105 - a currency symbol
        return home if home in _KRONA_CURRENCIES else "SEK"
    return _TOKENS[token]


def _decimal(text: str) -> Decimal | None:
    text = text.replace(" ", "").replace("\u00a0", "")
    separators = [ch for ch in text if ch in ".,"]
    if separators:
        last = max(text.rfind("."), text.rfind(","))
        decimals = len(text) - last - 1
        if len(separators) == 1 and decimals == 3:
            text = text.replace(".", "").replace(",", "")  # "1,000" / "1.000": thousands
        else:
            whole = re.sub(r"[.,]", "", text[:last])
            text = f"{whole}.{text[last + 1 :]}"
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def parse_budget(text: str, language: str, home_currency: str) -> Budget | None:
    """The largest sum of money `text` mentions, or None when it names no amount."""
    best: Budget | None = None
    for match in _MONEY.finditer(text[:2000]):
        token = match.group("pre") or match.group("post")
        value = _decimal(match.group("n1") or match.group("n2"))
        if value is None or value <= 0:
            continue
        currency = _currency(token, language, home_currency)
        minor = int(value.scaleb(int(get_currency_precision(currency))).to_integral_value())
        if minor <= 0 or minor > 10**12:
            continue
        if best is None or (currency == best.currency and minor > best.amount):
            best = Budget(minor, currency)
    return best
